"""berth.core.drift's one wording of drift figures: each test in its own terms against its
threshold, p-values below 0.001 in compact scientific notation."""

import numpy as np
import pytest

from berth.core.drift import drift_text, feature_drift, figure, measure_text, profile_edges, threshold_text


@pytest.mark.parametrize(
    "value, text",
    [
        (2e-6, "2e-6"),
        (2.34e-6, "2.3e-6"),
        (3.4e-12, "3.4e-12"),
        (0.0009996, "1e-3"),
        (0.001, "0.001"),
        (0.023, "0.023"),
        (0.31, "0.31"),
        (0.05, "0.05"),
        (1.234, "1.23"),
        (312.4, "312"),
        (12_345.6, "12,346"),
        (0, "0"),
        (None, "–"),
    ],
)
def test_it_writes_figures_compactly(value, text):
    assert figure(value) == text


def test_each_test_reads_in_its_own_terms():
    assert measure_text("chi_square", 2e-6, 0.05) == "chi-square p-value 2e-6 (threshold 0.05)"
    assert measure_text("psi", 0.31, 0.2) == "PSI 0.31 (threshold 0.2)"
    assert measure_text("ks", 0.012, 0.05) == "KS p-value 0.012 (threshold 0.05)"
    assert measure_text("wasserstein", 0.31, 0.1) == "Wasserstein 0.31 sd (threshold 0.1 sd)"
    assert measure_text("js", 0.12) == "Jensen-Shannon 0.12"
    assert measure_text("total_variation", 0.7, 0.1) == "total variation 0.7 (threshold 0.1)"
    assert measure_text("some_new_test", 0.5, 1) == "some new test 0.5 (threshold 1)"
    assert (
        threshold_text("ks", 0.05) == "KS p-value < 0.05"
        and threshold_text("wasserstein", 0.1) == "Wasserstein ≥ 0.1 sd"
    )


def test_a_verdict_states_its_test_and_effect_against_their_thresholds():
    rng = np.random.default_rng(3)
    reference = rng.normal(size=5000)
    edges = profile_edges(reference)

    def counts(values):
        return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1).tolist()

    verdict = feature_drift("column", counts(reference), counts(rng.normal(0.5, 1, 2000)), edges)
    assert verdict["drifted"] and verdict["score"] < 0.001
    text = drift_text(verdict, "pixel_mean")
    assert text == (
        f"pixel_mean: KS p-value {figure(verdict['score'])} (threshold 0.05), "
        f"Wasserstein {figure(verdict['effect_value'])} sd (threshold 0.1 sd)"
    )
    assert "e-" in figure(verdict["score"])
    classes = feature_drift("class", [300, 300, 400], [200, 100, 100])
    assert drift_text(classes) == (
        f"chi-square p-value {figure(classes['score'])} (threshold 0.05), total variation 0.2 (threshold 0.1)"
    )  # ½ (|0.5 - 0.3| + |0.25 - 0.3| + |0.25 - 0.4|)
    # An alert stored when numeric features were judged by PSI alone (no effect size) still reads.
    assert drift_text({"test": "psi", "score": 0.31, "threshold": 0.2}, "x") == "x: PSI 0.31 (threshold 0.2)"
