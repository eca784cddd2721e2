"""The latency sketch merged from many windows against numpy's exact quantiles.

1,000,000 lognormal latencies (median e ms, fixed seed) are split into 100 chunks, as if from
100 telemetry windows or replicas; each chunk goes into its own LogSketch (add_many). The
sketches are merged two ways: ``LogSketch.merge`` on the objects, and ``sketch_quantiles`` on
their wire format (``to_dict()``, as stored per window), whose time is compared with parsing
each dict (``from_dict``) and merging. Each quantile is compared with the exact value of the
same rank, floor(q * (n - 1)), in the sorted data.

    .venv/bin/python bench/sketch.py
"""

import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from berth.core.stats import LogSketch, sketch_quantiles  # noqa: E402

SAMPLES = 1_000_000
CHUNKS = 100
SEED = 20240601
QS = (0.5, 0.95, 0.99)
P99_ERROR_GOAL = 0.01
REPEATS = 5


def best_time(function):
    """(result, fastest of REPEATS runs in ms)."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - start) * 1000)
    return result, min(times)


def merge_objects(sketches):
    merged = LogSketch()
    for sketch in sketches:
        merged.merge(sketch)
    return merged


def merge_parsed(dicts):
    merged = LogSketch()
    for data in dicts:
        merged.merge(LogSketch.from_dict(data))
    return [merged.quantile(q) for q in QS]


def main():
    latencies = np.random.default_rng(SEED).lognormal(mean=1.0, sigma=0.6, size=SAMPLES)
    start = time.perf_counter()
    sketches = []
    for chunk in np.array_split(latencies, CHUNKS):
        sketch = LogSketch()
        sketch.add_many(chunk)
        sketches.append(sketch)
    build_ms = (time.perf_counter() - start) * 1000
    dicts = [sketch.to_dict() for sketch in sketches]

    merged, merge_ms = best_time(lambda: merge_objects(sketches))
    from_wire, wire_ms = best_time(lambda: sketch_quantiles(dicts, QS))
    parsed, parsed_ms = best_time(lambda: merge_parsed(dicts))
    assert from_wire == parsed == [merged.quantile(q) for q in QS], "the two merges disagree"

    ordered = np.sort(latencies)
    errors = {}
    for q, wire in zip(QS, from_wire):
        name = f"p{round(q * 100)}"
        ours, exact = merged.quantile(q), float(ordered[math.floor(q * (SAMPLES - 1))])
        errors[name] = abs(ours - exact) / exact
        print(f"sketch.{name}: ours={ours:.4f} ms baseline={exact:.4f} ms ratio={ours / exact:.4f}")
        print(
            f"sketch.{name}_relative_error: ours={errors[name] * 100:.3f} % limit={merged.alpha * 100:.1f} %"
            f"{'' if wire == ours else ' (sketch_quantiles differs!)'}"
        )
    print(
        f"sketch.build: {CHUNKS} sketches of {SAMPLES // CHUNKS} samples in {build_ms:.1f} ms, "
        f"{len(merged.buckets)} buckets merged"
    )
    print(f"sketch.merge_objects: ours={merge_ms:.2f} ms ({CHUNKS} x LogSketch.merge, no quantiles)")
    print(
        f"sketch.merge_wire: ours={wire_ms:.2f} ms baseline={parsed_ms:.2f} ms ratio={wire_ms / parsed_ms:.2f} "
        f"(sketch_quantiles vs from_dict + merge + quantile, {CHUNKS} dicts)"
    )
    met = errors["p99"] <= P99_ERROR_GOAL
    print(f"goal p99 relative error <= {P99_ERROR_GOAL * 100:.0f} %: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
