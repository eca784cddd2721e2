"""The GPU extras install onnxruntime-gpu *instead of* onnxruntime (the two wheels share one onnxruntime/
folder and clash), and otherwise what the CPU extras install, so a GPU host lacks nothing."""

import tomllib
from pathlib import Path

import pytest

EXTRAS = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
    "optional-dependencies"
]


def _names(requirements):
    return {
        requirement.split(">")[0].split("=")[0].split("[")[0].split("<")[0].strip().lower()
        for requirement in requirements
    }


@pytest.mark.parametrize("cpu,gpu", [("worker", "gpu-worker"), ("serve", "gpu-serve")])
def test_a_gpu_extra_is_its_cpu_extra_with_onnxruntime_gpu_instead(cpu, gpu):
    assert "onnxruntime" not in _names(EXTRAS[gpu]), f"{gpu} would install both onnxruntime wheels"
    assert _names(EXTRAS[gpu]) == (_names(EXTRAS[cpu]) - {"onnxruntime"}) | {"onnxruntime-gpu", "nvidia-ml-py"}


def test_no_extra_adds_onnxruntime_gpu_beside_onnxruntime():
    for name, requirements in EXTRAS.items():
        names = _names(requirements)
        assert not {"onnxruntime", "onnxruntime-gpu"} <= names, name
