"""jobs.engine.evaluate: accuracy and fidelity measured on real models."""

import numpy as np
import onnxruntime as ort
import pytest

from jobs.engine.errors import EngineError
from jobs.engine.evaluate import evaluate
from jobs.engine.quantize import convert_fp16, quantize_dynamic


def test_its_accuracy_is_top1_computed_directly(mlp_onnx, mlp_evaluation):
    logits = ort.InferenceSession(str(mlp_onnx)).run(None, {"x": mlp_evaluation["x"]})[0]
    expected = float((logits.argmax(axis=1) == mlp_evaluation["labels"]).mean())

    result = evaluate(mlp_onnx, dataset=mlp_evaluation, batch_size=50)

    assert result.metric == "top1_accuracy"
    assert result.samples == len(mlp_evaluation["labels"])
    assert result.accuracy == pytest.approx(expected, abs=1e-12)
    assert result.reference_accuracy is None and result.cosine_mean is None


def test_a_model_matches_itself(cnn_onnx, cnn_evaluation):
    result = evaluate(cnn_onnx, dataset=cnn_evaluation, reference_path=cnn_onnx)

    assert result.accuracy_delta == 0
    assert result.cosine_min == pytest.approx(1.0) and result.max_abs_diff == 0
    assert result.agreement == 1.0


def test_it_measures_fidelity_without_labels(mlp_onnx, mlp_evaluation, tmp_path):
    quantized = quantize_dynamic(mlp_onnx, tmp_path / "q.onnx").output_path

    result = evaluate(quantized, dataset={"x": mlp_evaluation["x"]}, reference_path=mlp_onnx)

    assert result.metric == "output_fidelity" and result.accuracy is None
    assert 0.9 < result.cosine_min <= result.cosine_mean <= 1.0 + 1e-9
    assert result.max_abs_diff > 0


def test_it_handles_float16_inputs_and_outputs(mlp_onnx, mlp_evaluation, tmp_path):
    half = convert_fp16(mlp_onnx, tmp_path / "half.onnx", keep_io_types=False).output_path
    assert ort.InferenceSession(half).get_outputs()[0].type == "tensor(float16)"

    result = evaluate(half, dataset=mlp_evaluation, reference_path=mlp_onnx)

    assert result.cosine_min > 0.999
    assert abs(result.accuracy_delta) <= 0.01


def test_it_needs_labels_or_a_reference(mlp_onnx, mlp_evaluation):
    with pytest.raises(EngineError, match="Nothing to measure"):
        evaluate(mlp_onnx, dataset={"x": mlp_evaluation["x"]})


def test_it_names_missing_inputs(mlp_onnx, mlp_evaluation):
    with pytest.raises(EngineError, match=r"evaluation data lacks input\(s\) x"):
        evaluate(mlp_onnx, dataset={"images": mlp_evaluation["x"], "labels": mlp_evaluation["labels"]})


def test_it_refuses_an_unavailable_provider(mlp_onnx, mlp_evaluation):
    with pytest.raises(EngineError, match="NoSuchExecutionProvider is not available"):
        evaluate(mlp_onnx, dataset=mlp_evaluation, providers=("NoSuchExecutionProvider",))


def test_labels_that_do_not_fit_give_fidelity_only(mlp_onnx, mlp_evaluation):
    labels = np.full(len(mlp_evaluation["labels"]), 42)

    result = evaluate(mlp_onnx, dataset={"x": mlp_evaluation["x"], "labels": labels}, reference_path=mlp_onnx)

    assert result.accuracy is None and result.metric == "output_fidelity"
    assert "does not look like class scores" in result.notes[-1]
