"""berth-serve against itself without telemetry and against a Flask + onnxruntime server.

Same machine, same digits MLP (trained here in a few seconds), loopback, a closed-loop load
generator with 8 concurrent keep-alive connections, a fixed time per configuration:

  (a) berth-serve --workers W with telemetry, to a stand-in collector (a local process that
      answers 202 like the dashboard and counts what it receives);
  (b) berth-serve --workers W --no-telemetry;
  (c) the classic tutorial server: Flask, ``/predict`` taking ``{"inputs": [[64 floats]]}``,
      an onnxruntime session created at import, run with gunicorn -w W (sync workers, its
      default) — same number of processes as (a)/(b), each running one inference at a time
      (berth-serve gets --threads 1 per worker; both sessions use 1 intra-op thread).

The configurations alternate for --rounds rounds so that machine noise falls on all of them;
each figure is the median over rounds. The generator is ``wrk`` when /usr/bin/wrk exists,
else the asyncio client below (its own process); its CPU per request is measured and printed,
as is each server's (CPU seconds of the server's processes / requests): on a 2-core machine
generator and servers share the cores, so a cheaper server leaves more to the generator.

    .venv/bin/python bench/serving.py [--seconds 15] [--rounds 2] [--workers 2]
"""

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving_dataplane import write_bundle as write_model_bundle  # noqa: E402  (bench/ is on sys.path: same folder)
from tests.onnx_models import reference_features  # noqa: E402

CONCURRENCY = 8
TELEMETRY_GOAL = 0.95
FLASK_GOAL = 2.0
WARMUP_SECONDS = 2.0

FLASK_APP = """
import os

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request

app = Flask(__name__)
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(os.environ["MODEL_PATH"], options, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name


@app.route("/predict", methods=["POST"])
def predict():
    data = request.get_json()
    x = np.array(data["inputs"], dtype=np.float32)
    outputs = session.run(None, {input_name: x})
    return jsonify({"outputs": outputs[0].tolist()})
"""

COLLECTOR = """
import http.server, json, sys, threading

seen, totals = set(), {"flushes": 0, "requests": 0, "errors": 0}
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with lock:
            duplicate = payload["flush_id"] in seen
            if not duplicate:
                seen.add(payload["flush_id"])
                totals["flushes"] += 1
                totals["requests"] += sum(s["requests"] for s in payload["series"])
                totals["errors"] += sum(s["errors"] for s in payload["series"])
        self._answer(200 if duplicate else 202, b"{}")

    def do_GET(self):
        with lock:
            self._answer(200, json.dumps(totals).encode())

    def _answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


# --- the load generator (its own process) ----------------------------------------------------


class _Connection(asyncio.Protocol):
    def __init__(self, generator):
        self.generator = generator
        self.buffer = b""
        self.transport = None
        self.sent = 0.0

    def connection_made(self, transport):
        self.transport = transport
        self.generator.send(self)

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            start = head.find(b"content-length:")
            if start < 0:
                raise RuntimeError(f"a response without content-length: {head[:200]!r}")
            stop = head.find(b"\r\n", start)
            length = int(head[start + 15 : stop if stop > 0 else None])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            close = b"connection: close" in head
            self.generator.done(self, head[9:12] == b"200", close)
            if close:
                return

    def connection_lost(self, exc):
        self.generator.lost(self)


class _Generator:
    """Closed loop: each connection sends its next request when the previous answer arrives;
    a server that closes connections (gunicorn's sync workers) gets a new one."""

    def __init__(self, port, request, warmup_end, end):
        self.port, self.request = port, request
        self.warmup_end, self.end = warmup_end, end
        self.latencies, self.errors = [], 0
        self.loop = asyncio.get_running_loop()
        self.finished = self.loop.create_future()
        self.open = 0

    def send(self, connection):
        connection.sent = time.perf_counter()
        connection.transport.write(self.request)

    def done(self, connection, ok, close):
        now = time.perf_counter()
        if now >= self.warmup_end and connection.sent >= self.warmup_end and now < self.end:
            self.latencies.append(now - connection.sent)
            self.errors += not ok
        if close:
            connection.transport.close()
        if now >= self.end:
            if not close:
                connection.transport.close()
        elif close:
            self.loop.create_task(self.connect())
        else:
            self.send(connection)

    def lost(self, connection):
        self.open -= 1
        if self.open == 0 and time.perf_counter() >= self.end and not self.finished.done():
            self.finished.set_result(None)

    async def connect(self):
        self.open += 1
        for attempt in range(50):
            try:
                await self.loop.create_connection(lambda: _Connection(self), "127.0.0.1", self.port)
                return
            except OSError:  # the listen backlog of a busy sync server: try again
                await asyncio.sleep(0.001 * (attempt + 1))
        self.open -= 1
        raise RuntimeError("cannot connect")


async def _generate(port, request, seconds, concurrency):
    now = time.perf_counter()
    generator = _Generator(port, request, now + WARMUP_SECONDS, now + WARMUP_SECONDS + seconds)
    for _ in range(concurrency):
        await generator.connect()
    await asyncio.wait_for(generator.finished, WARMUP_SECONDS + seconds + 30)
    return generator


def generate_main(port, path, body_file, seconds, concurrency):
    """Run the generator, print one JSON line: requests, errors, latencies, its own CPU."""
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    body = Path(body_file).read_bytes()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    before = os.times()
    generator = run(_generate(port, request, seconds, concurrency))
    after = os.times()
    cpu = (after.user - before.user) + (after.system - before.system)
    latencies = np.array(generator.latencies) * 1000
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "errors": generator.errors,
                "seconds": seconds,
                "p50_ms": float(np.percentile(latencies, 50)),
                "p99_ms": float(np.percentile(latencies, 99)),
                "generator_cpu_s": cpu,
                "generator_cpu_s_measured": cpu * seconds / (seconds + WARMUP_SECONDS),
            }
        )
    )


def run_wrk(port, path, body_file, seconds, concurrency, tmp):
    """wrk -t1 -c8 with a Lua script that POSTs the body; the same figures as generate_main.
    wrk's warm-up is a separate short run."""
    script = Path(tmp) / "post.lua"
    body = Path(body_file).read_text()
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(body)}\n'
    )
    url = f"http://127.0.0.1:{port}{path}"
    subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{int(WARMUP_SECONDS)}s", "-s", str(script), url],
        capture_output=True,
        check=True,
    )
    before = os.times()
    output = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    requests = int(output.split(" requests in ")[0].split()[-1])
    errors = 0
    for line in output.splitlines():
        if "Non-2xx or 3xx responses:" in line:
            errors += int(line.split(":")[1])
    p50 = _wrk_ms(output, "50%")
    p99 = _wrk_ms(output, "99%")
    return {
        "requests": requests,
        "errors": errors,
        "seconds": seconds,
        "p50_ms": p50,
        "p99_ms": p99,
        "generator_cpu_s": cpu,
        "generator_cpu_s_measured": cpu,
    }


def _wrk_ms(output, label):
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] == label:
            value = parts[1]
            for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
                if value.endswith(unit):
                    return float(value[: -len(unit)]) * factor
    raise RuntimeError(f"no {label} latency in wrk's output:\n{output}")


# --- the servers -------------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=60, process=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def cpu_seconds(process):
    import psutil

    try:
        root = psutil.Process(process.pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
        return total
    except psutil.NoSuchProcess:
        return 0.0


def build_model(folder):
    from dashboard.demo import digits_data, export_onnx, train_digits_mlp

    data = digits_data()
    module, accuracy = train_digits_mlp(data, hidden=128, epochs=10)
    path = export_onnx(module, folder / "digits.onnx")
    return path, data, accuracy


def write_bundle(folder, model_path, data):
    """A bundle with the features a reference profile of digits would have: mean and std of
    the input, its 64 columns, and the predicted class."""
    features = reference_features(data.train_x, bins=10, columns=range(64), classes=10)
    write_model_bundle(folder, model_path, (64,), 10, model="digits", features=features)
    return len(features)


class Server:
    def __init__(self, name, command, port, ready_path, infer_path, body, env=None, cwd=None):
        self.name, self.port, self.infer_path, self.body = name, port, infer_path, body
        self.log = open(Path(tempfile.gettempdir()) / f"bench-serving-{name}-{port}.log", "w")
        self.process = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.ready_url = f"http://127.0.0.1:{port}{ready_path}"
        self.results = []

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def measure(server, args, tmp):
    before = cpu_seconds(server.process)
    if args.generator == "wrk":
        result = run_wrk(server.port, server.infer_path, server.body, args.seconds, CONCURRENCY, tmp)
    else:
        output = subprocess.run(
            [
                sys.executable,
                __file__,
                "--generate",
                str(server.port),
                server.infer_path,
                str(server.body),
                str(args.seconds),
                str(CONCURRENCY),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
    spent = cpu_seconds(server.process) - before
    # The server's CPU covers the warm-up too, which ran at the same rate: scale it out.
    result["server_cpu_us"] = (
        spent * (args.seconds / (args.seconds + WARMUP_SECONDS)) / max(1, result["requests"]) * 1e6
    )
    result["generator_cpu_us"] = result["generator_cpu_s_measured"] / max(1, result["requests"]) * 1e6
    result["rps"] = result["requests"] / args.seconds
    server.results.append(result)
    print(
        f"  {server.name:<14} {result['rps']:8.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
        f"p99 {result['p99_ms']:6.2f} ms  errors {result['errors']}  server CPU {result['server_cpu_us']:5.0f} "
        f"µs/req  generator CPU {result['generator_cpu_us']:4.0f} µs/req",
        flush=True,
    )


def median(server, key):
    return statistics.median(r[key] for r in server.results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15, help="measured seconds per configuration and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="server processes for every configuration")
    parser.add_argument("--generator", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--generate", nargs=5, metavar=("PORT", "PATH", "BODY", "SECONDS", "CONCURRENCY"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.generate:
        port, path, body, seconds, concurrency = args.generate
        generate_main(int(port), path, body, int(seconds), int(concurrency))
        return 0
    if args.generator == "auto":
        args.generator = "wrk" if shutil.which("wrk") and Path("/usr/bin/wrk").exists() else "python"

    servers = []
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        tmp = Path(tmp)
        model_path, data, accuracy = build_model(tmp)
        bundle = tmp / "bundle"
        feature_count = write_bundle(bundle, model_path, data)
        sample = [float(v) for v in data.test_x[0]]
        oip_body = tmp / "oip.json"
        oip_body.write_text(
            json.dumps({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": sample}]})
        )
        flask_body = tmp / "flask.json"
        flask_body.write_text(json.dumps({"inputs": [sample]}))
        (tmp / "flask_app.py").write_text(textwrap.dedent(FLASK_APP))
        collector = subprocess.Popen(
            [sys.executable, "-c", COLLECTOR], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        collector_port = int(collector.stdout.readline())
        print(
            f"digits MLP 64-128-64-10 (test accuracy {accuracy:.1%}), {feature_count} drift features; "
            f"{os.cpu_count()} CPUs; {CONCURRENCY} keep-alive connections, closed loop; "
            f"{args.seconds} s per configuration x {args.rounds} rounds; generator: "
            f"{'wrk' if args.generator == 'wrk' else 'asyncio client (bench/serving.py --generate)'}"
        )
        serve = [
            sys.executable,
            "-m",
            "serving.cli",
            "--bundle",
            str(bundle),
            "--host",
            "127.0.0.1",
            "--workers",
            str(args.workers),
            "--threads",
            "1",
            "--log-level",
            "warning",
        ]
        try:
            port = free_port()
            servers.append(
                Server(
                    "a:telemetry",
                    serve
                    + ["--port", str(port), "--dashboard", f"http://127.0.0.1:{collector_port}", "--token", "bench"],
                    port,
                    "/v2/health/ready",
                    "/v2/models/digits/infer",
                    oip_body,
                    cwd=ROOT,
                )
            )
            port = free_port()
            servers.append(
                Server(
                    "b:no-telemetry",
                    serve + ["--port", str(port), "--no-telemetry"],
                    port,
                    "/v2/health/ready",
                    "/v2/models/digits/infer",
                    oip_body,
                    cwd=ROOT,
                )
            )
            port = free_port()
            gunicorn = str(Path(sys.executable).parent / "gunicorn")
            servers.append(
                Server(
                    "c:flask",
                    [
                        gunicorn,
                        "-w",
                        str(args.workers),
                        "-b",
                        f"127.0.0.1:{port}",
                        "--log-level",
                        "warning",
                        "flask_app:app",
                    ],
                    port,
                    "/predict",
                    "/predict",
                    flask_body,
                    env={"MODEL_PATH": str(model_path)},
                    cwd=tmp,
                )
            )
            for server in servers:
                if server.name.startswith("c:"):
                    _wait_flask(server)
                else:
                    wait_http(server.ready_url, process=server.process)
            print(
                f"(a), (b): berth-serve --workers {args.workers} --threads 1 (uvicorn, httptools, uvloop); "
                f"(c): gunicorn -w {args.workers} (sync) + Flask; onnxruntime 1 intra-op thread everywhere"
            )
            for round_ in range(args.rounds):
                print(f"round {round_ + 1}/{args.rounds}")
                for server in servers:
                    measure(server, args, tmp)
            a, b, c = servers
            servers[0].stop()  # graceful: flushes its pending telemetry
            received = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{collector_port}/").read())
        finally:
            for server in servers:
                server.stop()
            collector.terminate()
            collector.wait()
    return report(a, b, c, received, args)


def _wait_flask(server):
    deadline = time.monotonic() + 60
    body = server.body.read_bytes()
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(server.ready_url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the Flask server did not start")


def report(a, b, c, received, args):
    rps_a, rps_b, rps_c = (median(s, "rps") for s in (a, b, c))
    p99_a, p99_b, p99_c = (median(s, "p99_ms") for s in (a, b, c))
    cost = rps_a / rps_b
    versus = rps_a / rps_c
    sent = sum(r["requests"] for r in a.results)
    print(
        f"serving.telemetry_cost: ours={rps_a:.0f} baseline={rps_b:.0f} ratio={cost:.3f} "
        f"(req/s, median of {args.rounds}; p99 {p99_a:.2f} vs {p99_b:.2f} ms; server CPU "
        f"{median(a, 'server_cpu_us'):.0f} vs {median(b, 'server_cpu_us'):.0f} µs/req)"
    )
    print(
        f"serving.vs_flask: ours={rps_a:.0f} baseline={rps_c:.0f} ratio={versus:.2f} "
        f"(req/s, median of {args.rounds}; p99 {p99_a:.2f} vs {p99_c:.2f} ms; server CPU "
        f"{median(a, 'server_cpu_us'):.0f} vs {median(c, 'server_cpu_us'):.0f} µs/req)"
    )
    print(f"serving.p99_ms: telemetry={p99_a:.2f} no_telemetry={p99_b:.2f} flask={p99_c:.2f}")
    generator_us = statistics.median(r["generator_cpu_us"] for s in (a, b, c) for r in s.results)
    print(
        f"load generator: {generator_us:.0f} µs CPU per request (median over runs); at {rps_a:.0f} req/s that is "
        f"{generator_us * rps_a / 1e6 / (os.cpu_count() or 1):.0%} of this machine's {os.cpu_count()} CPUs "
        f"(against Flask {median(c, 'generator_cpu_us'):.0f} µs/req: gunicorn's sync workers close each "
        "connection, so every request also pays a TCP connect)"
    )
    print(
        f"telemetry check: the collector counted {received['requests']} requests in {received['flushes']} "
        f"flushes; the generator completed {sent} measured requests (plus warm-up) on (a)"
    )
    telemetry_ok = cost >= TELEMETRY_GOAL
    flask_ok = versus >= FLASK_GOAL and p99_a <= p99_c
    errors = sum(r["errors"] for s in (a, b, c) for r in s.results)
    print(f"goal telemetry_cost ratio >= {TELEMETRY_GOAL}: {'met' if telemetry_ok else 'NOT met'}")
    print(f"goal vs_flask ratio >= {FLASK_GOAL} with p99 no worse: {'met' if flask_ok else 'NOT met'}")
    if errors:
        print(f"ERRORS: {errors} requests failed during the runs")
    return 0 if telemetry_ok and flask_ok and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
