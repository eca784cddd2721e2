"""Production against the benchmark, like for like (monitoring.comparable): request latency only
against an end-to-end benchmark in the same encoding at the same rows, inference latency only
against a session.run benchmark at the same batch size; otherwise "no comparable benchmark" and why."""

import pytest

from monitoring import comparable
from tests.conftest import BenchWorld


def figures(p95, count, key="requests"):
    return {key: count, "p50_ms": p95 * 0.8, "p95_ms": p95, "p99_ms": p95 * 1.2}


def bench(p95):
    return {"p50_ms": p95 * 0.8, "p95_ms": p95, "p99_ms": p95 * 1.2, "timing_mode": "host"}


MEASURED = {"inference": {1: bench(0.02)}, "request": {"json": {1: bench(0.5)}, "grpc": {8: bench(0.9)}}}


def test_it_compares_request_latency_with_the_end_to_end_benchmark_in_the_same_encoding():
    result = comparable.compare(
        version="3",
        target="cpu",
        inference={1: figures(0.03, 900, "runs")},
        request={"json": {1: figures(1.5, 900)}, "grpc": {1: figures(2.0, 100)}},
        measured=MEASURED,
    )
    request = result["request"]
    assert request["comparable"] is True
    assert (request["encoding"], request["batch_size"], request["requests"]) == ("json", 1, 900)
    assert request["share"] == pytest.approx(0.9)
    assert request["production_p95_ms"] == 1.5 and request["benchmark_p95_ms"] == 0.5
    assert request["ratio"] == pytest.approx(3.0)
    # The inference comparison stays with the session.run benchmark.
    assert result["inference"]["ratio"] == pytest.approx(1.5) and result["inference"]["benchmark_p95_ms"] == 0.02


def test_an_end_to_end_benchmark_in_another_encoding_is_not_comparable():
    result = comparable.compare(
        version="3", target="cpu", inference={}, request={"binary": {1: figures(1.0, 50)}}, measured=MEASURED
    )
    request = result["request"]
    assert request["comparable"] is False and "ratio" not in request
    assert request["encoding"] == "binary" and request["production_p95_ms"] == 1.0
    assert request["why"] == (
        "v3 on cpu has no end-to-end benchmark in binary at batch size 1, the encoding and size production "
        "served most (end-to-end benchmarks: grpc at 8; json at 1)"
    )


def test_an_end_to_end_benchmark_at_other_rows_is_not_comparable():
    result = comparable.compare(
        version="3", target="cpu", inference={}, request={"grpc": {1: figures(1.0, 50)}}, measured=MEASURED
    )
    assert result["request"]["comparable"] is False
    assert "no end-to-end benchmark in grpc at batch size 1" in result["request"]["why"]


def test_a_session_run_benchmark_is_never_compared_with_requests():
    result = comparable.compare(
        version="3",
        target="cpu",
        inference={1: figures(0.03, 10, "runs")},
        request={"json": {1: figures(1.0, 10)}},
        measured={"inference": {1: bench(0.02)}, "request": {}},
    )
    assert result["inference"]["comparable"] is True
    assert result["request"]["comparable"] is False
    assert result["request"]["why"].endswith("(none yet: a benchmark with measure=requests, encoding=json)")


def test_without_the_encoding_reported_there_is_no_request_comparison():
    for request in (None, {}):
        result = comparable.compare(version="3", target="cpu", inference={}, request=request, measured=MEASURED)
        assert result["request"]["comparable"] is False
        assert "did not report which encoding served its requests" in result["request"]["why"]
    missing = comparable.compare(version="3", target="cpu", inference={}, measured={})
    assert missing["inference"]["comparable"] is False and missing["request"]["comparable"] is False


@pytest.mark.django_db
def test_benchmarks_keeps_the_two_scopes_and_each_encoding_apart(engineer):
    world = BenchWorld(engineer)
    target = world.cpu
    version = world.version("3")
    world.result(version, target, p95=0.02, batch=1)
    world.result(version, target, p95=0.5, batch=1, scope="request", encoding="json")
    world.result(version, target, p95=0.7, batch=1, scope="request", encoding="grpc")
    found = comparable.benchmarks([version], target.pk)[version.pk]
    assert found["inference"][1]["p95_ms"] == 0.02
    assert {encoding: by[1]["p95_ms"] for encoding, by in found["request"].items()} == {"json": 0.5, "grpc": 0.7}
