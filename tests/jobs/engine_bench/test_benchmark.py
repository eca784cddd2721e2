"""jobs.engine.benchmark on a real ONNX model: windows, percentiles, stability, cancellation,
the fresh-process probe and the provider check (no Django, no database)."""

import numpy as np
import pytest

from jobs.engine.benchmark import (
    MAX_STORED_SAMPLES,
    BenchmarkCancelled,
    compress_samples,
    decompress_samples,
    run_benchmark,
    thin,
)
from jobs.engine.errors import EngineError

MLP_INPUTS = [{"name": "x", "dtype": "float32", "shape": ["batch", 64]}]

FAST = {"min_runs": 30, "min_seconds": 0.05, "max_seconds": 5.0, "measure_memory": False}
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def single(mlp_onnx):
    seen = []
    run = run_benchmark(mlp_onnx, inputs=MLP_INPUTS, batch_sizes=(4,), progress=lambda p, m="": seen.append(p), **FAST)
    return run, seen


def test_it_orders_the_percentiles(single):
    (m,) = single[0].measurements
    assert 0 < m.p50_ms <= m.p90_ms <= m.p95_ms <= m.p99_ms
    assert m.mean_ms > 0 and m.std_ms >= 0


def test_it_times_at_least_the_minimum_runs_and_seconds(single):
    (m,) = single[0].measurements
    assert m.iterations >= 30
    assert m.mean_ms * m.iterations >= 0.05 * 1000 * 0.999  # at least min_seconds of timed runs
    assert len(m.samples_ms) == min(m.iterations, MAX_STORED_SAMPLES)
    assert m.warmup == 5


def test_it_keeps_quartiles_extremes_and_confidence_intervals(single):
    (m,) = single[0].measurements
    assert m.min_ms <= m.p25_ms <= m.p50_ms <= m.p75_ms <= m.p99_ms <= m.max_ms
    for name in ("p50", "p95", "p99"):
        low, high = m.intervals[name]
        assert low <= getattr(m, f"{name}_ms") <= high
    assert m.intervals["mean"][0] <= m.mean_ms <= m.intervals["mean"][1]


def test_stored_samples_are_thinned_evenly():
    import numpy as np

    samples = np.arange(25_000, dtype=np.float64)
    kept = thin(samples)
    assert len(kept) == MAX_STORED_SAMPLES and kept[0] == 0 and kept[-1] == 24_999
    assert np.all(np.diff(kept) > 0)
    assert len(thin(samples[:50])) == 50


def test_it_reports_throughput_consistent_with_the_mean_latency(single):
    (m,) = single[0].measurements
    assert m.throughput == pytest.approx(4 * 1000 / m.mean_ms, rel=0.01)


def test_it_measures_in_windows_until_three_agree(single):
    (m,) = single[0].measurements
    assert len(m.windows) >= 3
    assert m.stable is True
    means = m.windows[-3:]
    assert max(means) - min(means) <= 2 * 0.10 * np.mean(means)


def test_it_records_the_environment_and_reports_progress(single):
    run, seen = single
    env = run.environment
    assert env["provider"] == "CPUExecutionProvider"
    assert env["logical_cores"] >= 1 and env["cpu_model"] and env["hostname"]
    assert {"onnxruntime", "python", "numpy", "gpu"} <= set(env)
    assert seen == sorted(seen) and seen[-1] == 100


def test_it_measures_every_batch_size_and_thread_count(mlp_onnx):
    run = run_benchmark(mlp_onnx, inputs=MLP_INPUTS, batch_sizes=(1, 8, 32), threads=(1, 2), **FAST)
    pairs = sorted((m.batch_size, m.threads) for m in run.measurements)
    assert pairs == [(1, 1), (1, 2), (8, 1), (8, 2), (32, 1), (32, 2)]
    assert all(m.iterations >= 30 and m.throughput > 0 for m in run.measurements)


def test_it_flags_a_run_that_hits_max_seconds_as_unstable(mlp_onnx):
    # One window takes 0.05 s of inference: 0.06 s leaves no room for three.
    run = run_benchmark(
        mlp_onnx, inputs=MLP_INPUTS, min_runs=30, min_seconds=0.05, max_seconds=0.06, measure_memory=False
    )
    (m,) = run.measurements
    assert m.stable is False
    assert len(m.windows) < 3
    assert len(m.samples_ms) == min(m.iterations, MAX_STORED_SAMPLES) > 0


def test_it_stops_when_asked(mlp_onnx):
    calls = []

    def should_stop():
        calls.append(1)
        return len(calls) > 8

    with pytest.raises(BenchmarkCancelled):
        run_benchmark(
            mlp_onnx, inputs=MLP_INPUTS, should_stop=should_stop, min_seconds=30, max_seconds=60, measure_memory=False
        )
    assert len(calls) == 9


def test_it_measures_memory_and_load_time_in_a_fresh_process(mlp_onnx):
    run = run_benchmark(mlp_onnx, inputs=MLP_INPUTS, batch_sizes=(1, 8), **{**FAST, "measure_memory": True})
    for m in run.measurements:
        assert m.load_time_ms > 0
        # A fresh interpreter with numpy and onnxruntime: tens of MiB, not this torch process's peak
        # (ru_maxrss would carry that across exec).
        assert 10 * MiB < m.peak_memory_bytes < 300 * MiB


def test_an_unavailable_provider_names_the_available_ones(mlp_onnx):
    with pytest.raises(
        EngineError,
        match=r"NoSuchExecutionProvider is not available on this host \(available: .*"
        r"CPUExecutionProvider",
    ):
        run_benchmark(mlp_onnx, inputs=MLP_INPUTS, provider="NoSuchExecutionProvider", **FAST)


def test_a_fixed_batch_axis_refuses_another_batch_size(mlp_onnx):
    with pytest.raises(EngineError, match="fixed first axis of 1, so batch 8"):
        run_benchmark(mlp_onnx, inputs=[{"name": "x", "dtype": "float32", "shape": [1, 64]}], batch_sizes=(8,), **FAST)


def test_samples_survive_compression():
    samples = list(np.random.default_rng(0).gamma(2.0, 0.05, size=5000))
    data = compress_samples(samples)
    assert isinstance(data, bytes) and len(data) < 5000 * 4
    assert decompress_samples(data) == pytest.approx(samples, rel=1e-6)
    assert decompress_samples(compress_samples([])) == []
