"""berth.core.drift's statistics on binned counts: hand values, and scipy's tests on the raw
samples the counts were made from."""

import math

import numpy as np
import pytest
from scipy import stats

from berth.core.drift import (
    PROFILE_QUANTILES,
    bin_bounds,
    binned_moments,
    cramers_v,
    kolmogorov_sf,
    kolmogorov_sf_array,
    ks,
    profile_edges,
    total_variation,
    wasserstein,
)


def binned(values, edges):
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1).tolist()


# --- Kolmogorov–Smirnov ------------------------------------------------------------------------


def test_kolmogorov_sf_matches_scipy_on_both_branches():
    for x in (0.1, 0.25, 0.29, 0.31, 0.5, 0.8, 1.0, 1.36, 1.63, 2.5):
        assert kolmogorov_sf(x) == pytest.approx(stats.kstwobign.sf(x), rel=1e-9, abs=1e-15)
    assert kolmogorov_sf(0) == 1.0


def test_ks_statistic_is_the_largest_gap_between_the_binned_cdfs():
    # F_ref = .1 .3 .6 1, F_cur = .4 .7 .9 1: the largest gap .4 at the second edge, current smaller
    result = ks([10, 20, 30, 40], [40, 30, 20, 10])
    assert result["statistic"] == pytest.approx(0.4)
    assert result["direction"] == -1
    assert result["effective_n"] == pytest.approx(100 * 100 / 200)
    assert ks([40, 30, 20, 10], [10, 20, 30, 40])["direction"] == 1
    same = ks([10, 20, 30, 40], [20, 40, 60, 80])
    assert same["statistic"] == 0 and same["p_value"] == 1.0


def test_ks_on_integer_data_binned_per_value_equals_scipy_on_the_raw_samples():
    # One bin per value: the binned CDFs are the empirical CDFs, so the statistic is scipy's exactly.
    rng = np.random.default_rng(7)
    edges = np.arange(0, 15)  # bins: <= 0, 1, 2, ..., 14, > 14
    for shift, n, m in ((0.0, 4000, 3000), (0.3, 5000, 2000), (1.0, 10_000, 500)):
        reference = rng.poisson(5, n)
        current = rng.poisson(5 + shift, m)
        raw = stats.ks_2samp(reference, current, method="asymp")
        result = ks(binned(reference, edges), binned(current, edges))
        assert result["statistic"] == pytest.approx(raw.statistic, abs=1e-12)
        # Stephens' correction of the limit distribution vs scipy's kstwo at round(ne)
        assert result["p_value"] == pytest.approx(raw.pvalue, rel=0.15, abs=1e-4)


def test_ks_on_profile_bins_stays_close_to_scipy_on_continuous_raw_samples():
    rng = np.random.default_rng(8)
    reference = rng.normal(size=10_000)
    edges = profile_edges(reference)
    for loc, scale in ((0.0, 1.0), (0.2, 1.0), (0.0, 1.3), (0.5, 1.1)):
        current = rng.normal(loc, scale, 2000)
        raw = stats.ks_2samp(reference, current)
        result = ks(binned(reference, edges), binned(current, edges))
        assert result["statistic"] <= raw.statistic + 1e-12  # a gap at an edge is a gap of the raw CDFs
        assert result["statistic"] == pytest.approx(raw.statistic, abs=0.02)
        assert (result["p_value"] < 0.05) == (raw.pvalue < 0.05)


def test_ks_needs_counts_on_both_sides():
    assert ks([0, 0], [1, 2]) is None and ks([1, 2], [0, 0]) is None
    with pytest.raises(ValueError):
        ks([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        ks([1, -2], [1, 2])


# --- Wasserstein ---------------------------------------------------------------------------------


def test_wasserstein_of_a_one_bin_move_is_the_bin_width_over_the_spread():
    # bins (0, 1], (1, 2], (2, 3], (3, 4]: all mass one bin to the right moves everything by 1;
    # the reference is uniform on (1, 2], standard deviation 1 / sqrt(12).
    assert wasserstein([0, 10, 0, 0], [0, 0, 10, 0], [1, 2, 3]) == pytest.approx(math.sqrt(12))
    assert wasserstein([0, 10, 0, 0], [0, 20, 0, 0], [1, 2, 3]) == 0


def test_wasserstein_with_crossing_cdfs_integrates_the_absolute_gap():
    # F_ref - F_cur goes linearly from 0 to +.5 over bin 1 and back to -.5 over bin 2 (crossing at the middle)
    distance = wasserstein([0, 10, 0, 10, 0], [0, 0, 20, 0, 0], [1, 2, 3, 4])
    gap = 0.5 * 0.5 + 2 * (0.5 * 0.5 * 0.5) + 0.5 * 0.5  # ∫|ΔF| over bins 1, 2 and 3
    _, spread = binned_moments([0, 10, 0, 10, 0], [1, 2, 3, 4])
    assert distance == pytest.approx(gap / spread)


def test_wasserstein_on_profile_bins_tracks_scipy_on_the_raw_samples():
    rng = np.random.default_rng(9)
    reference = rng.normal(3, 2, size=10_000)
    edges = profile_edges(reference)
    for loc, scale, mixture in ((3.0, 2.0, 0), (3.4, 2.0, 0), (3.0, 2.6, 0), (4.0, 2.2, 0), (3.0, 2.0, 0.05)):
        current = rng.normal(loc, scale, 5000)
        wide = rng.random(5000) < mixture
        current[wide] = rng.normal(3, 8, wide.sum())
        raw = stats.wasserstein_distance(reference, current) / np.std(reference)
        assert wasserstein(binned(reference, edges), binned(current, edges), edges) == pytest.approx(
            raw, rel=0.2, abs=0.01
        )


def test_binned_moments_approach_the_raw_moments():
    rng = np.random.default_rng(10)
    values = rng.normal(5, 3, 50_000)
    edges = profile_edges(values)
    mean, spread = binned_moments(binned(values, edges), edges)
    assert mean == pytest.approx(values.mean(), abs=0.05)
    assert spread == pytest.approx(values.std(), rel=0.03)
    assert binned_moments([0, 0, 0], [1, 2]) == (None, None)


def test_bin_bounds_give_the_open_end_bins_their_neighbours_width():
    assert bin_bounds([1, 2, 4]) == [(0, 1), (1, 2), (2, 4), (4, 6)]
    assert bin_bounds([3]) == [(2, 3), (3, 4)]
    with pytest.raises(ValueError):
        bin_bounds([])


# --- classes -------------------------------------------------------------------------------------


def test_total_variation_is_half_the_l1_distance_of_the_proportions():
    assert total_variation([50, 30, 20], [20, 30, 50]) == pytest.approx(0.3)
    assert total_variation([1, 0], [0, 5]) == 1.0
    assert total_variation([0, 0], [1, 1]) is None


def test_cramers_v_matches_scipy_on_the_contingency_table():
    reference, current = [500, 300, 150, 50], [180, 110, 90, 20]
    chi2 = stats.chi2_contingency(np.array([reference, current]), correction=False).statistic
    assert cramers_v(reference, current) == pytest.approx(math.sqrt(chi2 / 1400), rel=1e-12)
    assert cramers_v(reference, current) == pytest.approx(
        stats.contingency.association(np.array([reference, current]), method="cramer"), rel=1e-12
    )
    assert cramers_v([10, 0, 5], [20, 0, 10]) == pytest.approx(0, abs=1e-12)  # an empty class is left out
    assert cramers_v([10, 0], [20, 0]) is None


# --- profile edges ---------------------------------------------------------------------------------


def test_profile_edges_hold_the_tail_quantiles_and_outer_bins():
    rng = np.random.default_rng(11)
    values = rng.normal(size=20_000)
    edges = profile_edges(np.append(values, [np.nan, np.inf]))
    for q in PROFILE_QUANTILES:
        assert np.quantile(values, q) in edges
    assert edges == sorted(edges) and len(edges) == len(set(edges)) == len(PROFILE_QUANTILES) + 6
    high, median = np.quantile(values, 0.99), np.median(values)
    assert edges[-1] == pytest.approx(high + 2 * (high - median))
    assert binned(values, edges)[-1] == 0  # nothing of a normal sample is beyond 3 × its 99 % quantile


def test_profile_edges_of_few_distinct_values_are_distinct():
    assert profile_edges([0, 1, 1, 0, 1]) == sorted(set(profile_edges([0, 1, 1, 0, 1])))
    assert profile_edges([2.0] * 10) == [2.0]
    with pytest.raises(ValueError):
        profile_edges([np.nan])


def test_the_vectorised_kolmogorov_sf_matches_the_scalar_one():
    xs = np.array([0, 0.05, 0.1, 0.29, 0.3, 0.5, 1.0, 1.36, 2.0, 5.0])
    assert np.allclose(kolmogorov_sf_array(xs), [kolmogorov_sf(x) for x in xs], rtol=1e-12, atol=1e-15)
