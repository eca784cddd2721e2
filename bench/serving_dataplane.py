"""berth-serve's data plane, every ratio measured side by side in one run on this machine:

  1. overhead: request p50 / session.run p50 for one 1x3x224x224 float32 tensor (602 KB), one
     client, over JSON, HTTP with binary tensors and gRPC. The model is a small CNN stem on 224x224
     images whose session.run costs about what ResNet-50 costs on a GPU (a few ms), so what is
     left above 1.0 is the transport. Request bodies are encoded once up front (a client's own
     encoding is not the server's cost); each request is sent on a keep-alive connection.
  2. dynamic batching: the digits CNN at 32 concurrent keep-alive connections, berth-serve with
     batching off and on (max_batch_size 32), req/s and p99, and the goal's p99 bound: the
     unbatched p99 at concurrency 1 + max_queue_delay + two batch-32 session.run times.
  3. berth-serve with batching vs MLServer 1.7 with adaptive batching (bench/mlserver_runtime.py)
     on the same model, generator and concurrency, when MLServer is installed in its own virtual
     environment (MLSERVER_VENV, default var/mlserver-venv; it pins other versions of our packages).

Beside each figure, the floor of its transport on this machine: an echo server on the same stack
(uvicorn on uvloop with berth-serve's HTTP protocol; grpc.aio with berth-serve's options) that reads
the same request and answers berth-serve's own response bytes, decoding nothing and running no
model. (echo p50 + session.run p50) / session.run p50 is the lowest overhead ratio any server on
that transport reaches here; the echo's req/s at concurrency 32 over berth-serve's unbatched req/s
is the highest batching ratio, and its p99 the lowest p99 at that concurrency. Batching also has a
ceiling of berth-serve's own: its event loop's CPU per request with batching on (parsing, decoding,
queueing, answering: work a batch does not share) caps its req/s at one core's worth, and that
over the unbatched req/s is the highest ratio it can reach here. A goal beyond its floor or ceiling
is out of reach on this machine (the lines say so).

Client and servers are not pinned to cores: on a shared 2-core machine, pinning them apart takes
from each the core the other sessions' load leaves free, which measures the pinning, not them.

Flask and telemetry on/off are bench/serving.py's (make bench runs both).

    .venv/bin/python bench/serving_dataplane.py [--seconds 10] [--requests 200]
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OVERHEAD_GOAL = 1.5
BATCHING_GOAL = 3.0
MLSERVER_GOAL = 1.5
CONCURRENCY = 32
MAX_BATCH = 32
DELAY_US = 2000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, process, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- models ----------------------------------------------------------------------------------


def export_classifier(net, example, path):
    """``net`` as ONNX at ``path`` (legacy exporter, opset 17): input x, output logits, both with
    a dynamic batch axis, traced on ``example``."""
    import torch

    torch.onnx.export(
        net,
        (example,),
        str(path),
        input_names=["x"],
        output_names=["logits"],
        dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def build_stem(path):
    """A CNN stem on 224x224 images (two strided convolutions, pooling, a 1000-way classifier)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 32, 7, 4, 3),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, 2, 1),
        nn.ReLU(),
        nn.Conv2d(64, 128, 3, 2, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 1000),
    ).eval()
    return export_classifier(net, torch.zeros(1, 3, 224, 224), path)


def build_digits_cnn(path):
    from dashboard.demo import digits_data, train_digits_cnn

    import torch

    module, accuracy = train_digits_cnn(digits_data(), epochs=2)
    return export_classifier(module, torch.zeros(2, 1, 8, 8), path), accuracy


def session(path):
    """An onnxruntime session with berth-serve's options (1 intra-op thread, sequential)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_p50(path, x, runs):
    s = session(path)
    for _ in range(10):
        s.run(None, {"x": x})
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        s.run(None, {"x": x})
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


# --- berth-serve ---------------------------------------------------------------------------------


def write_bundle(
    folder, model_path, shape, outputs, batching=None, provider="CPUExecutionProvider", *, model="m", features=()
):
    """A berth-serve bundle in ``folder``: the ONNX classifier at ``model_path`` (input x of
    ``shape`` after the batch axis, ``outputs`` logits) as version 1 of ``model`` on its own, with
    the reference ``features`` berth-serve bins."""
    raw = model_path.read_bytes()
    sha = hashlib.sha256(raw).hexdigest()
    (folder / "artifacts").mkdir(parents=True)
    shutil.copy(model_path, folder / "artifacts" / f"{sha}.onnx")
    signature = {
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", *shape], "dynamic_axes": [0]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", outputs], "dynamic_axes": [0]}],
    }
    spec = {
        "endpoint": "bench",
        "model": model,
        "generation": 1,
        "target": {"slug": "bench", "execution_provider": provider, "provider_options": {}},
        "deployments": [
            {
                "version": "1",
                "weight": 100,
                "sha256": sha,
                "size_bytes": len(raw),
                "format": "onnx",
                "artifact_url": f"artifacts/{sha}.onnx",
                "io_signature": signature,
                "features": list(features),
            }
        ],
        "telemetry": None,
        "limits": {"max_request_bytes": 64 * 1024 * 1024},
        "batching": batching,
    }
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder


class Process:
    def __init__(self, command, log, env=None, cwd=ROOT):
        self.log = open(log, "w")
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def berth_serve(bundle, log, grpc=False):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "serving.cli",
        "--bundle",
        str(bundle),
        "--port",
        str(port),
        "--no-telemetry",
        "--log-level",
        "warning",
    ]
    grpc_port = None
    if grpc:
        grpc_port = free_port()
        command += ["--grpc-port", str(grpc_port)]
    process = Process(command, log)
    wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", process.process)
    return process, port, grpc_port


def in_process_core(bundle):
    """berth-serve's inference core in this process on the bundle's version (no transport): what
    a request costs once decoded (routing, the hop to an inference thread and back, metrics)."""
    import asyncio

    from serving.core import InferenceCore
    from serving.routing import RoutingTable, VersionRoute, load_session
    from serving.spec import parse_spec

    spec = parse_spec(json.loads((bundle / "spec.json").read_text()))
    (deployment,) = spec.deployments
    loaded = load_session(
        bundle / "artifacts" / f"{deployment.sha256}.onnx",
        sha256=deployment.sha256,
        label="m:1",
        signature=deployment.signature,
        target=spec.target,
    )
    loop = asyncio.new_event_loop()
    core = InferenceCore(2)
    core.start(loop)
    core.install(RoutingTable(spec, {deployment.version: VersionRoute(spec.model, deployment, loaded, None)}, {}))
    return core, loop


# --- transport floors -----------------------------------------------------------------------------


def echo_http(port, response_file):
    """uvicorn as berth-serve runs it (uvloop, its HTTP protocol, no access log), answering every
    request with the bytes of ``response_file`` once the body is read: no decoding, no model."""
    import uvicorn

    from serving.transport import protocol_name

    body = Path(response_file).read_bytes()
    saved = json.loads(Path(response_file).with_suffix(".json").read_text())
    headers = [(name.encode(), value.encode()) for name, value in saved["headers"]]

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=protocol_name(),
        access_log=False,
        log_level="warning",
        server_header=False,
    )


def echo_grpc(port, response_file):
    """grpc.aio with berth-serve's options, answering ModelInfer with the bytes of ``response_file``
    (a serialized ModelInferResponse) without parsing the request."""

    import grpc
    import uvloop

    from serving.grpc_server import MAX_MESSAGE_BYTES, SERVICE

    response = Path(response_file).read_bytes()

    async def infer(raw, context):
        return response

    async def main():
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ]
        )
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main())


# glibc's malloc maps a fresh process's 600 KB request buffers with mmap and unmaps them on free, so
# each request page-faults them in again (~300 faults, more CPU than the whole echo); berth-serve,
# counted the same way (/proc/PID/stat), takes none per request. The echo servers get thresholds that
# keep such buffers from the start, or they would not be a floor.
ECHO_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}


def echo_server(kind, response, headers, tmp, log):
    """An echo server (``kind`` http or grpc) answering ``response`` (bytes; ``headers`` for HTTP),
    in its own process, ready: (Process, port)."""
    port = free_port()
    response_file = tmp / f"echo-{kind}.bin"
    response_file.write_bytes(response)
    response_file.with_suffix(".json").write_text(json.dumps({"headers": headers}))
    command = [sys.executable, str(Path(__file__).resolve()), "--echo", kind, str(port), str(response_file)]
    process = Process(command, log, env=ECHO_MALLOC)
    deadline = time.monotonic() + 60
    while True:
        if process.process.poll() is not None:
            raise RuntimeError(f"the {kind} echo server exited with {process.process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# --- 1. overhead ---------------------------------------------------------------------------------


def http_client(port):
    """A keep-alive HTTP/1.1 connection: ``post(body, headers)`` returns a call that writes one
    request in one piece and returns the response's (head, body)."""
    connection = socket.create_connection(("127.0.0.1", port))
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(body, headers):
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        message = (
            f"POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        ).encode() + body

        def call():
            connection.sendall(message)
            received = b""
            while True:
                chunk = connection.recv(1 << 20)
                if not chunk:
                    raise RuntimeError("the server closed the connection")
                received += chunk
                end = received.find(b"\r\n\r\n")
                if end > 0:
                    status = received[9:12]
                    length = int(received[:end].lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(received) >= end + 4 + length:
                        assert status == b"200", received[:300]
                        return received[:end], received[end + 4 :]

        return call

    return connection, post


def overhead(tmp, requests):
    import grpc
    from tritonclient.grpc import service_pb2

    model = build_stem(tmp / "stem.onnx")
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    bundle = write_bundle(tmp / "stem-bundle", model, (3, 224, 224), 1000)
    server, port, grpc_port = berth_serve(bundle, tmp / "stem.log", grpc=True)
    echoes = []
    try:
        json_body = json.dumps(
            {"inputs": [{"name": "x", "shape": [1, 3, 224, 224], "datatype": "FP32", "data": x.ravel().tolist()}]}
        ).encode()
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "shape": [1, 3, 224, 224],
                        "datatype": "FP32",
                        "parameters": {"binary_data_size": x.nbytes},
                    }
                ],
                "parameters": {"binary_data_output": True},
            }
        ).encode()
        binary_body = header + x.tobytes()
        binary_headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        }
        connection, post = http_client(port)

        request = service_pb2.ModelInferRequest(model_name="m")
        request.inputs.add(name="x", datatype="FP32", shape=[1, 3, 224, 224])
        request.raw_input_contents.append(x.tobytes())
        grpc_body = request.SerializeToString()
        options = [("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)]
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}", options=options)
        infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")

        # The floors: echo servers answering berth-serve's own responses to these requests.
        head, binary_response = post(binary_body, binary_headers)()
        kept = (b"content-type", b"content-length", b"inference-header-content-length")
        response_headers = [
            [part.decode() for part in line.split(b": ", 1)]
            for line in head.split(b"\r\n")[1:]
            if line.split(b":", 1)[0].lower() in kept
        ]
        echo, echo_port = echo_server("http", binary_response, response_headers, tmp, tmp / "echo-http.log")
        echoes.append(echo)
        echo_connection, echo_post = http_client(echo_port)
        echo, echo_grpc_port = echo_server("grpc", infer(grpc_body, timeout=60), None, tmp, tmp / "echo-grpc.log")
        echoes.append(echo)
        echo_channel = grpc.insecure_channel(f"127.0.0.1:{echo_grpc_port}", options=options)
        echo_infer = echo_channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")

        # Round robin, so that the machine's changes of pace fall on every figure alike (a bare
        # session.run in this process is one of them); JSON, 100x slower, is timed on its own.
        bare_session = session(model)
        core, loop = in_process_core(bundle)
        calls = {
            "binary": post(binary_body, binary_headers),
            "grpc": lambda: infer(grpc_body, timeout=60),
            "echo_binary": echo_post(binary_body, binary_headers),
            "echo_grpc": lambda: echo_infer(grpc_body, timeout=60),
            "core": lambda: loop.run_until_complete(core.infer("m", {"x": x})),
            "session": lambda: bare_session.run(None, {"x": x}),
        }
        times = {name: [] for name in calls}
        for number in range(requests + 5):
            for name, call in calls.items():
                started = time.perf_counter()
                call()
                if number >= 5:
                    times[name].append((time.perf_counter() - started) * 1000)
        json_call = post(json_body, {"Content-Type": "application/json"})
        json_call()
        times["json"] = []
        for _ in range(max(10, requests // 10)):
            started = time.perf_counter()
            json_call()
            times["json"].append((time.perf_counter() - started) * 1000)
        figures = {name: statistics.median(values) for name, values in times.items()}
        channel.close()
        echo_channel.close()
        connection.close()
        echo_connection.close()
        core.stop()
        loop.close()
    finally:
        server.stop()
        for echo in echoes:
            echo.stop()
    bare = figures.pop("session")
    print(
        f"1x3x224x224 float32 ({x.nbytes:,} bytes; JSON body {len(json_body):,} bytes), session.run p50 "
        f"{bare:.2f} ms (in this process, interleaved with the binary and gRPC requests); load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    results, floors = {}, {}
    core_p50 = figures.pop("core")
    print(
        f"serving_dataplane.overhead_core: core_p50={core_p50:.2f} ms session_run_p50={bare:.2f} ms "
        f"ratio={core_p50 / bare:.2f} (the inference core in process: what is left is the transport's)"
    )
    for name in ("binary", "grpc"):
        echo_p50 = figures.pop(f"echo_{name}")
        floors[name] = (echo_p50 + bare) / bare
        print(
            f"serving_dataplane.floor_{name}: echo_p50={echo_p50:.2f} ms session_run_p50={bare:.2f} ms "
            f"ratio={floors[name]:.2f} (an echo server on the same transport answering berth-serve's response "
            "without decoding or inference, plus session.run: the lowest ratio reachable here)"
        )
    for name, p50 in figures.items():
        results[name] = p50 / bare
        print(
            f"serving_dataplane.overhead_{name}: request_p50={p50:.2f} ms session_run_p50={bare:.2f} ms "
            f"ratio={p50 / bare:.2f}"
        )
    return results, floors


# --- 2. and 3. batching, MLServer ----------------------------------------------------------------


def generate(port, path, body_file, seconds, concurrency, server=None):
    """bench/serving.py's closed-loop asyncio generator, in its own process; with ``server`` (a
    Process), also the server's CPU per measured request (the warm-up scaled out)."""
    from bench.serving import WARMUP_SECONDS, cpu_seconds

    before = cpu_seconds(server.process) if server else 0.0
    loop_before = loop_cpu_seconds(server.process) if server else 0.0
    output = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "serving.py"),
            "--generate",
            str(port),
            path,
            str(body_file),
            str(seconds),
            str(concurrency),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    result["rps"] = result["requests"] / seconds
    spent = (cpu_seconds(server.process) - before) if server else 0.0
    loop_spent = (loop_cpu_seconds(server.process) - loop_before) if server else 0.0
    per_request = seconds / (seconds + WARMUP_SECONDS) / max(1, result["requests"]) * 1e6
    result["server_cpu_us"] = spent * per_request
    result["loop_cpu_us"] = loop_spent * per_request
    return result


def loop_cpu_seconds(process):
    """CPU seconds of the server's event-loop thread (its main thread: one worker process, where
    uvicorn runs the loop; the inference pool's threads are the rest of the process's CPU)."""
    import psutil

    try:
        for thread in psutil.Process(process.pid).threads():
            if thread.id == process.pid:
                return thread.user_time + thread.system_time
    except psutil.NoSuchProcess:
        pass
    return 0.0


def batching(tmp, seconds, mlserver_venv):
    model, accuracy = build_digits_cnn(tmp / "digits-cnn.onnx")
    x1 = np.random.default_rng(1).random((1, 1, 8, 8), dtype=np.float32)
    batch_ms = run_p50(model, np.repeat(x1, MAX_BATCH, axis=0), 200)
    single_ms = run_p50(model, x1, 200)
    body = tmp / "digits.json"
    body.write_text(
        json.dumps({"inputs": [{"name": "x", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": x1.ravel().tolist()}]})
    )
    off = write_bundle(tmp / "off", model, (1, 8, 8), 10)
    on = write_bundle(tmp / "on", model, (1, 8, 8), 10, {"max_batch_size": MAX_BATCH, "max_queue_delay_us": DELAY_US})
    print(
        f"digits CNN (test accuracy {accuracy:.1%}): session.run p50 {single_ms:.3f} ms at batch 1, {batch_ms:.3f} ms "
        f"at batch {MAX_BATCH}; {CONCURRENCY} keep-alive connections, {seconds} s each, {os.cpu_count()} CPUs"
    )
    results = {}
    servers = {}
    try:
        servers["off"] = berth_serve(off, tmp / "off.log")
        servers["on"] = berth_serve(on, tmp / "on.log")
        connection, post = http_client(servers["off"][1])
        head, response = post(body.read_bytes(), {"Content-Type": "application/json"})()
        connection.close()
        kept = (b"content-type", b"content-length")
        headers = [
            [part.decode() for part in line.split(b": ", 1)]
            for line in head.split(b"\r\n")[1:]
            if line.split(b":", 1)[0].lower() in kept
        ]
        servers["echo"] = echo_server("http", response, headers, tmp, tmp / "echo.log")
        if mlserver_venv:
            servers["mlserver"] = start_mlserver(tmp, model, mlserver_venv)
        path = "/v2/models/m/infer"
        results["off_c1"] = generate(servers["off"][1], path, body, seconds, 1)
        for name in servers:
            if name == "echo":
                server, echo_port = servers[name]
                results[name] = generate(echo_port, path, body, seconds, CONCURRENCY, server)
                continue
            model_name = "digits" if name == "mlserver" else "m"
            results[name] = generate(
                servers[name][1], f"/v2/models/{model_name}/infer", body, seconds, CONCURRENCY, servers[name][0]
            )
            r = results[name]
            print(
                f"  {name:<9} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
                f"errors {r['errors']}  server CPU {r['server_cpu_us']:5.0f} µs/req "
                f"(event loop {r['loop_cpu_us']:4.0f})",
                flush=True,
            )
    finally:
        for process, *_ in servers.values():
            process.stop()
    on_, off_, c1, echo = results["on"], results["off"], results["off_c1"], results["echo"]
    bound = c1["p99_ms"] + DELAY_US / 1000 + 2 * batch_ms
    print(
        f"serving_dataplane.batching: on={on_['rps']:.0f} off={off_['rps']:.0f} ratio={on_['rps'] / off_['rps']:.2f} "
        f"(req/s at concurrency {CONCURRENCY}; p99 {on_['p99_ms']:.2f} vs {off_['p99_ms']:.2f} ms)"
    )
    print(
        f"serving_dataplane.batching_p99: on={on_['p99_ms']:.2f} ms bound={bound:.2f} ms (unbatched p99 at "
        f"concurrency 1 {c1['p99_ms']:.2f} + delay {DELAY_US / 1000:g} + 2 x {batch_ms:.3f})"
    )
    print(
        f"serving_dataplane.batching_floor: echo={echo['rps']:.0f} off={off_['rps']:.0f} "
        f"ratio={echo['rps'] / off_['rps']:.2f} p99={echo['p99_ms']:.2f} ms (an echo server on berth-serve's HTTP "
        f"stack answering its response at concurrency {CONCURRENCY}, no decoding or inference: the highest "
        f"ratio and the lowest p99 reachable here; server CPU {echo['server_cpu_us']:.0f} µs/req)"
    )
    # The event loop (one thread: HTTP parsing, JSON decoding, queueing, answering) does a fixed
    # amount of work per request however large the batches, so one core's worth of it caps req/s.
    ceiling = 1e6 / on_["loop_cpu_us"] / off_["rps"] if on_["loop_cpu_us"] else float("inf")
    print(
        f"serving_dataplane.batching_ceiling: loop={on_['loop_cpu_us']:.0f} µs/req ratio={ceiling:.2f} (the event "
        f"loop's CPU per request with batching on, where a batch shares nothing: 1 s of one core over it, over the "
        f"unbatched req/s, is the highest ratio this server's per-request work allows here)"
    )
    out = {
        "batching": on_["rps"] / off_["rps"],
        "batching_floor": min(echo["rps"] / off_["rps"], ceiling),
        "p99_floor": echo["p99_ms"],
        "bound": bound,
        "p99_ok": on_["p99_ms"] <= bound,
        "errors": sum(r["errors"] for r in results.values()),
    }
    if "mlserver" in results:
        ml = results["mlserver"]
        out["mlserver"] = on_["rps"] / ml["rps"]
        out["mlserver_p99_ok"] = on_["p99_ms"] < ml["p99_ms"]
        print(
            f"serving_dataplane.vs_mlserver: ours={on_['rps']:.0f} mlserver={ml['rps']:.0f} "
            f"ratio={out['mlserver']:.2f} (req/s, both batching up to {MAX_BATCH} within {DELAY_US} µs; "
            f"p99 {on_['p99_ms']:.2f} vs {ml['p99_ms']:.2f} ms)"
        )
    return out


def start_mlserver(tmp, model, venv):
    folder = tmp / "mlserver"
    (folder / "digits").mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "mlserver_runtime.py", folder / "mlserver_runtime.py")
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "parallel_workers": 0,
                "debug": False,
            }
        )
    )
    (folder / "digits" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "digits",
                "implementation": "mlserver_runtime.OnnxModel",
                "parameters": {"uri": str(model)},
                "max_batch_size": MAX_BATCH,
                "max_batch_time": DELAY_US / 1e6,
            }
        )
    )
    process = Process([str(Path(venv) / "bin" / "mlserver"), "start", str(folder)], tmp / "mlserver.log", cwd=folder)
    wait_ready(f"http://127.0.0.1:{port}/v2/models/digits/ready", process.process)
    return process, port, None


def main():
    if sys.argv[1:2] == ["--echo"]:  # an echo server for the floors: --echo http|grpc PORT RESPONSE_FILE
        kind, port, response_file = sys.argv[2:5]
        (echo_http if kind == "http" else echo_grpc)(int(port), response_file)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per load configuration")
    parser.add_argument("--requests", type=int, default=200, help="requests per transport in the overhead part")
    parser.add_argument("--only", choices=["overhead", "batching"], help="run one part")
    args = parser.parse_args()
    venv = os.environ.get("MLSERVER_VENV") or str(ROOT / "var" / "mlserver-venv")
    if not (Path(venv) / "bin" / "mlserver").exists():
        print(
            f"MLServer: not installed in {venv} (python -m venv {venv} && {venv}/bin/pip install 'mlserver==1.7.*' "
            "onnxruntime); that comparison is skipped"
        )
        venv = None
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-dataplane-") as tmp:
        tmp = Path(tmp)
        if args.only != "batching":
            ratios, floors = overhead(tmp, args.requests)
            for name in ("binary", "grpc"):
                met = ratios[name] <= OVERHEAD_GOAL
                ok &= met
                print(
                    f"goal overhead_{name} ratio <= {OVERHEAD_GOAL}: {'met' if met else 'NOT met'}"
                    + (
                        f" (out of reach here: the transport's floor is {floors[name]:.2f})"
                        if floors[name] > OVERHEAD_GOAL
                        else ""
                    )
                )
        if args.only != "overhead":
            out = batching(tmp, args.seconds, venv)
            met = out["batching"] >= BATCHING_GOAL
            print(
                f"goal batching ratio >= {BATCHING_GOAL}: {'met' if met else 'NOT met'}"
                + (
                    f" (out of reach here: the lower of the echo floor and the event-loop ceiling is "
                    f"{out['batching_floor']:.2f})"
                    if out["batching_floor"] < BATCHING_GOAL
                    else ""
                )
                + f"; p99 bound: {'met' if out['p99_ok'] else 'NOT met'}"
                + (
                    f" (out of reach here: the echo's p99 is {out['p99_floor']:.2f} ms)"
                    if out["p99_floor"] > out["bound"]
                    else ""
                )
            )
            ok &= met and out["p99_ok"]
            if "mlserver" in out:
                met = out["mlserver"] >= MLSERVER_GOAL and out["mlserver_p99_ok"]
                print(f"goal vs_mlserver ratio >= {MLSERVER_GOAL} with a lower p99: {'met' if met else 'NOT met'}")
                ok &= met
            if out["errors"]:
                print(f"ERRORS: {out['errors']} requests failed")
                ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
