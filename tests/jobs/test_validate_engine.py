"""jobs.engine.validate on real models: signatures and one real inference (no Django)."""

import pytest
import torch

from dashboard.demo import digits_data, export_onnx, export_torchscript, train_digits_mlp
from jobs.engine.validate import ModelInvalid, example_inputs, inspect_model
from tests.conftest import failing_onnx_bytes


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    data = digits_data()
    module, accuracy = train_digits_mlp(data, hidden=32, epochs=3)
    return folder, module, export_onnx(module, folder / "d.onnx"), export_torchscript(module, folder / "d.pt")


def test_it_reads_an_onnx_signature_and_runs_it(digits):
    _, _, onnx_path, _ = digits
    seen = []
    result = inspect_model(str(onnx_path), "onnx", progress=lambda p, m="": seen.append(p))
    assert result.io_signature == {
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 64], "dynamic_axes": [0]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 10], "dynamic_axes": [0]}],
    }
    assert result.inference_ms > 0
    assert seen == sorted(seen) and seen


def test_it_reads_a_traced_torchscript_signature(digits):
    _, _, _, ts_path = digits
    result = inspect_model(str(ts_path), "torchscript")
    assert result.io_signature["inputs"][0]["shape"] == [1, 64]
    assert result.io_signature["outputs"][0]["shape"] == [1, 10]
    assert any("traced" in note for note in result.notes)


def test_a_scripted_module_needs_input_shapes(tmp_path):
    class Scaled(torch.nn.Module):
        def forward(self, x):
            return x * 2

    path = tmp_path / "s.pt"
    torch.jit.save(torch.jit.script(Scaled()), str(path))
    unknown = inspect_model(str(path), "torchscript")
    assert unknown.inference_ms is None
    assert "input_shapes" in unknown.notes[-1]
    given = inspect_model(str(path), "torchscript", input_shapes={"x": [3, 5]})
    assert given.io_signature["outputs"][0]["shape"] == [3, 5]


def test_it_reads_an_exported_program(tmp_path, digits):
    _, module, _, _ = digits
    program = torch.export.export(module, (torch.zeros(4, 64),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path / "d.pt2"
    torch.export.save(program, str(path))
    result = inspect_model(str(path), "exported_program")
    (spec,) = result.io_signature["inputs"]
    assert spec["shape"][1] == 64 and spec["dynamic_axes"] == [0]
    assert result.io_signature["outputs"][0]["shape"][1] == 10


def test_a_model_that_fails_to_run_is_invalid(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(failing_onnx_bytes())
    with pytest.raises(ModelInvalid, match="Test inference failed"):
        inspect_model(str(path), "onnx")


def test_example_inputs_follow_the_signature():
    feeds = example_inputs(
        [
            {"name": "ids", "dtype": "int64", "shape": ["batch", "seq"]},
            {"name": "x", "dtype": "float16", "shape": [2, 3]},
        ],
        batch=4,
        other_dynamic=7,
    )
    assert feeds["ids"].shape == (4, 7) and feeds["ids"].dtype == "int64"
    assert feeds["x"].shape == (2, 3) and str(feeds["x"].dtype) == "float16"
