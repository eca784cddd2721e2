"""The serving profile (what Triton's Model Analyzer does): berth-serve's inference core in this
process, driven by closed-loop clients over a sweep of concurrency x max_batch_size x inference
threads, recording throughput, p50/p99 and the batch sizes formed, and recommending the
configuration with the highest throughput whose p99 stays within a budget.

Pure (no Django): the ``serve_profile`` job runs it on the target's worker.
"""

import asyncio
import json
import os
import time

import numpy as np

from .core import InferenceCore
from .routing import RoutingTable, VersionRoute, load_session
from .spec import parse_spec

DELAY_US = 1000  # max_queue_delay_us of every batched configuration
# A configuration is measured for at least ``seconds`` and MIN_REQUESTS completed requests (the
# percentiles need that many), for at most MAX_STRETCH x ``seconds`` + 1 s; one that ends with
# fewer is marked too_few_samples and never recommended.
MIN_REQUESTS = 100
MAX_STRETCH = 5


def sweep(
    model_path,
    io_signature,
    *,
    target=None,
    concurrency=(1, 8, 32),
    batch_sizes=(1, 8, 32),
    threads=None,
    seconds=1.0,
    p99_budget_ms=50.0,
    progress=None,
):
    """Measure every configuration; returns {"runs": [...], "recommended": run or None, "budget_ms"}."""
    threads = threads or sorted({1, max(1, min(8, os.cpu_count() or 1))})
    configs = [(t, b, c) for t in threads for b in batch_sizes for c in concurrency]
    runs = []
    for index, (thread_count, batch, clients) in enumerate(configs):
        runs.append(asyncio.run(_measure(model_path, io_signature, target, thread_count, batch, clients, seconds)))
        if progress is not None:
            progress(100 * (index + 1) / len(configs), f"{index + 1} of {len(configs)} configurations")
    fitting = [r for r in runs if not r["too_few_samples"] and r["p99_ms"] <= p99_budget_ms]
    recommended = max(fitting, key=lambda r: r["throughput"]) if fitting else None
    return {"runs": runs, "recommended": recommended, "p99_budget_ms": p99_budget_ms}


def _spec(model_path, io_signature, target, batch):
    return parse_spec(
        {
            "endpoint": "profile",
            "model": "m",
            "generation": 1,
            "target": target or {"slug": "cpu", "execution_provider": "CPUExecutionProvider", "provider_options": {}},
            "deployments": [
                {
                    "version": "1",
                    "weight": 100,
                    "sha256": "0" * 64,
                    "format": "onnx",
                    "artifact_url": str(model_path),
                    "io_signature": io_signature,
                    "features": [],
                }
            ],
            "telemetry": None,
            "batching": {"max_batch_size": batch, "max_queue_delay_us": DELAY_US if batch > 1 else 0},
        }
    )


def _feeds(signature):
    feeds = {}
    for spec in signature.inputs:
        shape = [1] + [1 if d is None else d for d in (spec.shape or [1])[1:]]
        feeds[spec.name] = (np.random.default_rng(0).random(shape) * 2 - 1).astype(spec.dtype)
    return feeds


async def _measure(model_path, io_signature, target, thread_count, batch, clients, seconds):
    spec = _spec(model_path, io_signature, target, batch)
    (deployment,) = spec.deployments
    loaded = load_session(
        model_path, sha256=deployment.sha256, label="profile", signature=deployment.signature, target=spec.target
    )
    core = InferenceCore(thread_count)
    core.start(asyncio.get_running_loop())
    core.install(RoutingTable(spec, {"1": VersionRoute(spec.model, deployment, loaded, None)}, {}))
    feeds = _feeds(deployment.signature)
    window = _Window(time.perf_counter() + min(0.5, seconds / 2), seconds)

    async def client():
        while window.open():
            started = time.perf_counter()
            await core.infer("m", feeds)
            window.completed(started, time.perf_counter())

    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        await asyncio.get_running_loop().run_in_executor(None, core.stop)
    formed = {str(rows): runs for rows, runs in sorted(core.batch_sizes.items()) if runs}
    times = np.array(window.latencies) * 1000
    enough = len(times) >= MIN_REQUESTS
    return {
        "threads": thread_count,
        "max_batch_size": batch,
        "max_queue_delay_us": DELAY_US if batch > 1 else 0,
        "concurrency": clients,
        "requests": len(times),
        "seconds": window.seconds,
        "throughput": len(times) / window.seconds if len(times) else None,
        "p50_ms": float(np.percentile(times, 50)) if len(times) else None,
        "p99_ms": float(np.percentile(times, 99)) if len(times) else None,
        "too_few_samples": not enough,
        "batch_sizes": formed,
    }


class _Window:
    """The measured window of one configuration (closed-loop clients on one event loop).

    It opens when the warm-up ends and counts every request that *completes* inside it, whenever
    it started: counting only requests that start after the warm-up leaves nothing measured when
    one stall (a loaded machine, a garbage collection, a slow model) holds every client's request
    across the whole window. It closes once it has lasted ``seconds`` and holds MIN_REQUESTS
    completions, or at the latest after MAX_STRETCH x ``seconds`` (+ 1 s), then marked as having
    too few samples. Throughput is the completions over the window's actual length."""

    def __init__(self, opens, seconds):
        self.opens = opens
        self.least = opens + seconds
        self.latest = opens + seconds * MAX_STRETCH + 1.0
        self.closed = None  # when it closed (perf_counter)
        self.latencies = []  # seconds, of the requests completed inside it

    def open(self):
        if self.closed is None and time.perf_counter() >= self.latest:
            self.closed = self.latest
        return self.closed is None

    def completed(self, started, finished):
        if self.closed is not None or finished < self.opens:
            return
        if finished >= self.latest:
            self.closed = self.latest
            return
        self.latencies.append(finished - started)
        if finished >= self.least and len(self.latencies) >= MIN_REQUESTS:
            self.closed = finished

    @property
    def seconds(self):
        return self.closed - self.opens


def main(argv=None):
    """python -m serving.profile MODEL.onnx IO_SIGNATURE.json: print the sweep as JSON."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("signature", help="a JSON file with the version's io_signature")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--budget-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    with open(args.signature) as f:
        signature = json.load(f)
    print(json.dumps(sweep(args.model, signature, seconds=args.seconds, p99_budget_ms=args.budget_ms), indent=2))


if __name__ == "__main__":
    main()
