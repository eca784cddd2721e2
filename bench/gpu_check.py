"""Prove the GPU path on a GPU host and print the ratios a GPU team decides by, side by side in one run.

    .venv/bin/python bench/gpu_check.py                 # on a GPU host (CUDAExecutionProvider)
    .venv/bin/python bench/gpu_check.py --provider CPUExecutionProvider --size 64   # a dry run here

1. Providers: which ones onnxruntime lists, and which a tiny session proves usable (with the reason when not).
2. A ResNet-style convolutional network (random weights: speed and memory do not depend on them) at
   3×size×size, exported to ONNX, and its fp16 variant made by Berth's own compression engine.
3. Berth's benchmark engine on each variant at batch 1 and 32, io=host (inputs copied every run), and on a
   GPU also io=device (IO binding) and device+graph (CUDA graph): p50, throughput, device memory.
4. berth-serve on the same provider: request p50 over binary HTTP (tritonclient.http) against session.run p50.

Ratios printed: fp16/fp32 throughput at batch 32, device-io/host-io p50, GPU memory per variant,
berth-serve request / session.run p50. Nothing here asserts a goal: the figures go in the note.
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

from serving_dataplane import berth_serve, export_classifier, write_bundle  # noqa: E402  (bench/ is on sys.path: same folder)

from jobs.engine import gpu  # noqa: E402
from jobs.engine.benchmark import run_benchmark  # noqa: E402
from jobs.engine.quantize import convert_fp16  # noqa: E402

MEASURE = {"min_runs": 30, "min_seconds": 0.5, "max_seconds": 20.0, "warmup_runs": 10}


def build_model(path, size):
    """A ResNet-18-shaped network (4 stages of two residual blocks), exported with a dynamic batch axis."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.skip = (
                nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                if stride != 1 or cin != cout
                else nn.Identity()
            )

        def forward(self, x):
            y = torch.relu(self.bn1(self.conv1(x)))
            return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    torch.manual_seed(0)
    net = nn.Sequential(*layers).eval()
    return export_classifier(net, torch.zeros(1, 3, size, size), path)


def benchmark(path, size, provider, batch, io="host", cuda_graph=False):
    inputs = [{"name": "x", "dtype": "float32", "shape": ["batch", 3, size, size]}]
    run = run_benchmark(
        path,
        inputs=inputs,
        provider=provider,
        batch_sizes=(batch,),
        io=io,
        cuda_graph=cuda_graph,
        measure_memory=True,
        **MEASURE,
    )
    return run.measurements[0]


def serve_overhead(model_path, size, provider, tmp, requests=200):
    """berth-serve's request p50 (binary HTTP, batch 1) and a bare session.run p50 on the same provider."""
    import onnxruntime as ort
    import tritonclient.http as triton

    bundle = write_bundle(tmp / "bundle", model_path, (3, size, size), 1000, provider=provider)
    server, port, _ = berth_serve(bundle, tmp / "berth-serve.log")
    try:
        x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = triton.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        wanted = [triton.InferRequestedOutput("logits", binary_data=True)]
        times = []
        for number in range(requests + 10):
            started = time.perf_counter()
            client.infer("m", [tensor], outputs=wanted)
            if number >= 10:
                times.append((time.perf_counter() - started) * 1000)
        session = ort.InferenceSession(str(model_path), providers=[provider])
        for _ in range(10):
            session.run(None, {"x": x})
        bare = []
        for _ in range(requests):
            started = time.perf_counter()
            session.run(None, {"x": x})
            bare.append((time.perf_counter() - started) * 1000)
        return statistics.median(times), statistics.median(bare)
    finally:
        server.stop()


def mib(value):
    return "—" if value is None else f"{value / 2**20:,.0f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=None, help="default: CUDAExecutionProvider when usable, else CPU")
    parser.add_argument("--size", type=int, default=224, help="image side (224 on a GPU; 64 for a quick CPU dry run)")
    parser.add_argument("--large-batch", type=int, default=32)
    args = parser.parse_args()

    verdicts = gpu.prove_providers()
    print("Providers (a tiny session on each):")
    for name, reason in verdicts.items():
        print(f"  {name}: {'usable' if reason is None else 'UNUSABLE: ' + reason}")
    provider = args.provider or (
        "CUDAExecutionProvider" if verdicts.get("CUDAExecutionProvider", "x") is None else "CPUExecutionProvider"
    )
    if verdicts.get(provider, "not listed") is not None:
        sys.exit(f"{provider} is not usable here: {verdicts.get(provider, 'onnxruntime does not list it')}")
    on_gpu = provider in gpu.DEVICE_OF_PROVIDER
    nvml = gpu.Nvml()
    print(f"Provider under test: {provider}; NVML: {'available' if nvml.available else nvml.reason}")

    with tempfile.TemporaryDirectory(prefix="berth-gpu-check-") as tmp:
        tmp = Path(tmp)
        fp32 = build_model(tmp / "resnet.onnx", args.size)
        fp16 = convert_fp16(fp32, tmp / "resnet-fp16.onnx", keep_io_types=True).output_path
        modes = (
            [("host", False)]
            + ([("device", False)] if on_gpu else [])
            + ([("device", True)] if provider == "CUDAExecutionProvider" else [])
        )
        figures = {}
        print(f"\nResNet-18-shaped network, 3x{args.size}x{args.size}, p50 ms / items per s / GPU memory:")
        for variant, path in (("fp32", fp32), ("fp16", fp16)):
            for io, graph in modes:
                for batch in (1, args.large_batch):
                    try:
                        m = benchmark(path, args.size, provider, batch, io=io, cuda_graph=graph)
                    except Exception as exc:  # a mode a model cannot run in is reported, not fatal
                        print(f"  {variant:5} batch {batch:3} {io + ('+graph' if graph else ''):13} failed: {exc}")
                        continue
                    figures[(variant, m.timing_mode, batch)] = m
                    print(
                        f"  {variant:5} batch {batch:3} {m.timing_mode:13} p50 {m.p50_ms:9.3f}  "
                        f"{m.throughput:10,.0f}/s  {mib(m.device_memory_bytes):>10}"
                        f"{'' if m.stable else '  (unstable)'}"
                    )

        print("\nRatios (side by side in this run):")
        big = args.large_batch
        if ("fp32", "host", big) in figures and ("fp16", "host", big) in figures:
            ratio = figures[("fp16", "host", big)].throughput / figures[("fp32", "host", big)].throughput
            print(f"  fp16 / fp32 throughput at batch {big} (io=host): {ratio:.2f}x")
        for variant in ("fp32", "fp16"):
            for batch in (1, big):
                host, device = figures.get((variant, "host", batch)), figures.get((variant, "device", batch))
                if host and device:
                    print(f"  {variant} batch {batch}: device-io / host-io p50 {device.p50_ms / host.p50_ms:.2f}")
                graph = figures.get((variant, "device+graph", batch))
                if host and graph:
                    print(f"  {variant} batch {batch}: device+graph / host-io p50 {graph.p50_ms / host.p50_ms:.2f}")
            held = figures.get((variant, "host", big))
            print(f"  {variant} GPU memory at batch {big}: {mib(held.device_memory_bytes if held else None)}")
        if not on_gpu:
            print("  (device-io modes and GPU memory need a GPU provider: not measured on this host)")
        request_ms, session_ms = serve_overhead(fp32, args.size, provider, tmp)
        print(
            f"  berth-serve request p50 (binary HTTP, batch 1) {request_ms:.3f} ms / session.run p50 "
            f"{session_ms:.3f} ms = {request_ms / session_ms:.2f}x"
        )


if __name__ == "__main__":
    main()
