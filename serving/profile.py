"""The serving profile (what Triton's Model Analyzer does): berth-serve's inference core in this
process, driven by closed-loop clients over configurations of concurrency x max_batch_size x
inference threads (a quick hill-climbing search by default, or the whole grid), recording
throughput, p50/p99 and the batch sizes formed, and recommending the measured configuration with
the highest throughput whose p99 stays within a budget.

Pure (no Django): the ``serve_profile`` job runs it on the target's worker.
"""

import asyncio
import itertools
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


SEARCHES = ("quick", "full")
# The quick search moves to a neighbouring configuration only when it serves at least this much
# more (a 5 % gain is about what a noisy 2-core machine can tell apart from one run to the next).
MIN_GAIN = 1.05


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
    search="quick",
    progress=None,
):
    """Measure configurations of threads x max_batch_size x concurrency: all of them (``search``
    "full") or a hill climb through them ("quick", quick_search); returns {"runs": [...] in the
    order measured, "recommended": run or None, "p99_budget_ms", "search", "grid": how many
    configurations the whole grid holds}."""
    if search not in SEARCHES:
        raise ValueError(f"search must be one of {', '.join(SEARCHES)}")
    axes = (
        sorted(set(threads or {1, max(1, min(8, os.cpu_count() or 1))})),
        sorted(set(batch_sizes)),
        sorted(set(concurrency)),
    )
    grid = len(axes[0]) * len(axes[1]) * len(axes[2])
    runs = []

    def measure(config):
        thread_count, batch, clients = config
        run = asyncio.run(_measure(model_path, io_signature, target, thread_count, batch, clients, seconds))
        runs.append(run)
        if progress is not None:
            progress(100 * len(runs) / grid, f"{len(runs)} configuration(s) measured ({search} search of {grid})")
        return run

    def score(run):
        fits = not run["too_few_samples"] and run["p99_ms"] <= p99_budget_ms
        return run["throughput"] if fits else 0.0

    if search == "full":
        for config in itertools.product(*axes):
            measure(config)
    else:
        quick_search(axes, measure, score)
    fitting = [r for r in runs if score(r) > 0]
    recommended = max(fitting, key=lambda r: r["throughput"]) if fitting else None
    return {"runs": runs, "recommended": recommended, "p99_budget_ms": p99_budget_ms, "search": search, "grid": grid}


def quick_search(axes, measure, score):
    """A hill climb over the grid ``axes`` (each a sorted list of values), as Model Analyzer's
    quick search does: start at the smallest configuration, measure its neighbours (one step up
    or down on one axis), move to the best of them while it scores at least MIN_GAIN times the
    current one, stop when none does. ``measure(config)`` -> run, ``score(run)`` -> a number
    (0: out of bounds). Each configuration is measured at most once; returns the measured
    {index tuple: run}."""
    measured = {}

    def run_at(index):
        if index not in measured:
            measured[index] = measure(tuple(axis[i] for axis, i in zip(axes, index)))
        return measured[index]

    current = (0,) * len(axes)
    best = score(run_at(current))
    while True:
        neighbours = [
            current[:axis] + (current[axis] + step,) + current[axis + 1 :]
            for axis in range(len(axes))
            for step in (1, -1)
            if 0 <= current[axis] + step < len(axes[axis])
        ]
        scored = [(score(run_at(index)), index) for index in neighbours]
        top, index = max(scored, key=lambda pair: pair[0], default=(0.0, None))
        if index is None or top < best * MIN_GAIN or top <= 0:
            return measured
        current, best = index, top


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
    parser.add_argument(
        "--search", choices=SEARCHES, default="quick", help="quick: a hill climb (default); full: every configuration"
    )
    args = parser.parse_args(argv)
    with open(args.signature) as f:
        signature = json.load(f)
    result = sweep(args.model, signature, seconds=args.seconds, p99_budget_ms=args.budget_ms, search=args.search)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
