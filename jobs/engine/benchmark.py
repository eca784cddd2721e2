"""Latency and throughput of an ONNX model with onnxruntime, measured the way Triton's
perf_analyzer does it. Plain Python: no Django.

For each batch size × thread setting: warm-up runs (excluded), then timed runs in windows
(a window holds at least ``window_runs`` runs and ``min_seconds`` of timed inference) until
the means of the last three windows agree within ``stability`` (stable) or ``max_seconds``
of measuring have passed (flagged unstable). Percentiles come from every timed run. Only
``session.run`` sits between the two clock reads; everything else happens between runs.

Peak memory and cold load time come from a fresh process per batch size
(``python -m jobs.engine.benchmark_probe``), since this process's memory already holds
other sessions, numpy and whatever ran before.
"""

import json
import os
import platform
import socket
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import gpu, hardware
from .errors import EngineError, first_line
from .progress import no_progress
from .validate import example_inputs

PROBE_TIMEOUT_S = 600
# should_stop may query a database: poll it at most this often while timing.
STOP_POLL_NS = 50_000_000
OTHER_DYNAMIC = 16


class BenchmarkCancelled(Exception):
    """should_stop() said stop; no result is returned."""


@dataclass
class Measurement:
    """One batch size × thread setting. Latencies in ms, throughput in items/s, memory in bytes."""

    batch_size: int
    threads: int | None  # None: onnxruntime's default intra-op thread count
    iterations: int
    warmup: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    throughput: float
    stable: bool
    windows: list = field(default_factory=list)  # mean latency (ms) of each measuring window
    samples_ms: list = field(default_factory=list)  # timed runs in order (float32), thinned to MAX_STORED_SAMPLES
    p25_ms: float | None = None
    p75_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    # 95 % confidence intervals, {"p50": [low, high], ..., "mean": [low, high]} in ms: distribution-free
    # (order statistics) for percentiles, normal for the mean.
    intervals: dict = field(default_factory=dict)
    peak_memory_bytes: int | None = None  # peak RSS of a fresh process that loaded and ran the model
    load_time_ms: float | None = None  # session creation in that fresh process
    device_memory_bytes: int | None = None  # GPU memory that fresh process held (NVML), GPU providers only
    gpu_utilization: dict | None = None  # {"mean_percent", "max_percent", "samples"} during the timed runs
    timing_mode: str = "host"  # host, device or device+graph (jobs.engine.gpu.TimingMode.label)


@dataclass
class BenchmarkRun:
    measurements: list
    environment: dict


def _never():
    return False


def run_benchmark(
    model_path,
    *,
    inputs,
    provider="CPUExecutionProvider",
    provider_options=None,
    batch_sizes=(1,),
    threads=(None,),
    warmup_runs=5,
    min_runs=30,
    min_seconds=1.0,
    window_runs=None,
    max_seconds=60.0,
    stability=0.10,
    seed=0,
    measure_memory=True,
    io="host",
    cuda_graph=False,
    progress=no_progress,
    should_stop=_never,
):
    """Benchmark the ONNX model at ``model_path`` on ``provider``.

    ``inputs`` is the signature's input list (name, dtype, shape; a non-int dim is dynamic):
    axis 0 takes the batch size, other dynamic axes 16; floats are random normal, integers ones.
    ``threads``: None for onnxruntime's default, else ``intra_op_num_threads``.
    A window needs ``window_runs`` runs (default ``min_runs``) and ``min_seconds`` of timed
    inference; measuring stops when the last three window means are within ``stability``
    (a fraction) of their average and at least ``min_runs`` runs are in, or after
    ``max_seconds`` (then ``stable`` is False and fewer than ``min_runs`` runs are possible).
    Measurements come thread setting by thread setting (one session each), batch sizes inside.
    ``io``: "host" copies inputs in and outputs out in every timed run; "device" (GPU providers) binds them
    on the device once, so the timed runs are the GPU's work alone; ``cuda_graph`` replays it as a CUDA
    graph (CUDAExecutionProvider, io="device"). On a GPU provider the fresh-process probe also records
    device memory (NVML), and GPU utilization is sampled during the timed runs.

    Raises EngineError when the provider is missing or the model cannot run, and
    BenchmarkCancelled when ``should_stop()`` turns true (polled between runs).
    """
    import onnxruntime as ort

    if min_runs < 1 or min_seconds < 0 or max_seconds <= 0 or not 0 < stability < 1:
        raise EngineError("min_runs must be ≥ 1, min_seconds ≥ 0, max_seconds > 0 and stability between 0 and 1.")
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise EngineError("Batch sizes must be positive integers.")
    if not threads:
        raise EngineError("Give at least one thread setting (None for onnxruntime's default).")
    available = list(ort.get_available_providers())
    if provider not in available:
        raise EngineError(f"{provider} is not available on this host (available: {', '.join(available)}).")
    mode = gpu.timing_mode(provider, io, cuda_graph)
    provider_options = gpu.session_provider_options(provider, provider_options, mode)
    device = gpu.DEVICE_OF_PROVIDER.get(provider)
    device_id = int((provider_options or {}).get("device_id", 0))
    nvml = gpu.Nvml(device_id) if device else None
    model_path = str(Path(model_path).resolve())
    feeds = {batch: _feeds(inputs, batch, seed) for batch in batch_sizes}
    window_runs = window_runs or min_runs
    warmup = max(1, int(warmup_runs))  # a first run is never timed: it allocates lazily
    steps = len(batch_sizes) * (len(threads) + (1 if measure_memory else 0))
    done = 0

    probes = {}
    if measure_memory:
        for batch in batch_sizes:
            _check_stop(should_stop)
            progress(100 * done // steps, f"Batch {batch}: memory and load time in a fresh process")
            probes[batch] = _probe(
                model_path,
                inputs=inputs,
                provider=provider,
                provider_options=provider_options,
                batch=batch,
                threads=threads[0],
                seed=seed,
                device_memory=bool(device),
                should_stop=should_stop,
            )
            done += 1

    measurements = []
    used_provider = None
    for thread_count in threads:
        _check_stop(should_stop)
        session = _session(ort, model_path, provider, provider_options, thread_count)
        used_provider = session.get_providers()[0]
        if used_provider != provider:
            raise EngineError(
                f"onnxruntime fell back from {provider} to {used_provider} for this model; "
                "check the provider's libraries and options on this host."
            )
        for batch in batch_sizes:
            label = f"batch {batch}, threads {thread_count or 'default'}"
            progress(100 * done // steps, f"Measuring {label}")
            run = session.run
            if mode.io == "device":
                run = _bound_run(session, feeds[batch], device=device, device_id=device_id, label=label)
            with gpu.UtilizationSampler(nvml) as utilization:
                measured = _measure(
                    run,
                    feeds[batch],
                    label=label,
                    warmup_runs=warmup,
                    min_runs=min_runs,
                    window_runs=window_runs,
                    min_seconds=min_seconds,
                    max_seconds=max_seconds,
                    stability=stability,
                    should_stop=should_stop,
                )
            probe = probes.get(batch, {})
            measurements.append(
                _summarise(
                    measured,
                    batch=batch,
                    threads=thread_count,
                    warmup=warmup,
                    peak_memory_bytes=probe.get("peak_rss_bytes"),
                    load_time_ms=probe.get("load_time_ms"),
                    device_memory_bytes=probe.get("device_memory_bytes"),
                    gpu_utilization=utilization.summary,
                    timing_mode=mode.label,
                )
            )
            done += 1
        del session
    progress(100, "Benchmark finished")
    environment = _environment(ort, provider, used_provider, provider_options, available)
    environment.update(
        timing_mode=mode.label,
        io=mode.io,
        cuda_graph=mode.cuda_graph,
        nvml=None if nvml is None else (nvml.reason or "available"),
    )
    return BenchmarkRun(measurements, environment)


def _bound_run(session, feeds, *, device, device_id, label):
    """session.run's signature over IO binding: inputs copied to ``device`` once, outputs left there."""
    try:
        bound = gpu.device_runner(session, feeds, device=device, device_id=device_id)
    except Exception as exc:  # onnxruntime's own types
        raise EngineError(f"Cannot bind inputs on {device}:{device_id} ({label}): {first_line(exc)}") from exc

    def run(_output_names, _feeds):
        bound()

    return run


# --- timing ----------------------------------------------------------------------------------


@dataclass
class _Measured:
    samples_ns: list
    windows: list  # (runs, timed ns) per window
    stable: bool


def _measure(
    run, feeds, *, label, warmup_runs, min_runs, window_runs, min_seconds, max_seconds, stability, should_stop
):
    """Times ``run(None, feeds)`` (session.run, or its IO-bound stand-in) as the module docstring says."""
    clock = time.perf_counter_ns
    try:
        for _ in range(warmup_runs):
            run(None, feeds)
            _check_stop(should_stop)
    except BenchmarkCancelled:
        raise
    except Exception as exc:
        shapes = {name: list(value.shape) for name, value in feeds.items()}
        raise EngineError(
            f"Inference failed ({label}) on generated inputs of shapes {shapes}: {first_line(exc)}"
        ) from exc

    min_ns = int(min_seconds * 1e9)
    samples = []
    windows = []
    started = clock()
    deadline = started + int(max_seconds * 1e9)
    next_poll = min(started + STOP_POLL_NS, deadline)
    stable = False
    while True:
        window = []
        append = window.append
        timed = 0
        runs_left = window_runs
        # The hot loop: nothing but session.run between the two clock reads, and as little as
        # possible between runs (an append, two adds, two compares).
        while True:
            t0 = clock()
            run(None, feeds)
            t1 = clock()
            elapsed = t1 - t0
            append(elapsed)
            timed += elapsed
            runs_left -= 1
            if runs_left <= 0 and timed >= min_ns:
                break
            if t1 >= next_poll:
                _check_stop(should_stop)
                next_poll = min(t1 + STOP_POLL_NS, deadline)
                if t1 >= deadline:
                    break
        samples.extend(window)
        windows.append((len(window), timed))
        _check_stop(should_stop)
        if len(windows) >= 3 and len(samples) >= min_runs and _agree(windows[-3:], stability):
            stable = True
            break
        if clock() >= deadline:
            break
    return _Measured(samples, windows, stable)


def _agree(windows, stability):
    means = [timed / runs for runs, timed in windows]
    average = sum(means) / len(means)
    return max(abs(m - average) for m in means) <= stability * average


def _summarise(
    measured,
    *,
    batch,
    threads,
    warmup,
    peak_memory_bytes,
    load_time_ms,
    device_memory_bytes=None,
    gpu_utilization=None,
    timing_mode="host",
):
    ms = np.asarray(measured.samples_ns, dtype=np.float64) / 1e6
    stats = latency_statistics(ms)
    total_s = float(ms.sum()) / 1e3
    return Measurement(
        batch_size=batch,
        threads=threads,
        iterations=len(ms),
        warmup=warmup,
        throughput=batch * len(ms) / total_s if total_s > 0 else 0.0,
        stable=measured.stable,
        windows=[timed / runs / 1e6 for runs, timed in measured.windows],
        samples_ms=thin(ms).astype(np.float32).tolist(),
        peak_memory_bytes=peak_memory_bytes,
        load_time_ms=load_time_ms,
        device_memory_bytes=device_memory_bytes,
        gpu_utilization=gpu_utilization,
        timing_mode=timing_mode,
        **stats,
    )


PERCENTILES = {"p25": 25, "p50": 50, "p75": 75, "p90": 90, "p95": 95, "p99": 99}
MAX_STORED_SAMPLES = 10_000
Z95 = 1.959964


def latency_statistics(ms):
    """Percentiles, mean, std, extremes and 95 % confidence intervals of latencies in ms.

    A percentile's interval comes from order statistics (no assumption about the distribution:
    the ranks n·q ± 1.96·√(n·q·(1−q)) of the sorted samples), the mean's from the normal
    approximation. They say how precisely this run pinned a figure down, not how much the
    next run on a noisy machine may differ (the windows say that)."""
    ordered = np.sort(np.asarray(ms, dtype=np.float64))
    n = len(ordered)
    values = {f"{name}_ms": float(np.percentile(ordered, q)) for name, q in PERCENTILES.items()}
    mean = float(ordered.mean())
    std = float(ordered.std(ddof=1)) if n > 1 else 0.0
    intervals = {}
    for name in ("p50", "p90", "p95", "p99"):
        q = PERCENTILES[name] / 100
        half = Z95 * (n * q * (1 - q)) ** 0.5
        low, high = max(0, int(np.floor(n * q - half)) - 1), min(n - 1, int(np.ceil(n * q + half)))
        intervals[name] = [float(ordered[low]), float(ordered[high])]
    margin = Z95 * std / n**0.5 if n > 1 else 0.0
    intervals["mean"] = [mean - margin, mean + margin]
    return {
        **values,
        "mean_ms": mean,
        "std_ms": std,
        "min_ms": float(ordered[0]),
        "max_ms": float(ordered[-1]),
        "intervals": intervals,
    }


def thin(samples, limit=MAX_STORED_SAMPLES):
    """At most ``limit`` samples, evenly spaced in time order (enough for distribution charts)."""
    if len(samples) <= limit:
        return samples
    return samples[np.linspace(0, len(samples) - 1, limit).astype(int)]


def _check_stop(should_stop):
    if should_stop():
        raise BenchmarkCancelled("The benchmark was cancelled.")


# --- sessions and inputs ---------------------------------------------------------------------


def _session(ort, model_path, provider, provider_options, thread_count):
    options = ort.SessionOptions()
    if thread_count is not None:
        options.intra_op_num_threads = int(thread_count)
    try:
        return ort.InferenceSession(
            model_path, sess_options=options, providers=[(provider, dict(provider_options or {}))]
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise EngineError(f"onnxruntime cannot load the model with {provider}: {first_line(exc)}") from exc


def _feeds(inputs, batch, seed):
    """Generated inputs for one batch size; refuses a fixed first axis that is not ``batch``."""
    for spec in inputs:
        shape = spec.get("shape")
        if shape is None:
            raise EngineError(f"Input {spec['name']!r} has no known shape; give its shape in the signature.")
        if shape and isinstance(shape[0], int) and shape[0] != batch:
            raise EngineError(
                f"Input {spec['name']!r} has a fixed first axis of {shape[0]}, so batch {batch} "
                "cannot be measured. Export the model with a dynamic batch axis."
            )
    return example_inputs(inputs, batch=batch, other_dynamic=OTHER_DYNAMIC, seed=seed)


# --- fresh-process probe ---------------------------------------------------------------------


def _probe(model_path, *, inputs, provider, provider_options, batch, threads, seed, should_stop, device_memory=False):
    """Peak RSS (bytes), load time (ms) and, with ``device_memory``, the GPU memory (bytes) of a fresh
    process that loads the model and runs it."""
    command = [
        sys.executable,
        "-m",
        "jobs.engine.benchmark_probe",
        model_path,
        "--provider",
        provider,
        "--provider-options",
        json.dumps(provider_options or {}),
        "--batch",
        str(batch),
        "--inputs",
        json.dumps(inputs),
        "--seed",
        str(seed),
    ]
    if threads is not None:
        command += ["--threads", str(threads)]
    if device_memory:
        command += ["--device-memory"]
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    try:
        while True:
            try:
                stdout, stderr = process.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise EngineError(f"The memory probe did not finish within {PROBE_TIMEOUT_S} s.") from None
                _check_stop(should_stop)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise EngineError(f"The memory probe for batch {batch} failed: {_last_line(stderr)}")
    try:
        return json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise EngineError(f"The memory probe printed no result: {_last_line(stderr)}") from exc


# --- environment -----------------------------------------------------------------------------


def _environment(ort, provider, used_provider, provider_options, available):
    gpus = hardware.gpus()
    return {
        "onnxruntime": ort.__version__,
        "provider": used_provider,
        "requested_provider": provider,
        "provider_options": dict(provider_options or {}),
        "available_providers": available,
        "cpu_model": hardware.cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": hardware.memory_bytes(),
        "gpu": gpus[0]["name"] if gpus else None,
        "gpu_count": len(gpus),
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


# --- storing samples -------------------------------------------------------------------------


def compress_samples(samples_ms):
    """Latencies (ms) as zlib-compressed little-endian float32, for a database column."""
    return zlib.compress(np.asarray(samples_ms, dtype="<f4").tobytes(), 6)


def decompress_samples(data):
    """The inverse of compress_samples: a list of floats (ms, float32 precision)."""
    return np.frombuffer(zlib.decompress(data), dtype="<f4").astype(np.float64).tolist()


def _last_line(text):
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no output"
