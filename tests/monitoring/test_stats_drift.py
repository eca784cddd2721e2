"""berth.core.stats drift distances (PSI, Jensen-Shannon, chi-square) and the
latency sketch on realistic distributions, merged from many windows."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.core.stats import LogSketch, chi2_sf, chi_square, js_distance, psi, sketch_quantiles

REFERENCE = [10, 20, 30, 40]
REVERSED = [40, 30, 20, 10]

# --- PSI and Jensen-Shannon ------------------------------------------------------------------


def test_psi_is_the_sum_over_bins_on_proportions():
    # r = .1 .2 .3 .4, c = .4 .3 .2 .1: (c - r) ln(c / r) per bin
    expected = 0.3 * math.log(4) + 0.1 * math.log(1.5) + (-0.1) * math.log(2 / 3) + (-0.3) * math.log(1 / 4)
    assert psi(REFERENCE, REVERSED) == pytest.approx(expected, rel=1e-12)
    assert psi(REVERSED, REFERENCE) == pytest.approx(expected, rel=1e-12)


def test_js_distance_is_the_root_of_the_base_2_divergence():
    # m = .25 in every bin; both sides hold the same proportions, so KL(r||m) = KL(c||m)
    kl = sum(p * math.log(p / 0.25) for p in (0.1, 0.2, 0.3, 0.4)) / math.log(2)
    assert js_distance(REFERENCE, REVERSED) == pytest.approx(math.sqrt(kl), rel=1e-12)
    assert js_distance([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint: the largest distance


def test_identical_distributions_do_not_drift():
    assert psi(REFERENCE, [2 * c for c in REFERENCE]) == pytest.approx(0, abs=1e-15)
    assert js_distance(REFERENCE, [3 * c for c in REFERENCE]) == pytest.approx(0, abs=1e-7)
    statistic, p_value = chi_square(REFERENCE, [5 * c for c in REFERENCE])
    assert statistic == pytest.approx(0, abs=1e-12) and p_value == pytest.approx(1)


def test_a_bin_empty_on_one_side_gives_finite_values():
    reference, current = [0, 50, 50], [30, 40, 30]
    # the empty bin's proportion is raised to eps = 1e-4
    expected = (0.3 - 1e-4) * math.log(0.3 / 1e-4) + (-0.1) * math.log(0.4 / 0.5) + (-0.2) * math.log(0.3 / 0.5)
    assert psi(reference, current) == pytest.approx(expected, rel=1e-12)
    assert psi(current, reference) == pytest.approx(expected, rel=1e-12)
    assert 0 < js_distance(reference, current) < 1 and math.isfinite(js_distance(current, reference))
    statistic, p_value = chi_square(reference, current)
    assert math.isfinite(statistic) and 0 <= p_value <= 1


def test_nothing_to_compare_and_bad_input():
    assert psi([0, 0], [1, 2]) is None and psi([1, 2], [0, 0]) is None
    assert js_distance([0, 0], [1, 2]) is None
    assert chi_square([1, 2], [0, 0]) == (None, None)
    assert chi_square([0, 5], [3, 2]) == (None, None)  # one usable bin: no test
    for function in (psi, js_distance, chi_square):
        with pytest.raises(ValueError):
            function([1, 2, 3], [1, 2])
        with pytest.raises(ValueError):
            function([1, -2], [1, 2])
        with pytest.raises(ValueError):
            function([1, 2], [float("nan"), 2])


# --- chi-square ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "dof", "p_value"),
    [
        (5.991, 2, math.exp(-5.991 / 2)),  # ~0.05, the dof=2 critical value
        (3.841, 1, math.erfc(math.sqrt(3.841 / 2))),  # ~0.05
        (9.0, 4, math.exp(-4.5) * (1 + 4.5)),  # even dof: exp(-y) sum_{k < dof/2} y^k / k!
        (1.0, 4, math.exp(-0.5) * (1 + 0.5)),  # series branch (x/2 < dof/2 + 1)
        (0.0, 3, 1.0),
    ],
)
def test_chi2_survival_function_exact_cases(x, dof, p_value):
    assert chi2_sf(x, dof) == pytest.approx(p_value, rel=1e-10)


@pytest.mark.parametrize(("x", "dof"), [(5.991, 2), (3.841, 1), (11.070, 5), (18.307, 10), (43.773, 30)])
def test_chi2_survival_function_at_table_critical_values(x, dof):
    assert chi2_sf(x, dof) == pytest.approx(0.05, abs=2e-4)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=1000, allow_nan=False))
def test_chi2_survival_function_matches_the_closed_forms(x):
    assert math.isclose(chi2_sf(x, 2), math.exp(-x / 2), rel_tol=1e-9)
    assert math.isclose(chi2_sf(x, 1), math.erfc(math.sqrt(x / 2)), rel_tol=1e-9)


@settings(max_examples=150, deadline=None)
@given(st.floats(min_value=0, max_value=500, allow_nan=False), st.integers(min_value=1, max_value=40))
def test_chi2_survival_function_matches_the_even_dof_closed_form(y, half_dof):
    term = total = 1.0
    for k in range(1, half_dof):
        term *= y / k
        total += term
    assert math.isclose(chi2_sf(2 * y, 2 * half_dof), math.exp(-y) * total, rel_tol=1e-9)


def test_chi_square_statistic_on_fixed_counts():
    statistic, p_value = chi_square([50, 50], [60, 40])  # expected 50, 50
    assert statistic == pytest.approx(100 / 50 + 100 / 50) and p_value == pytest.approx(math.erfc(math.sqrt(2)))
    statistic, p_value = chi_square([1, 1, 2], [30, 20, 50])  # expected 25, 25, 50
    assert statistic == pytest.approx(2.0) and p_value == pytest.approx(math.exp(-1))


def test_chi_square_leaves_out_bins_the_reference_never_saw():
    assert chi_square([0, 50, 50], [0, 60, 40]) == pytest.approx(chi_square([50, 50], [60, 40]))
    # 10 rows of a new class: the seen bins expect 50 each but hold 45
    statistic, p_value = chi_square([0, 50, 50], [10, 45, 45])
    assert statistic == pytest.approx(25 / 50 + 25 / 50) and p_value == pytest.approx(math.erfc(math.sqrt(0.5)))


# --- the latency sketch on realistic data, merged from windows -------------------------------


@st.composite
def latency_samples(draw):
    """Lognormal latencies, or a mixture of two lognormals (a fast and a slow path)."""
    rng = np.random.default_rng(draw(st.integers(min_value=0, max_value=2**32 - 1)))
    size = draw(st.integers(min_value=1, max_value=5000))
    mean, sigma = draw(st.floats(min_value=-1, max_value=4)), draw(st.floats(min_value=0.05, max_value=2))
    values = rng.lognormal(mean, sigma, size)
    if draw(st.booleans()):
        slow = rng.random(size) < draw(st.floats(min_value=0.01, max_value=0.5))
        values[slow] = rng.lognormal(mean + draw(st.floats(min_value=1, max_value=4)), sigma, int(slow.sum()))
    return values


def sketch_of(values):
    sketch = LogSketch()
    sketch.add_many(values)
    return sketch


def exact_quantile(values, q):
    return float(np.sort(values)[math.floor(q * (len(values) - 1))])


QS = (0.0, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0)


@settings(max_examples=60, deadline=None)
@given(latency_samples())
def test_sketch_quantiles_are_within_alpha_on_lognormal_and_bimodal_data(values):
    sketch = sketch_of(values)
    for q in QS:
        exact = exact_quantile(values, q)
        assert abs(sketch.quantile(q) - exact) <= sketch.alpha * exact * (1 + 1e-9)


@settings(max_examples=40, deadline=None)
@given(latency_samples(), st.integers(min_value=1, max_value=12))
def test_merged_wire_sketches_answer_like_one_sketch_of_everything(values, windows):
    parts = np.array_split(values, windows)
    dicts = [sketch_of(part).to_dict() for part in parts] + [{}, None]  # empty windows are skipped
    merged = sketch_quantiles(dicts, QS)
    whole = sketch_of(values)
    assert merged == [whole.quantile(q) for q in QS]
    for q, answer in zip(QS, merged):
        exact = exact_quantile(values, q)
        assert abs(answer - exact) <= whole.alpha * exact * (1 + 1e-9)


@settings(max_examples=40, deadline=None)
@given(latency_samples(), latency_samples(), latency_samples())
def test_merge_is_associative(a, b, c):
    left = sketch_of(a).merge(sketch_of(b)).merge(sketch_of(c))
    right = sketch_of(a).merge(sketch_of(b).merge(sketch_of(c)))
    everything = sketch_of(np.concatenate([a, b, c]))
    assert left == right == everything
    assert left.count == right.count == everything.count == len(a) + len(b) + len(c)


def test_sketch_quantiles_edge_cases():
    assert sketch_quantiles([]) == [None, None, None]
    assert sketch_quantiles([{}, None, {"alpha": 0.01, "buckets": {}, "zero_count": 0}], qs=(0.5,)) == [None]
    zeros_and_one = LogSketch()
    zeros_and_one.add_many([0, 0, 0, 12.5])
    assert sketch_quantiles([zeros_and_one.to_dict()], qs=(0.5, 1.0)) == [0.0, zeros_and_one.quantile(1.0)]
    # a key parsed from JSON ("412") and one written as an int are the same bucket
    assert (
        sketch_quantiles([{"alpha": 0.01, "buckets": {"412": 1}}, {"alpha": 0.01, "buckets": {412: 1}}], qs=(0.0, 1.0))
        == [LogSketch().value(412)] * 2
    )
    with pytest.raises(ValueError):
        sketch_quantiles([LogSketch(0.01).to_dict() | {"buckets": {"1": 1}}, {"alpha": 0.02, "buckets": {"1": 1}}])
    with pytest.raises(ValueError):
        sketch_quantiles([{"alpha": 0.01, "buckets": {"x": 1}}])
    with pytest.raises(ValueError):
        sketch_quantiles([{"alpha": 0.01, "buckets": {"3": -1}}])
    with pytest.raises(ValueError):
        sketch_quantiles([{"alpha": 0.01, "buckets": {"3": "1"}}])
    with pytest.raises(ValueError):
        sketch_quantiles([{"alpha": 0.01, "buckets": {"3": 1}}], qs=(1.5,))
