"""jobs.engine.prune: global magnitude pruning of real digits models."""

import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from jobs.engine.errors import EngineError
from jobs.engine.evaluate import evaluate
from jobs.engine.prune import compressed_size, prune_magnitude


def initializers(path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_it_reaches_the_target_sparsity_and_compresses_better(sparsity, mlp_onnx, tmp_path):
    result = prune_magnitude(mlp_onnx, tmp_path / "pruned.onnx", sparsity=sparsity)

    onnx.checker.check_model(result.output_path, full_check=True)
    assert abs(result.sparsity - sparsity) <= 0.01
    pruned = initializers(result.output_path)
    zeros = sum(int((pruned[name] == 0).sum()) for name in result.recipe["tensors"])
    total = sum(pruned[name].size for name in result.recipe["tensors"])
    assert abs(zeros / total - sparsity) <= 0.01
    assert result.compressed_size_bytes < result.size_bytes
    assert result.compressed_size_bytes < compressed_size(mlp_onnx)
    assert result.size_bytes == os.path.getsize(result.output_path)


def test_it_prunes_weight_matrices_only(cnn_onnx, tmp_path):
    result = prune_magnitude(cnn_onnx, tmp_path / "pruned.onnx", sparsity=0.5)

    before, after = initializers(cnn_onnx), initializers(result.output_path)
    assert result.tensors_pruned == len(result.recipe["tensors"]) == 2  # conv2 and fc1; conv1 and head are small
    for name in before:
        if name not in result.recipe["tensors"]:
            np.testing.assert_array_equal(after[name], before[name])
    assert all("bias" not in name for name in result.recipe["tensors"])


def test_it_says_the_file_stays_dense(mlp_onnx, mlp_evaluation, tmp_path):
    result = prune_magnitude(mlp_onnx, tmp_path / "pruned.onnx", sparsity=0.5)

    assert "file stays dense" in result.notes[0] and "no faster" in result.notes[0]
    assert result.recipe["fine_tuned"] is False
    measured = evaluate(result.output_path, dataset=mlp_evaluation, reference_path=mlp_onnx)
    assert measured.accuracy_delta > -0.05


@pytest.mark.parametrize("sparsity", [1.5, 0, 1, -0.2, "half"])
def test_it_rejects_a_sparsity_outside_0_to_1(sparsity, mlp_onnx, tmp_path):
    with pytest.raises(EngineError, match="sparsity must be a fraction between 0 and 1"):
        prune_magnitude(mlp_onnx, tmp_path / "pruned.onnx", sparsity=sparsity)


def test_it_explains_when_nothing_is_big_enough_to_prune(mlp_onnx, tmp_path):
    with pytest.raises(EngineError, match="Lower min_elements"):
        prune_magnitude(mlp_onnx, tmp_path / "pruned.onnx", min_elements=10**9)
    assert not (tmp_path / "pruned.onnx").exists()
