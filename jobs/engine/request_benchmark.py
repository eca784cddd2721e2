"""End-to-end request latency, timed with the benchmark's rules: warm-up excluded, then timed
requests in windows until the last three agree or ``max_seconds`` pass, percentiles from every
timed request. Plain Python: no Django, no serving import; the caller hands in how to send a
request (jobs.kinds.benchmark starts a local berth-serve and a client of serving.request_benchmark).
"""

from .benchmark import (
    BenchmarkCancelled,
    BenchmarkRun,
    _check_stop,
    _environment,
    _feeds,
    _measure,
    _never,
    _summarise,
)
from .errors import EngineError, first_line
from .progress import no_progress


def run_request_benchmark(
    prepare,
    *,
    inputs,
    provider,
    provider_options=None,
    batch_sizes=(1,),
    threads=None,
    warmup_runs=5,
    min_runs=30,
    min_seconds=1.0,
    max_seconds=60.0,
    stability=0.10,
    seed=0,
    progress=no_progress,
    should_stop=_never,
):
    """Time requests at each batch size: ``prepare(feeds)`` (feeds generated as run_benchmark
    generates them, {input name: array} with ``batch`` rows) returns a call that sends one request
    and returns once its whole answer is in. Between the two clock reads sits that call only.
    ``threads`` is the server's intra-op thread count (recorded, not set here). Returns a
    BenchmarkRun whose measurements' latencies (ms) are request round trips and whose throughput
    is items/s of one client. EngineError when a request fails; BenchmarkCancelled when
    ``should_stop()`` turns true."""
    import onnxruntime as ort

    if min_runs < 1 or min_seconds < 0 or max_seconds <= 0:
        raise EngineError("min_runs must be ≥ 1, min_seconds ≥ 0 and max_seconds > 0.")
    warmup = max(1, int(warmup_runs))  # the first request is never timed: it opens lazily
    measurements = []
    for index, batch in enumerate(batch_sizes):
        _check_stop(should_stop)
        label = f"requests of batch {batch}"
        progress(100 * index // len(batch_sizes), f"Measuring {label}")
        feeds = _feeds(inputs, batch, seed)
        call = prepare(feeds)
        try:
            measured = _measure(
                lambda _names, _feeds, call=call: call(),
                feeds,
                label=label,
                warmup_runs=warmup,
                min_runs=min_runs,
                window_runs=min_runs,
                min_seconds=min_seconds,
                max_seconds=max_seconds,
                stability=stability,
                should_stop=should_stop,
            )
        except (EngineError, BenchmarkCancelled):
            raise
        except Exception as exc:  # the client's errors (HTTP, gRPC) past the warm-up
            raise EngineError(f"A request failed ({label}): {first_line(exc)}") from exc
        measurements.append(
            _summarise(
                measured,
                batch=batch,
                threads=threads,
                warmup=warmup,
                peak_memory_bytes=None,
                load_time_ms=None,
            )
        )
    progress(100, "Request benchmark finished")
    environment = _environment(ort, provider, provider, provider_options, list(ort.get_available_providers()))
    return BenchmarkRun(measurements, environment)
