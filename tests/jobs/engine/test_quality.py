"""Each quality measure against values worked out by hand (jobs.engine.quality)."""

import math

import numpy as np
import pytest

from jobs.engine.evaluate import compare_outputs
from jobs.engine.quality import (
    MEASURES,
    Z95,
    binomial_half_width,
    measure_outputs,
    read_quality,
    summary,
    task_limit_params,
)


def test_classification_top1_top5_and_agreement():
    # 4 samples, 6 classes; the true class is the best for samples 0 and 1, 2nd best for 2, worst for 3.
    scores = np.array([[9, 1, 0, 0, 0, 0], [0, 9, 1, 0, 0, 0], [5, 0, 9, 0, 0, 0], [9, 5, 4, 3, 2, 1]], float)
    labels = np.array([0, 1, 0, 5])
    reference = scores.copy()
    reference[2] = [9, 0, 5, 0, 0, 0]  # the reference's top-1 differs on sample 2 only
    metrics = measure_outputs(scores, task="classification", labels=labels, reference=reference)
    assert metrics["accuracy"]["value"] == 0.5 and metrics["accuracy"]["samples"] == 4
    assert metrics["top5_accuracy"]["value"] == 0.75  # class 5 of sample 3 is 6th
    assert metrics["agreement"]["value"] == 0.75
    half = Z95 * math.sqrt(0.5 * 0.5 / 4)
    assert metrics["accuracy"]["interval"] == pytest.approx([0.5 - half, 0.5 + half])


def test_a_proportion_of_zero_or_one_still_has_an_interval():
    assert binomial_half_width(1.0, 100) > 0
    assert binomial_half_width(0.9, 360) == pytest.approx(Z95 * math.sqrt(0.9 * 0.1 / 360))


def test_regression_mae_rmse_and_relative_error():
    outputs = np.array([[1.0], [2.0], [4.0]])
    labels = np.array([2.0, 2.0, 1.0])  # errors 1, 0, 3
    reference = np.array([[1.0], [3.0], [4.0]])  # differences 0, 1, 0; mean |reference| 8/3
    metrics = measure_outputs(outputs, task="regression", labels=labels, reference=reference)
    assert metrics["mae"]["value"] == pytest.approx(4 / 3)
    assert metrics["rmse"]["value"] == pytest.approx(math.sqrt(10 / 3))
    std = np.std([1, 0, 3], ddof=1)
    assert metrics["mae"]["interval"] == pytest.approx(
        [4 / 3 - Z95 * std / math.sqrt(3), 4 / 3 + Z95 * std / math.sqrt(3)]
    )
    assert metrics["relative_error"]["value"] == pytest.approx((1 / 3) / (8 / 3))
    assert metrics["max_relative_error"]["value"] == pytest.approx(1 / 4)
    assert metrics["max_abs_error"]["value"] == 1.0
    assert "accuracy" not in metrics  # integer-looking targets are not classes for a regression


def test_embedding_cosine_mean_and_worst_and_recall():
    outputs = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.1]])
    reference = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.1]])
    metrics = measure_outputs(outputs, task="embedding", reference=reference, labels=np.array([0, 1, 1, 0]))
    cosines = [1.0, 1.0, 1 / math.sqrt(2), 1.0]
    assert metrics["cosine"]["value"] == pytest.approx(np.mean(cosines))
    assert metrics["cosine"]["worst"] == pytest.approx(1 / math.sqrt(2))
    # Nearest neighbours by cosine: 0 → 3 (same label), 1 → 2 (same), 2 → 1 or 3 (cos 0.707 vs 0.77: 3, not
    # the same), 3 → 0 (same).
    assert metrics["recall_at_1"]["value"] == 0.75 and metrics["recall_at_1"]["samples"] == 4
    assert "accuracy" not in metrics and "agreement" in metrics  # two-column outputs still have an argmax


def test_other_tasks_get_max_absolute_and_relative_error():
    outputs = np.array([[10.0, -2.0], [0.0, 5.5]])
    reference = np.array([[10.0, -2.5], [0.0, 5.0]])
    metrics = measure_outputs(outputs, task="other", reference=reference)
    assert metrics["max_abs_error"]["value"] == 0.5
    assert metrics["max_relative_error"]["value"] == pytest.approx(0.5 / 10)
    assert metrics["relative_error"]["value"] == pytest.approx((1.0 / 4) / (17.5 / 4))  # mean |d| / mean |ref|


def test_evaluate_keeps_embedding_labels_out_of_accuracy():
    outputs = np.eye(4)
    result = compare_outputs(outputs, reference=outputs, labels=np.array([0, 1, 2, 3]), task="embedding")
    assert result.accuracy is None and result.metrics["cosine"]["value"] == 1.0
    assert result.max_relative_error == 0.0
    classified = compare_outputs(outputs, reference=outputs, labels=np.array([0, 1, 2, 3]), task="classification")
    assert classified.accuracy == 1.0 and classified.metrics["accuracy"]["value"] == 1.0


def test_older_benchmarks_are_read_from_their_fields():
    quality = read_quality(
        {},
        accuracy=0.9,
        fidelity={"samples": 100, "reference": "m:1", "cosine_mean": 0.99, "cosine_min": 0.9, "agreement": 0.97},
    )
    assert quality["metrics"]["accuracy"]["value"] == 0.9 and quality["metrics"]["accuracy"]["samples"] == 100
    assert quality["metrics"]["cosine"]["worst"] == 0.9 and quality["reference"] == "m:1"
    assert ("top-1", "90.00 % ±5.88 pt") in summary(quality)


def test_limits_read_in_the_tasks_terms():
    assert task_limit_params("classification") == ["max_drop_pt"]
    assert task_limit_params("embedding") == ["min_cosine"]
    assert task_limit_params("regression") == ["max_relative_error_pct"]
    assert task_limit_params("other") == ["max_drop_pt", "max_relative_error_pct"]
    assert MEASURES["accuracy"].limit_text(0.005) == "at most 0.50 pt accuracy drop"
    assert MEASURES["cosine"].limit_text(0.99) == "cosine ≥ 0.99"
    assert MEASURES["relative_error"].limit_text(0.01) == "relative error ≤ 1.00 %"
