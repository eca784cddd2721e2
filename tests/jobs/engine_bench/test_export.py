"""jobs.engine.export on real digits models: TorchScript and torch.export programs to ONNX
with a dynamic batch axis, checked and compared with the source (no Django, no database)."""

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from jobs.engine.errors import EngineError
from jobs.engine.export import export_to_onnx

TRACED_INPUTS = [{"name": "input", "dtype": "float32", "shape": [1, 64]}]  # as validate reads a traced archive
PROGRAM_INPUTS = [{"name": "input", "dtype": "float32", "shape": ["s0", 64]}]


def assert_dynamic_batch_onnx(path, mlp):
    onnx.checker.check_model(str(path), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (spec,) = session.get_inputs()
    assert isinstance(spec.shape[0], str) and spec.shape[1] == 64
    x = np.random.default_rng(1).standard_normal((5, 64)).astype(np.float32)
    (logits,) = session.run(None, {spec.name: x})
    import torch

    with torch.no_grad():
        expected = mlp(torch.from_numpy(x)).numpy()
    assert logits.shape == (5, 10)
    assert np.abs(logits - expected).max() <= 1e-4


def test_it_exports_torchscript_with_the_legacy_exporter(mlp, mlp_torchscript, tmp_path):
    seen = []
    result = export_to_onnx(
        mlp_torchscript,
        "torchscript",
        tmp_path / "ts.onnx",
        inputs=TRACED_INPUTS,
        progress=lambda p, m="": seen.append(p),
    )
    assert result.recipe["exporter"] == "torchscript"
    assert "ScriptModule" in result.recipe["dynamo_error"]
    assert result.opset == 18 and result.recipe["opset"] == 18
    assert result.input_names == ["input"] and result.output_names == ["output_0"]
    assert 0 <= result.parity_max_abs_diff <= 1e-4
    assert result.size_bytes == (tmp_path / "ts.onnx").stat().st_size
    assert not (tmp_path / "ts.onnx.data").exists()
    assert seen == sorted(seen) and seen[-1] == 100
    assert_dynamic_batch_onnx(result.output_path, mlp)


def test_it_exports_a_program_with_the_dynamo_exporter(mlp, mlp_program, tmp_path):
    result = export_to_onnx(mlp_program, "exported_program", tmp_path / "p.onnx", inputs=PROGRAM_INPUTS)
    assert result.recipe["exporter"] == "dynamo"
    assert result.parity_max_abs_diff <= 1e-4
    assert result.recipe["parity_batches"] == [2, 3, 5]
    assert_dynamic_batch_onnx(result.output_path, mlp)
    assert ort.InferenceSession(result.output_path).get_inputs()[0].shape[0] == "batch"


def test_it_gives_a_fixed_batch_program_a_dynamic_axis(mlp, mlp_program_fixed_batch, tmp_path):
    inputs = [{"name": "input", "dtype": "float32", "shape": [4, 64]}]
    result = export_to_onnx(mlp_program_fixed_batch, "exported_program", tmp_path / "f.onnx", inputs=inputs)
    assert result.recipe["reexported_dynamic_batch"] is True
    assert_dynamic_batch_onnx(result.output_path, mlp)


def test_it_keeps_a_fixed_batch_when_asked(mlp_torchscript, tmp_path):
    result = export_to_onnx(
        mlp_torchscript, "torchscript", tmp_path / "s.onnx", inputs=TRACED_INPUTS, dynamic_batch=False, parity_samples=1
    )
    assert ort.InferenceSession(result.output_path).get_inputs()[0].shape == [1, 64]


def test_it_forces_weights_only_loading(mlp_torchscript, tmp_path):
    export_to_onnx(mlp_torchscript, "torchscript", tmp_path / "w.onnx", inputs=TRACED_INPUTS, parity_samples=1)
    assert os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] == "1"


def test_it_refuses_an_old_opset(mlp_torchscript, tmp_path):
    with pytest.raises(EngineError, match="Opset 13 is too old"):
        export_to_onnx(mlp_torchscript, "torchscript", tmp_path / "o.onnx", inputs=TRACED_INPUTS, opset=13)


def test_it_explains_an_archive_it_cannot_load(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(EngineError, match="torch.jit.load cannot load"):
        export_to_onnx(bad, "torchscript", tmp_path / "b.onnx", inputs=TRACED_INPUTS)


def test_it_refuses_onnx_as_a_source(tmp_path):
    with pytest.raises(EngineError, match="Cannot export format 'onnx'"):
        export_to_onnx(tmp_path / "m.onnx", "onnx", tmp_path / "o.onnx", inputs=TRACED_INPUTS)


def test_it_fails_when_onnx_disagrees_with_the_source(mlp_torchscript, tmp_path, monkeypatch):
    monkeypatch.setattr("jobs.engine.export.PARITY_TOLERANCE", 1e-12)  # the real diff is ~1e-7
    with pytest.raises(EngineError, match="disagrees with the source: max abs difference"):
        export_to_onnx(mlp_torchscript, "torchscript", tmp_path / "d.onnx", inputs=TRACED_INPUTS, parity_samples=1)
