"""jobs.engine.autotune: a small quantization search on the digits CNN and MLP."""

import os

import pytest

from jobs.engine.autotune import autotune, default_grid
from jobs.engine.errors import EngineError


@pytest.fixture(scope="module")
def cnn_search(cnn_onnx, cnn_calibration, cnn_evaluation, tmp_path_factory):
    return autotune(
        cnn_onnx,
        tmp_path_factory.mktemp("autotune"),
        calibration=cnn_calibration,
        evaluation=cnn_evaluation,
        budget={"max_accuracy_drop": 0.005},
        latency_runs=20,
    )


def test_it_records_every_trial_and_picks_the_smallest_within_budget(cnn_search, cnn_onnx):
    assert len(cnn_search.trials) == len(default_grid({"Conv", "Gemm"})) <= 8
    for trial in cnn_search.trials:
        assert trial.error or (os.path.exists(trial.output_path) and trial.p50_ms > 0 and trial.recipe)
    best = cnn_search.best
    assert best is not None and best.within_budget and best.accuracy_drop <= 0.005
    assert best.size_bytes == min(t.size_bytes for t in cnn_search.trials if t.within_budget)
    assert best.size_bytes < 0.35 * os.path.getsize(cnn_onnx)
    assert f"Trial {best.number}" in cnn_search.reason and "smallest" in cnn_search.reason
    assert cnn_search.source["size_bytes"] == os.path.getsize(cnn_onnx)


def test_it_says_when_no_trial_meets_the_budget(mlp_onnx, mlp_calibration, mlp_evaluation, tmp_path):
    result = autotune(
        mlp_onnx,
        tmp_path,
        calibration=mlp_calibration,
        evaluation=mlp_evaluation,
        budget={"max_accuracy_drop": -1},
        grid=[{"mode": "dynamic"}, {"mode": "static"}],
        latency_runs=5,
    )

    assert result.best is None
    assert len(result.trials) == 2 and not any(t.within_budget for t in result.trials)
    assert result.reason.startswith("None of the 2 trials is within the budget (max_accuracy_drop=-1)")


def test_it_keeps_the_fastest_for_a_latency_objective_on_fidelity(mlp_onnx, mlp_calibration, mlp_evaluation, tmp_path):
    result = autotune(
        mlp_onnx,
        tmp_path,
        calibration=mlp_calibration,
        evaluation={"x": mlp_evaluation["x"]},
        budget={"min_cosine": 0.9, "max_abs_diff": 100},
        objective="latency",
        grid=[{"mode": "dynamic"}, {"mode": "dynamic", "weight_type": "quint8"}],
        latency_runs=5,
    )

    assert result.best.p50_ms == min(t.p50_ms for t in result.trials if t.within_budget)
    assert result.best.accuracy is None and result.best.cosine_mean >= 0.9


def test_a_failing_trial_is_recorded_not_fatal(mlp_onnx, mlp_calibration, mlp_evaluation, tmp_path):
    result = autotune(
        mlp_onnx,
        tmp_path,
        calibration=mlp_calibration,
        evaluation=mlp_evaluation,
        budget={"max_accuracy_drop": 0.01},
        grid=[{"mode": "dynamic", "op_types": ["Conv"]}, {"mode": "dynamic"}],
        latency_runs=5,
    )

    failed, ok = result.trials
    assert "no operator of type Conv" in failed.error and not failed.within_budget
    assert result.best is ok
    assert "1 trial(s) failed with an error" in result.reason


@pytest.mark.parametrize(
    "budget, message",
    [
        ({}, "Give a budget"),
        ({"max_drop": 0.01}, "Unknown budget key"),
        ({"min_cosine": "high"}, "must be a number"),
    ],
)
def test_it_rejects_a_bad_budget(budget, message, mlp_onnx, mlp_calibration, mlp_evaluation, tmp_path):
    with pytest.raises(EngineError, match=message):
        autotune(mlp_onnx, tmp_path, calibration=mlp_calibration, evaluation=mlp_evaluation, budget=budget)


def test_an_accuracy_budget_needs_labels(mlp_onnx, mlp_calibration, mlp_evaluation, tmp_path):
    with pytest.raises(EngineError, match="needs 'labels'"):
        autotune(
            mlp_onnx,
            tmp_path,
            calibration=mlp_calibration,
            evaluation={"x": mlp_evaluation["x"]},
            budget={"max_accuracy_drop": 0.01},
        )


def test_it_rejects_unknown_grid_settings(mlp_onnx, mlp_calibration, mlp_evaluation, tmp_path):
    with pytest.raises(EngineError, match="Unknown dynamic setting"):
        autotune(
            mlp_onnx,
            tmp_path,
            calibration=mlp_calibration,
            evaluation=mlp_evaluation,
            budget={"max_accuracy_drop": 0.01},
            grid=[{"mode": "dynamic", "method": "entropy"}],
        )
    with pytest.raises(EngineError, match="Unknown objective"):
        autotune(
            mlp_onnx,
            tmp_path,
            calibration=mlp_calibration,
            evaluation=mlp_evaluation,
            budget={"max_accuracy_drop": 0.01},
            objective="accuracy",
        )


def test_latency_is_measured_on_the_targets_provider_or_not_at_all(mlp_onnx, mlp_calibration, mlp_evaluation, tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this host has CUDA: the fall-back cannot be shown here")
    # A GPU target's latency objective must not quietly time the CPU instead.
    with pytest.raises(EngineError, match="fell back from CUDAExecutionProvider"):
        autotune(
            mlp_onnx,
            tmp_path,
            calibration=mlp_calibration,
            evaluation=mlp_evaluation,
            budget={"min_cosine": 0.9},
            objective="latency",
            provider="CUDAExecutionProvider",
        )
