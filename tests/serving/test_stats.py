"""berth.core.stats.LogSketch: relative accuracy, merging, the wire format."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from berth.core.stats import LogSketch

latencies = st.lists(st.floats(min_value=1e-3, max_value=1e6, allow_nan=False), min_size=1, max_size=300)


@settings(max_examples=200, deadline=None)
@given(latencies, st.floats(min_value=0, max_value=1))
def test_it_answers_quantiles_within_the_relative_accuracy(values, q):
    sketch = LogSketch(0.01)
    for value in values:
        sketch.add(value)
    exact = sorted(values)[math.floor(q * (len(values) - 1))]
    assert abs(sketch.quantile(q) - exact) <= 0.01 * exact * (1 + 1e-9)


@settings(max_examples=100, deadline=None)
@given(latencies, latencies)
def test_it_merges_like_one_sketch_of_everything(first, second):
    a, b, both = LogSketch(), LogSketch(), LogSketch()
    for value in first:
        a.add(value)
        both.add(value)
    for value in second:
        b.add(value)
        both.add(value)
    assert a.merge(b) == both
    assert a.count == len(first) + len(second)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=-10, max_value=1e5, allow_nan=False), max_size=200))
def test_it_adds_many_values_like_one_at_a_time(values):
    one, many = LogSketch(), LogSketch()
    for value in values:
        one.add(value)
    many.add_many(values)
    assert one == many and one.count == many.count


def test_it_uses_the_wire_format_of_the_telemetry():
    sketch = LogSketch(0.01)
    sketch.add(12.5, count=3)
    sketch.add(0)
    sketch.add(-1)
    gamma = 1.01 / 0.99
    key = math.ceil(math.log(12.5) / math.log(gamma))
    assert sketch.to_dict() == {"alpha": 0.01, "buckets": {str(key): 3}, "zero_count": 2}
    again = LogSketch.from_dict(sketch.to_dict())
    assert again == sketch and again.count == 5
    assert again.quantile(0) == 0.0
    assert again.quantile(1) == pytest.approx(12.5, rel=0.01)


def test_it_refuses_to_merge_different_accuracies_and_malformed_input():
    with pytest.raises(ValueError):
        LogSketch(0.01).merge(LogSketch(0.02))
    with pytest.raises(ValueError):
        LogSketch.from_dict({"alpha": 0.01, "buckets": {"x": 1}})
    with pytest.raises(ValueError):
        LogSketch.from_dict({"alpha": 0.01, "buckets": {"3": -1}})
    assert LogSketch().quantile(0.5) is None


def test_it_tracks_a_latency_distribution():
    values = np.random.default_rng(0).lognormal(mean=1, sigma=0.8, size=20_000)
    sketch = LogSketch()
    sketch.add_many(values)
    for q in (0.5, 0.95, 0.99):
        exact = np.sort(values)[math.floor(q * (len(values) - 1))]
        assert sketch.quantile(q) == pytest.approx(exact, rel=0.01)
