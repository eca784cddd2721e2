"""jobs.engine.quantize on real digits models: int8 (dynamic, static), fp16, graph optimization."""

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from jobs.engine.errors import EngineError
from jobs.engine.evaluate import evaluate
from jobs.engine.quantize import convert_fp16, optimize_graph, quantize_dynamic, quantize_static


def run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def assert_valid(path):
    onnx.checker.check_model(str(path), full_check=True)
    assert not [name for name in os.listdir(os.path.dirname(path)) if name.endswith(".data")]


def test_it_quantizes_the_mlp_dynamically(mlp_onnx, mlp_evaluation, tmp_path):
    result = quantize_dynamic(mlp_onnx, tmp_path / "dyn.onnx")

    assert_valid(result.output_path)
    assert run(result.output_path, mlp_evaluation["x"][:5]).shape == (5, 10)
    assert result.size_bytes == os.path.getsize(result.output_path)
    assert result.size_bytes <= 0.30 * os.path.getsize(mlp_onnx)
    measured = evaluate(result.output_path, dataset=mlp_evaluation, reference_path=mlp_onnx)
    assert measured.accuracy_delta >= -0.01


def test_it_quantizes_the_cnn_dynamically(cnn_onnx, cnn_evaluation, tmp_path):
    result = quantize_dynamic(cnn_onnx, tmp_path / "dyn.onnx", weight_type="quint8", per_channel=False)

    assert_valid(result.output_path)
    assert run(result.output_path, cnn_evaluation["x"][:3]).shape == (3, 10)
    assert "Conv" in result.notes[-1]
    assert result.recipe["weight_type"] == "quint8" and result.recipe["per_channel"] is False


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_static_per_channel_int8_keeps_mlp_accuracy_within_half_a_point(
    method, mlp_onnx, mlp_calibration, mlp_evaluation, tmp_path
):
    result = quantize_static(mlp_onnx, tmp_path / f"{method}.onnx", calibration=mlp_calibration, method=method)

    assert_valid(result.output_path)
    # Weights are 4x smaller; QDQ also stores each bias as int32 with a per-channel scale and
    # zero point (12 bytes per output channel), which on this 50k-weight model costs ~1 point.
    assert result.size_bytes <= 0.31 * os.path.getsize(mlp_onnx)
    measured = evaluate(result.output_path, dataset=mlp_evaluation, reference_path=mlp_onnx)
    assert measured.metric == "top1_accuracy"
    assert measured.accuracy_delta >= -0.005


@pytest.mark.parametrize("method, weight_type", [("minmax", "qint8"), ("entropy", "quint8")])
def test_static_per_channel_int8_keeps_cnn_accuracy_within_half_a_point(
    method, weight_type, cnn_onnx, cnn_calibration, cnn_evaluation, tmp_path
):
    result = quantize_static(
        cnn_onnx, tmp_path / "static.onnx", calibration=cnn_calibration, method=method, weight_type=weight_type
    )

    assert_valid(result.output_path)
    measured = evaluate(result.output_path, dataset=cnn_evaluation, reference_path=cnn_onnx)
    assert measured.accuracy_delta >= -0.005
    assert result.size_bytes < 0.35 * os.path.getsize(cnn_onnx)


def test_the_recipe_records_every_parameter_and_the_tools(mlp_onnx, digits, tmp_path):
    calibration = {"x": digits.train_x[:100], "labels": digits.train_y[:100]}
    result = quantize_static(
        mlp_onnx,
        tmp_path / "q.onnx",
        calibration=calibration,
        method="percentile",
        per_channel=False,
        reduce_range=True,
        activation_type="qint8",
        weight_type="qint8",
        op_types=["MatMul", "Gemm"],
        max_samples=64,
    )

    recipe = result.recipe
    assert recipe["method"] == "quantize_static" and recipe["format"] == "QDQ"
    assert (recipe["per_channel"], recipe["reduce_range"]) == (False, True)
    assert (recipe["activation_type"], recipe["weight_type"]) == ("qint8", "qint8")
    assert recipe["op_types"] == ["MatMul", "Gemm"]
    assert recipe["calibration"]["method"] == "percentile"
    assert recipe["calibration"]["samples"] == 64 and recipe["calibration"]["max_samples"] == 64
    assert recipe["calibration"]["options"]["percentile"] == 99.999
    assert recipe["pre_process"]["tool"] == "onnxruntime.quantization.quant_pre_process"
    assert recipe["tools"] == {"onnx": onnx.__version__, "onnxruntime": ort.__version__}
    assert any("labels" in note for note in result.notes)


def test_it_converts_to_fp16_at_about_half_the_size(mlp_onnx, mlp_evaluation, tmp_path):
    result = convert_fp16(mlp_onnx, tmp_path / "half.onnx")

    assert_valid(result.output_path)
    assert 0.45 * os.path.getsize(mlp_onnx) <= result.size_bytes <= 0.6 * os.path.getsize(mlp_onnx)
    x = mlp_evaluation["x"][:20]
    np.testing.assert_allclose(run(result.output_path, x), run(mlp_onnx, x), atol=0.05)
    assert result.recipe["keep_io_types"] is True
    assert any("GPU" in note for note in result.notes)


@pytest.mark.parametrize("level", ["basic", "extended", "all"])
def test_it_writes_an_optimized_graph_that_loads(level, cnn_onnx, cnn_evaluation, tmp_path):
    result = optimize_graph(cnn_onnx, tmp_path / f"{level}.onnx", level=level)

    x = cnn_evaluation["x"][:4]
    np.testing.assert_allclose(run(result.output_path, x), run(cnn_onnx, x), atol=1e-4)
    assert result.recipe == {
        "method": "optimize_graph",
        "level": level,
        "providers": ["CPUExecutionProvider"],
        "tools": {"onnx": onnx.__version__, "onnxruntime": ort.__version__},
    }


def test_it_rejects_an_unknown_calibration_method(mlp_onnx, mlp_calibration, tmp_path):
    with pytest.raises(EngineError, match=r"Unknown method 'kl': use one of 'minmax', 'entropy', 'percentile'"):
        quantize_static(mlp_onnx, tmp_path / "q.onnx", calibration=mlp_calibration, method="kl")


def test_it_rejects_an_unknown_weight_type(mlp_onnx, tmp_path):
    with pytest.raises(EngineError, match="Unknown weight_type 'int4'"):
        quantize_dynamic(mlp_onnx, tmp_path / "q.onnx", weight_type="int4")


def test_it_names_missing_calibration_inputs(mlp_onnx, digits, tmp_path):
    with pytest.raises(EngineError, match=r"lacks input\(s\) x\. The model expects: x \['batch', 64\] float32"):
        quantize_static(mlp_onnx, tmp_path / "q.onnx", calibration={"pixels": digits.train_x})
    assert not (tmp_path / "q.onnx").exists()


def test_it_explains_a_calibration_shape_mismatch(cnn_onnx, digits, tmp_path):
    with pytest.raises(EngineError, match="expects 4 dimensions"):
        quantize_static(cnn_onnx, tmp_path / "q.onnx", calibration={"x": digits.train_x})


def test_it_refuses_op_types_the_model_does_not_have(mlp_onnx, tmp_path):
    with pytest.raises(EngineError, match="no operator of type Conv, so nothing would be quantized"):
        quantize_dynamic(mlp_onnx, tmp_path / "q.onnx", op_types=["Conv"])


def test_it_rejects_an_unknown_optimization_level(mlp_onnx, tmp_path):
    with pytest.raises(EngineError, match="Unknown level 'max'"):
        optimize_graph(mlp_onnx, tmp_path / "o.onnx", level="max")


def test_it_reports_a_missing_model(tmp_path):
    with pytest.raises(EngineError, match="Model file not found"):
        convert_fp16(tmp_path / "nope.onnx", tmp_path / "half.onnx")


def test_symbolic_shape_inference_never_dumps_files_into_the_working_directory(tmp_path, monkeypatch):
    from onnxruntime.tools import symbolic_shape_infer

    from jobs.engine.quantize import _no_partial_model_dumps

    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    _no_partial_model_dumps()
    _no_partial_model_dumps()  # idempotent
    symbolic_shape_infer.onnx.save_model(object(), "sym_shape_infer_temp.onnx", save_as_external_data=True)
    assert list(workdir.iterdir()) == []
    assert symbolic_shape_infer.onnx.TensorProto.FLOAT == 1  # the rest is the real onnx
