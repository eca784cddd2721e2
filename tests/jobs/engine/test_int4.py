"""jobs.engine.int4 on real digits models: weight-only int4 through onnxruntime's MatMulNBits."""

import os

import onnx
import pytest

from jobs.engine.errors import EngineError
from jobs.engine.evaluate import evaluate
from jobs.engine.int4 import quantize_int4_weights


def test_it_stores_the_mlps_dense_weights_as_int4_and_keeps_the_accuracy(mlp_onnx, mlp_evaluation, tmp_path):
    result = quantize_int4_weights(mlp_onnx, tmp_path / "int4.onnx", block_size=32)

    model = onnx.load(result.output_path)
    assert {node.op_type for node in model.graph.node} >= {"MatMulNBits"}
    assert "Gemm" not in {node.op_type for node in model.graph.node}
    assert result.size_bytes == os.path.getsize(result.output_path)
    assert result.size_bytes <= 0.25 * os.path.getsize(mlp_onnx)
    assert result.recipe["quantized_matmuls"] == result.recipe["gemm_rewritten_as_matmul"] >= 2
    measured = evaluate(result.output_path, dataset=mlp_evaluation, reference_path=mlp_onnx)
    assert measured.accuracy_delta >= -0.02


def test_asymmetric_blocks_are_recorded(mlp_onnx, tmp_path):
    result = quantize_int4_weights(mlp_onnx, tmp_path / "int4.onnx", block_size=16, symmetric=False)

    assert (result.recipe["block_size"], result.recipe["symmetric"]) == (16, False)


def test_a_block_size_that_is_not_a_power_of_two_is_refused_and_nothing_is_written(mlp_onnx, tmp_path):
    with pytest.raises(EngineError, match="block_size must be one of 16, 32, 64, 128"):
        quantize_int4_weights(mlp_onnx, tmp_path / "int4.onnx", block_size=20)
    assert not (tmp_path / "int4.onnx").exists()
