"""Load an ONNX model in this fresh process, run it a few times and print one JSON line:
``{"peak_rss_bytes", "baseline_rss_bytes", "load_time_ms", "provider", "device_memory_bytes"}``.

Started by jobs.engine.benchmark, once per batch size:

    python -m jobs.engine.benchmark_probe MODEL --provider CPUExecutionProvider --batch 8 \\
        --inputs '[{"name": "x", "dtype": "float32", "shape": ["batch", 64]}]'

Peak RSS is the whole process (interpreter, numpy and onnxruntime included, about what a
serving process needs at least); ``baseline_rss_bytes`` is the peak before the model was
loaded, so the model's own share is the difference. With ``--device-memory`` (GPU providers) the
process's GPU memory is read from NVML after the runs (onnxruntime's arena keeps what it took, so this is
its peak); ``device_memory_bytes`` is null where NVML cannot tell.
"""

import argparse
import json
import os
import resource
import sys
import time

import onnxruntime as ort

from .gpu import Nvml
from .validate import example_inputs

RUNS = 3


def _peak_rss_bytes():
    """VmHWM on Linux: ru_maxrss survives execve there, so a child of a big worker would report
    the worker's peak (a 500 MB torch process made a 60 MB probe read 510 MB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--provider", default="CPUExecutionProvider")
    parser.add_argument("--provider-options", default="{}", help="JSON object")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--inputs", required=True, help="JSON list of signature inputs (name, dtype, shape)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device-memory", action="store_true", help="read this process's GPU memory (NVML)")
    args = parser.parse_args(argv)

    feeds = example_inputs(json.loads(args.inputs), batch=args.batch, other_dynamic=16, seed=args.seed)
    options = ort.SessionOptions()
    if args.threads is not None:
        options.intra_op_num_threads = args.threads
    baseline = _peak_rss_bytes()
    started = time.perf_counter_ns()
    session = ort.InferenceSession(
        args.model, sess_options=options, providers=[(args.provider, json.loads(args.provider_options))]
    )
    load_time_ms = (time.perf_counter_ns() - started) / 1e6
    for _ in range(RUNS):
        session.run(None, feeds)
    device_memory = None
    if args.device_memory:
        device_id = int(json.loads(args.provider_options).get("device_id", 0))
        device_memory = Nvml(device_id).process_memory(os.getpid())
    print(
        json.dumps(
            {
                "device_memory_bytes": device_memory,
                "peak_rss_bytes": _peak_rss_bytes(),
                "baseline_rss_bytes": baseline,
                "load_time_ms": load_time_ms,
                "provider": session.get_providers()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
