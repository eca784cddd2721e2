"""The serving profile's measurement (serving.profile): berth-serve's inference core in process
on the digits model, over configurations small enough to run in a second or two."""

import pytest

from serving import profile
from tests.serving.conftest import SIGNATURE


@pytest.fixture
def model_path(digits, tmp_path):
    path = tmp_path / "digits.onnx"
    path.write_bytes(digits["models"]["1"].raw)
    return path


def test_it_counts_the_requests_completed_in_a_window_shorter_than_one_request(model_path):
    # 100 µs is less than one batch of 4 takes through the core: every client's request spans the
    # window, as when one stall on a loaded machine holds all of them (it measured 0 requests then).
    result = profile.sweep(
        model_path, SIGNATURE, concurrency=(4,), batch_sizes=(4,), threads=[1], seconds=0.0001, p99_budget_ms=10_000
    )
    (run,) = result["runs"]
    assert run["requests"] >= profile.MIN_REQUESTS and not run["too_few_samples"], run
    assert run["seconds"] >= 0.0001
    assert run["throughput"] == pytest.approx(run["requests"] / run["seconds"])
    assert run["p50_ms"] <= run["p99_ms"]
    assert sum(int(rows) * runs for rows, runs in run["batch_sizes"].items()) >= run["requests"]
    assert result["recommended"] == run


def test_it_marks_a_configuration_with_too_few_samples_and_never_recommends_it(model_path, monkeypatch):
    monkeypatch.setattr(profile, "MIN_REQUESTS", 10**9)  # more than any window can hold
    result = profile.sweep(
        model_path, SIGNATURE, concurrency=(2,), batch_sizes=(1,), threads=[1], seconds=0.05, p99_budget_ms=10_000
    )
    (run,) = result["runs"]
    assert run["too_few_samples"] and 0 < run["requests"] < 10**9, run
    # Measured for as long as it may be, and its throughput is what it completed in that time.
    assert run["seconds"] == pytest.approx(0.05 * profile.MAX_STRETCH + 1.0)
    assert run["throughput"] == pytest.approx(run["requests"] / run["seconds"])
    assert result["recommended"] is None
