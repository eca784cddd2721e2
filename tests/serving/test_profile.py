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


AXES = ([1, 2], [1, 8, 32], [1, 8, 32])  # threads, max_batch_size, concurrency


def _climb(objective):
    """quick_search over AXES with ``objective(config)`` as the measured throughput."""
    measured = []

    def measure(config):
        measured.append(config)
        return {"config": config, "throughput": objective(config)}

    found = profile.quick_search(AXES, measure, lambda run: run["throughput"])
    return measured, found


def test_the_quick_search_climbs_to_the_best_configuration_measuring_part_of_the_grid():
    # Throughput grows with threads, concurrency and batch size up to 8.
    measured, found = _climb(lambda c: c[0] * 100 + c[2] * 10 + (50 if c[1] == 8 else 0))
    assert len(measured) == len(set(measured)) < 18  # each configuration at most once
    assert max(found.values(), key=lambda run: run["throughput"])["config"] == (2, 8, 32)
    assert measured[0] == (1, 1, 1)  # from the smallest configuration


def test_the_quick_search_stops_when_no_neighbour_gains_enough():
    measured, _ = _climb(lambda c: 1000 + c[0] + c[1] + c[2])  # under 5 % apart everywhere
    assert measured == [(1, 1, 1), (2, 1, 1), (1, 8, 1), (1, 1, 8)]


def test_the_quick_search_never_moves_to_a_configuration_over_the_budget():
    # More clients score 0 (p99 over the budget): it climbs threads and batch size only.
    measured, found = _climb(lambda c: 0.0 if c[2] > 1 else c[0] * 100 + c[1] * 10)
    best = max(found.values(), key=lambda run: run["throughput"])["config"]
    assert best == (2, 32, 1)
    assert not any(config[2] == 32 for config in measured)


def test_a_quick_sweep_of_the_digits_model_measures_part_of_the_grid_and_recommends_from_it(model_path):
    progress = []
    result = profile.sweep(
        model_path,
        SIGNATURE,
        concurrency=(1, 4, 16),
        batch_sizes=(1, 8),
        threads=[1],
        seconds=0.1,
        p99_budget_ms=10_000,
        progress=lambda percent, message: progress.append((percent, message)),
    )
    assert result["search"] == "quick" and result["grid"] == 6
    configs = [(r["threads"], r["max_batch_size"], r["concurrency"]) for r in result["runs"]]
    assert len(configs) == len(set(configs)) and 3 <= len(configs) <= 6
    assert configs[0] == (1, 1, 1)
    assert result["recommended"] == max(result["runs"], key=lambda r: r["throughput"])
    assert progress[-1][1] == f"{len(configs)} configuration(s) measured (quick search of 6)"


def test_a_sweep_refuses_an_unknown_search(model_path):
    with pytest.raises(ValueError, match="quick, full"):
        profile.sweep(model_path, SIGNATURE, search="exhaustive")
