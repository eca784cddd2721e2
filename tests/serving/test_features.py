"""Feature histograms on the reference edges: the contract's definition, computed per row with
numpy.searchsorted, against the runtime's vectorised binning (many requests at once)."""

import logging

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from serving.features import FeatureBuffer, FeatureSet
from serving.protocol import Signature

SIGNATURE = Signature.from_io_signature(
    {
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 6], "dynamic_axes": [0]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 4], "dynamic_axes": [0]}],
    }
)


def reference(features, x, logits):
    """The contract, literally: per row, per feature."""
    result = {}
    for feature in features:
        kind = feature["kind"]
        if kind == "class":
            counts = [0] * feature["classes"]
            for row in logits:
                counts[int(np.argmax(row))] += 1
            result[feature["name"]] = counts
            continue
        counts = [0] * (len(feature["edges"]) + 1)
        for row, out in zip(x, logits):
            # called at once, in the iteration that made them
            value = {
                "mean": lambda: row.astype(np.float64).mean(),  # noqa: B023
                "std": lambda: row.astype(np.float64).std(),  # noqa: B023
                "column": lambda: row[feature.get("column", 0)],  # noqa: B023
                "value": lambda: out[0],  # noqa: B023
            }[kind]()
            counts[int(np.searchsorted(feature["edges"], value, side="left"))] += 1
        result[feature["name"]] = counts
    return result


def make_features(edges):
    return [
        {"name": "x.mean", "input": "x", "kind": "mean", "edges": edges[0]},
        {"name": "x.std", "input": "x", "kind": "std", "edges": edges[1]},
        {"name": "x[0]", "input": "x", "kind": "column", "column": 0, "edges": edges[2]},
        {"name": "x[5]", "input": "x", "kind": "column", "column": 5, "edges": edges[3][:1]},
        {"name": "score", "kind": "value", "output": "logits", "edges": edges[0]},
        {"name": "prediction", "kind": "class", "output": "logits", "classes": 4},
    ]


sorted_edges = st.lists(
    st.sampled_from([-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 2.0]), min_size=1, max_size=6, unique=True
).map(sorted)
values = st.sampled_from([-2.0, -1.0, -0.5, 0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 3.0])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(sorted_edges, min_size=4, max_size=4),
    hnp.arrays(np.float32, st.tuples(st.integers(1, 12), st.just(6)), elements=values),
    hnp.arrays(np.float32, st.just((12, 4)), elements=values),
)
def test_it_bins_like_searchsorted_per_row(edges, x, logits):
    logits = logits[: len(x)]
    features = make_features(edges)
    feature_set = FeatureSet(features, SIGNATURE)
    buffer = FeatureBuffer(feature_set)
    for i in range(len(x)):  # one request per row, binned together
        buffer.add({"x": x[i : i + 1]}, {"logits": logits[i : i + 1]})
    assert feature_set.split(buffer.drain()) == reference(features, x, logits)


def test_it_bins_requests_of_different_widths_one_by_one():
    signature = Signature.from_io_signature(
        {
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", "n"], "dynamic_axes": [0, 1]}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch", 2], "dynamic_axes": [0]}],
        }
    )
    features = [
        {"name": "x.mean", "input": "x", "kind": "mean", "edges": [0.5]},
        {"name": "x[2]", "input": "x", "kind": "column", "column": 2, "edges": [0.5]},
    ]
    feature_set = FeatureSet(features, signature)
    buffer = FeatureBuffer(feature_set)
    buffer.add({"x": np.array([[1.0, 1.0, 0.0]], np.float32)}, {"y": np.zeros((1, 2), np.float32)})
    buffer.add({"x": np.array([[0.0, 0.0]], np.float32)}, {"y": np.zeros((1, 2), np.float32)})
    # The second request has no column 2: its value is missing, which lands in the last bin
    # (searchsorted's place for NaN).
    assert feature_set.split(buffer.drain()) == {"x.mean": [1, 1], "x[2]": [1, 1]}
    assert buffer.drain() is None


def test_it_puts_nan_where_searchsorted_does():
    feature_set = FeatureSet(
        [
            {"name": "x[0]", "input": "x", "kind": "column", "column": 0, "edges": [0.0, 1.0]},
            {"name": "x[1]", "input": "x", "kind": "column", "column": 1, "edges": [0.0]},
        ],
        None,
    )
    x = np.array([[np.nan, np.nan], [0.5, -1.0], [np.inf, -np.inf]], np.float32)
    assert feature_set.split(feature_set.counts({"x": x}, {})) == {"x[0]": [0, 1, 2], "x[1]": [2, 1]}


def test_it_ignores_features_it_cannot_compute(caplog):
    caplog.set_level(logging.WARNING, logger="berth.serve")
    feature_set = FeatureSet(
        [
            {"name": "ok", "input": "x", "kind": "mean", "edges": [0.5]},
            {"name": "unknown kind", "input": "x", "kind": "median", "edges": [0.5]},
            {"name": "no such input", "input": "z", "kind": "mean", "edges": [0.5]},
            {"name": "column outside", "input": "x", "kind": "column", "column": 6, "edges": [0.5]},
            {"name": "unsorted", "input": "x", "kind": "mean", "edges": [0.5, 0.1]},
            {"name": "no classes", "kind": "class", "output": "logits"},
            {"name": "ok", "input": "x", "kind": "std", "edges": [0.5]},
        ],
        SIGNATURE,
    )
    assert feature_set.names == ["ok"]
    assert "unknown kind 'median'" in caplog.text and "outside input 'x' of width 6" in caplog.text
    assert "listed twice" in caplog.text


def test_it_handles_many_edges_per_feature():
    edges = np.linspace(-3, 3, 200).tolist()
    features = [
        {"name": "x.mean", "input": "x", "kind": "mean", "edges": edges},
        {"name": "x[1]", "input": "x", "kind": "column", "column": 1, "edges": edges},
    ]
    x = np.random.default_rng(1).standard_normal((50, 6)).astype(np.float32)
    feature_set = FeatureSet(features, SIGNATURE)
    assert feature_set.split(feature_set.counts({"x": x}, {})) == reference(features, x, np.zeros((50, 4)))
