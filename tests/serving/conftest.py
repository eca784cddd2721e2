"""berth-serve under test: real uvicorn processes (``python -m serving.cli``) on loopback, a
digits model trained here, bundles written to temporary folders, and a stand-in dashboard (a
test double of the remote HTTP peer: spec with ETag, artifacts, a telemetry sink).

No database: nothing here touches Django's."""

import hashlib
import http.client
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import wait_for
from tests.onnx_models import reference_features

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "secret-endpoint-token"
SIGNATURE = {
    "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 64], "dynamic_axes": [0]}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 10], "dynamic_axes": [0]}],
}


# --- models ------------------------------------------------------------------------------------


class Model:
    """An ONNX file's bytes, sha256 and a direct onnxruntime session on it."""

    def __init__(self, raw, signature=SIGNATURE):
        self.raw = raw
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self.signature = signature
        self._session = None

    def run(self, **feeds):
        import onnxruntime as ort

        if self._session is None:
            self._session = ort.InferenceSession(self.raw, providers=["CPUExecutionProvider"])
        return self._session.run(None, feeds)


@pytest.fixture(scope="session")
def digits(tmp_path_factory):
    """Two digits MLPs (versions "1" and "2": different weights, same signature) with test
    images and reference features (mean, std, three columns, predicted class)."""
    from dashboard.demo import digits_data, export_onnx, train_digits_mlp

    folder = tmp_path_factory.mktemp("digits-models")
    data = digits_data()
    module, _ = train_digits_mlp(data, hidden=32, epochs=3)
    first = export_onnx(module, folder / "digits-1.onnx").read_bytes()
    models = {"1": Model(first), "2": Model(_retrained(first))}
    features = reference_features(data.train_x, bins=5, columns=(20, 36, 43), classes=10)
    return {"models": models, "x": data.test_x, "features": features}


def _retrained(raw):
    """Another version of the model: the same graph with every weight scaled (one torch export
    is enough; they take seconds)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(raw)
    for index, tensor in enumerate(model.graph.initializer):
        array = numpy_helper.to_array(tensor)
        if array.dtype == np.float32:
            model.graph.initializer[index].CopyFrom(numpy_helper.from_array(array * 1.25 + 0.01, tensor.name))
    return model.SerializeToString()


def deployment(version, model, weight=100, *, features=(), url=None):
    return {
        "version": version,
        "weight": weight,
        "sha256": model.sha256,
        "size_bytes": len(model.raw),
        "format": "onnx",
        "artifact_url": url or f"/api/v1/endpoints/digits-prod/artifacts/{version}/",
        "io_signature": model.signature,
        "features": list(features),
    }


def make_spec(deployments, *, generation=1, telemetry=None, model="digits", max_request_bytes=1 << 20):
    return {
        "endpoint": "digits-prod",
        "model": model,
        "generation": generation,
        "target": {"slug": "cpu", "execution_provider": "CPUExecutionProvider", "provider_options": {}},
        "deployments": deployments,
        "telemetry": telemetry,
        "limits": {"max_request_bytes": max_request_bytes},
    }


def write_bundle(folder, spec, models):
    """``folder/spec.json`` and ``folder/artifacts/<sha256>.onnx`` for each model."""
    (folder / "artifacts").mkdir(parents=True, exist_ok=True)
    for model in models:
        (folder / "artifacts" / f"{model.sha256}.onnx").write_bytes(model.raw)
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder


def infer_body(x, name="x", datatype="FP32"):
    x = np.asarray(x)
    return {"inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.ravel().tolist()}]}


# --- HTTP ----------------------------------------------------------------------------------------


class Client:
    """A keep-alive HTTP/1.1 client (http.client) for one server; JSON in and out."""

    def __init__(self, port, timeout=10):
        self.port = port
        self.timeout = timeout
        self._connection = None

    def request(self, method, path, body=None, *, raw=None, headers=None):
        """(status, parsed JSON or text)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                self._connection.request(
                    method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
                )
                response = self._connection.getresponse()
                text = response.read()
                if response.will_close:
                    self.close()
                break
            except (ConnectionError, http.client.RemoteDisconnected):
                self.close()
                if attempt == 2:
                    raise
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text.decode()

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body=None, **kwargs):
        return self.request("POST", path, body, **kwargs)

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# --- berth-serve processes -----------------------------------------------------------------------


def serve_args(dashboard_url, cache_dir, *extra, token=TOKEN):
    """berth-serve's arguments for the stand-in dashboard's digits-prod endpoint: ``token`` on the
    command line (None: none, the test gives it another way), artifacts cached in ``cache_dir``,
    then ``extra``."""
    credentials = [] if token is None else ["--token", token]
    return ["--dashboard", dashboard_url, "--endpoint", "digits-prod", *credentials, "--cache-dir", cache_dir, *extra]


class Serve:
    """``python -m serving.cli ... --port 0`` in its own process group; its port is read from the
    line it prints ("listening on http://127.0.0.1:PORT")."""

    def __init__(self, args, log_path, env=None):
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving.cli", "--port", "0", *map(str, args)],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.port = None

    def log(self):
        return self.log_path.read_text()

    def wait_listening(self, timeout=60):
        def listening():
            if self.process.poll() is not None:
                raise AssertionError(f"berth-serve exited with {self.process.returncode}:\n{self.log()}")
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log())
            return match and int(match.group(1))

        self.port = wait_for(listening, timeout=timeout, interval=0.05, message="berth-serve to listen")
        self.client = Client(self.port)
        return self

    def wait_ready(self, timeout=60):
        if self.port is None:
            self.wait_listening(timeout)

        def ready():
            try:
                return self.client.get("/v2/health/ready")[0] == 200
            except OSError:
                return False

        wait_for(ready, timeout=timeout, interval=0.05, message=f"berth-serve to be ready; log:\n{self.log()}")
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Send ``sig`` and wait for the exit; returns the exit code."""
        if self.port is not None:
            self.client.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                raise AssertionError(f"berth-serve did not stop within {timeout} s:\n{self.log()}") from None
        self._log.close()
        return self.process.returncode


@pytest.fixture
def serve(tmp_path):
    """``serve(*args, wait="ready"|"listening"|None)``: a berth-serve process, stopped after the test."""
    started = []

    def start(*args, wait="ready", env=None):
        process = Serve(args, tmp_path / f"serve-{len(started)}.log", env=env)
        started.append(process)
        if wait == "ready":
            process.wait_ready()
        elif wait == "listening":
            process.wait_listening()
        return process

    yield start
    for process in started:
        try:
            process.stop(signal.SIGKILL) if process.process.poll() is None else process.stop()
        except AssertionError:
            pass


# --- the stand-in dashboard ----------------------------------------------------------------------


class FakeDashboard:
    """The dashboard's side of the runtime contract, in a thread: spec with ETag (304 when
    unchanged), artifacts, and a telemetry sink that records every POST and counts each flush_id
    once. ``telemetry_failures`` makes the next POSTs count the flush and answer 500 (a lost
    answer); ``stop()`` / ``start()`` take it off the network and back on the same port."""

    def __init__(self, token=TOKEN, endpoint="digits-prod", port=0):
        self.token = token
        self.endpoint = endpoint
        self.spec = None
        self.artifacts = {}  # path -> bytes
        self.posts = []  # every telemetry POST: (status answered, payload)
        self.accepted = {}  # flush_id -> payload, counted once
        self.telemetry_failures = 0
        self.artifact_requests = []
        self.integrity_reports = []  # sha256 mismatches the runtime reported
        self.spec_requests = 0
        self.instances = set()  # X-Berth-Instance of every authorised request
        self.lock = threading.Lock()
        self._connections = set()
        self.port = port
        self._server = None
        self.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        dashboard = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with dashboard.lock:
                    dashboard._connections.add(self.connection)

            def finish(self):
                with dashboard.lock:
                    dashboard._connections.discard(self.connection)
                super().finish()

            def do_GET(self):
                if not self._authorised():
                    return
                if self.path == f"/api/v1/endpoints/{dashboard.endpoint}/spec/":
                    with dashboard.lock:
                        dashboard.spec_requests += 1
                        spec = dashboard.spec
                    if spec is None:
                        return self._json(503, {"detail": "not ready"})
                    body = json.dumps(spec).encode()
                    etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                    if self.headers.get("If-None-Match") == etag:
                        return self._send(304, b"", {"ETag": etag})
                    return self._send(200, body, {"ETag": etag, "Content-Type": "application/json"})
                if self.path.startswith("/api/v1/endpoints/"):
                    if not self.path.startswith(f"/api/v1/endpoints/{dashboard.endpoint}/"):
                        return self._json(404, {"detail": "There is no endpoint named that."})
                    with dashboard.lock:
                        dashboard.artifact_requests.append(self.path)
                        raw = dashboard.artifacts.get(self.path)
                    if raw is None:
                        return self._json(404, {"detail": "no such artifact"})
                    return self._send(200, raw, {"Content-Type": "application/octet-stream"})
                self._json(404, {"detail": "not found"})

            def do_POST(self):
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self._authorised():
                    return
                if self.path == f"/api/v1/endpoints/{dashboard.endpoint}/integrity/":
                    with dashboard.lock:
                        dashboard.integrity_reports.append(payload)
                    return self._json(201, {"audit_event": len(dashboard.integrity_reports)})
                if self.path != "/api/v1/telemetry/":
                    return self._json(404, {"detail": "not found"})
                with dashboard.lock:
                    duplicate = payload["flush_id"] in dashboard.accepted
                    if not duplicate:
                        dashboard.accepted[payload["flush_id"]] = payload
                    status = 200 if duplicate else 202
                    if dashboard.telemetry_failures:
                        dashboard.telemetry_failures -= 1
                        status = 500
                    dashboard.posts.append((status, payload))
                self._json(status, {"accepted": not duplicate, "duplicate": duplicate})

            def _authorised(self):
                if self.headers.get("Authorization") != f"Bearer {dashboard.token}":
                    self._json(401, {"detail": "This endpoint token is not valid."})
                    return False
                with dashboard.lock:
                    dashboard.instances.add(self.headers.get("X-Berth-Instance"))
                return True

            def _json(self, status, data):
                self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json"})

            def _send(self, status, body, headers):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self):
        """Off the network: no new connections, and the kept-alive ones are cut."""
        self._server.shutdown()
        self._server.server_close()
        with self.lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def publish(self, spec, models):
        """Serve ``spec`` and its deployments' artifacts."""
        with self.lock:
            for item in spec["deployments"]:
                model = next(m for m in models if m.sha256 == item["sha256"])
                self.artifacts[item["artifact_url"]] = model.raw
            self.spec = spec

    def totals(self):
        """Requests, errors and error kinds per version over the flushes counted once."""
        with self.lock:
            payloads = list(self.accepted.values())
        totals = {}
        for payload in payloads:
            for series in payload["series"]:
                version = totals.setdefault(series["version"], {"requests": 0, "errors": 0, "error_kinds": {}})
                version["requests"] += series["requests"]
                version["errors"] += series["errors"]
                for kind, count in series["error_kinds"].items():
                    version["error_kinds"][kind] = version["error_kinds"].get(kind, 0) + count
        return totals


@pytest.fixture
def dashboard():
    fake = FakeDashboard()
    yield fake
    fake.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout=30, message="condition"):
    return wait_for(condition, timeout=timeout, interval=0.05, message=message)


def served_versions(client, model="digits"):
    status, body = client.get(f"/v2/models/{model}")
    return body.get("versions") if status == 200 else None
