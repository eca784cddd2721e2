"""The benchmark engine's own overhead: its p50 against a bare ``session.run`` loop.

Same process, same ONNX model (the digits MLP, trained here in a few seconds), same inputs,
same session options. The two sides alternate for several rounds so that machine noise
falls on both, and the medians of the per-round p50s are compared. Batch 1 is the fastest
case (about 12 µs a call on the development machine), where any harness cost shows most.

    .venv/bin/python bench/harness_overhead.py [--rounds 5] [--seconds 0.5]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard.demo import digits_data, export_onnx, train_digits_mlp  # noqa: E402
from jobs.engine.benchmark import run_benchmark  # noqa: E402
from jobs.engine.validate import example_inputs  # noqa: E402

RATIO_GOAL = 1.03
INPUTS = [{"name": "x", "dtype": "float32", "shape": ["batch", 64]}]
WARMUP = 5


def bare_loop(model_path, feeds, runs):
    """p50 (ms) of ``runs`` timed session.run calls, nothing else in the loop."""
    import onnxruntime as ort

    session = ort.InferenceSession(
        model_path, sess_options=ort.SessionOptions(), providers=[("CPUExecutionProvider", {})]
    )
    for _ in range(WARMUP):
        session.run(None, feeds)
    clock = time.perf_counter_ns
    samples = [0] * runs
    for i in range(runs):
        t0 = clock()
        session.run(None, feeds)
        samples[i] = clock() - t0
    return float(np.percentile(samples, 50)) / 1e6


def ours(model_path, batch, seconds):
    run = run_benchmark(
        model_path,
        inputs=INPUTS,
        batch_sizes=(batch,),
        warmup_runs=WARMUP,
        min_runs=30,
        min_seconds=seconds,
        max_seconds=10 * seconds,
        measure_memory=False,
    )
    (measurement,) = run.measurements
    return measurement.p50_ms, measurement.iterations


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="min_seconds of one engine window")
    args = parser.parse_args()

    module, _ = train_digits_mlp(digits_data(), hidden=128, epochs=5)
    with tempfile.TemporaryDirectory() as tmp:
        model_path = str(export_onnx(module, Path(tmp) / "digits.onnx"))
        all_ok = True
        for batch in (1, 32):
            feeds = example_inputs(INPUTS, batch=batch, other_dynamic=16, seed=0)
            ours_p50, base_p50 = [], []
            for _ in range(args.rounds):
                p50, iterations = ours(model_path, batch, args.seconds)
                ours_p50.append(p50)
                base_p50.append(bare_loop(model_path, feeds, iterations))
            a, b = statistics.median(ours_p50), statistics.median(base_p50)
            ratio = a / b
            all_ok &= ratio <= RATIO_GOAL
            print(
                f"harness_overhead.batch{batch}: ours={a:.4f} baseline={b:.4f} ratio={ratio:.3f} "
                f"(p50 ms, median of {args.rounds} rounds; ours per round "
                f"{', '.join(f'{x:.4f}' for x in ours_p50)}; baseline {', '.join(f'{x:.4f}' for x in base_p50)})"
            )
        print(f"goal ratio <= {RATIO_GOAL}: {'met' if all_ok else 'NOT met'}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
