"""berth.core.drift's verdicts: significant and material, the words, the windowed rule, and the
calibration bench's small grid."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from berth.core.drift import (
    DEFAULT_TESTS,
    MIN_DRIFT_ROWS,
    dataset_drift,
    feature_drift,
    features_drift,
    profile_edges,
    relative_drift,
    sustained,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def normal():
    rng = np.random.default_rng(5)
    reference = rng.normal(size=10_000)
    edges = profile_edges(reference)

    def counts(values):
        return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1).tolist()

    return rng, edges, counts(reference), counts


def test_a_wider_distribution_is_called_wider(normal):
    rng, edges, reference, counts = normal
    verdict = feature_drift("column", reference, counts(rng.normal(0, 1.3, 2000)), edges)
    assert verdict["test"] == "ks" and verdict["drifted"] and verdict["severity"] == "drifted"
    assert verdict["explanation"].startswith("wider than the reference (spread × 1.")
    assert re.search(
        rf"KS {verdict['statistic']:.2g}, p-value \d(\.\d)?e-\d+ on 2,000 rows \(Wasserstein", verdict["explanation"]
    )
    assert verdict["relative"] == pytest.approx(verdict["effect_value"] / 0.1)


def test_a_shifted_mean_is_called_higher_or_lower(normal):
    rng, edges, reference, counts = normal
    verdict = feature_drift("value", reference, counts(rng.normal(-0.6, 1, 2000)), edges)
    assert verdict["severity"] == "strong" and verdict["explanation"].startswith("lower than the reference (mean -0.")


def test_a_tiny_significant_change_on_many_rows_is_not_drift(normal):
    rng, edges, reference, counts = normal
    verdict = feature_drift("column", reference, counts(rng.normal(0.05, 1, 100_000)), edges)
    assert verdict["significant"] and not verdict["material"] and not verdict["drifted"]
    assert verdict["severity"] == "slight" and verdict["warn"] and relative_drift(verdict) < 1
    assert verdict["explanation"].startswith("a small change (higher than the reference")
    steady = feature_drift("column", reference, counts(rng.normal(0, 1, 2000)), edges)
    assert steady["severity"] == "none" and steady["explanation"].startswith("like the reference: KS ")


def test_classes_need_a_material_share_to_move():
    reference = [5000, 3000, 2000]
    moved = feature_drift("class", reference, [300, 300, 400])
    assert moved["drifted"] and moved["effect"] == "total_variation" and moved["effect_value"] == pytest.approx(0.2)
    assert re.match(
        r"class 2 went from 20% to 40% of predictions: chi-square p-value \d(\.\d)?e-\d+ ", moved["explanation"]
    )
    nudged = feature_drift("class", reference, [4800, 3000, 2200])
    assert nudged["significant"] and not nudged["drifted"]
    assert feature_drift("class", [0, 0, 10], [50, 50, 50]) is None  # one reference class: no test


def test_it_needs_enough_rows_and_edges(normal):
    rng, edges, reference, counts = normal
    assert feature_drift("column", reference, counts(rng.normal(3, 1, MIN_DRIFT_ROWS - 1)), edges) is None
    assert feature_drift("column", reference, counts(rng.normal(3, 1, MIN_DRIFT_ROWS)), edges)["drifted"]
    with pytest.raises(ValueError):
        feature_drift("column", reference, reference)
    with pytest.raises(ValueError):
        feature_drift("image", reference, reference, edges)
    assert set(DEFAULT_TESTS) == {"column", "mean", "std", "value", "class"}


def test_the_windowed_rule_needs_two_of_the_last_three():
    assert not sustained([True])
    assert not sustained([False, True, False])
    assert sustained([True, None, True])
    assert not sustained([True, True, False, False, True])  # only the last three count
    assert sustained([False, True, True], needed=2, of=3)


def test_dataset_drift_is_the_share_of_drifted_features():
    drifted, steady = {"drifted": True}, {"drifted": False}
    summary = dataset_drift({"a": drifted, "b": steady, "c": steady, "d": None})
    assert summary["features"] == 3 and summary["drifted"] == 1 and not summary["drifted_dataset"]
    assert dataset_drift({"a": drifted, "b": steady})["drifted_dataset"]


def test_the_calibration_bench_meets_its_goals_on_the_small_grid():
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "drift.py"), "--small"], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "agreement with the raw-data verdicts" in run.stdout and run.stdout.rstrip().endswith("OK")


def test_verdicts_for_many_rows_equal_one_at_a_time(normal):
    rng, edges, reference, counts = normal
    rows = [
        counts(rng.normal(rng.uniform(-0.3, 0.3), rng.uniform(0.9, 1.3), rng.integers(50, 3000))) for _ in range(40)
    ]
    assert features_drift("column", reference, rows, edges) == [
        feature_drift("column", reference, r, edges) for r in rows
    ]
    classes = [[int(c) for c in rng.multinomial(rng.integers(50, 3000), [0.5, 0.3, 0.2])] for _ in range(20)]
    assert features_drift("class", [500, 300, 200], classes) == [
        feature_drift("class", [500, 300, 200], c) for c in classes
    ]
    assert features_drift("column", reference, [], edges) == []
    with pytest.raises(ValueError):
        features_drift("column", reference, [reference[:-1]], edges)
