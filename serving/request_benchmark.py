"""End-to-end request latency: a real berth-serve on a loopback port serving one ONNX file, and
one client on one keep-alive connection sending requests in one encoding, as production clients
do: JSON tensors, the binary tensor data extension over HTTP, or gRPC.

A request's time is the client's round trip: the server reads, decodes, routes, runs the model,
encodes and answers, plus the loopback hop. The request body is encoded once up front (a
client's own encoding is not the server's cost, and production's request latency, measured in
berth-serve, does not include it either). Pure (no Django): the benchmark job's ``measure=requests``
option runs it on the target's worker, and jobs.engine.benchmark times the calls.
"""

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from berth.core.hashing import file_sha256

from . import __version__
from .protocol import DATATYPE_OF, ENCODINGS

MODEL = "m"
START_TIMEOUT = 120.0  # seconds berth-serve may take to load the model and answer ready


class ServerFailed(RuntimeError):
    """berth-serve did not start, or did not answer a request as it should."""


class LocalServer:
    """A berth-serve process on 127.0.0.1 (``port``, and ``grpc_port`` when gRPC is served)."""

    def __init__(self, process, port, grpc_port, log_path):
        self.process, self.port, self.grpc_port, self.log_path = process, port, grpc_port, log_path

    def log_tail(self, size=2000):
        try:
            return Path(self.log_path).read_text(errors="replace")[-size:]
        except OSError:
            return ""


@contextlib.contextmanager
def local_server(model_path, io_signature, *, target, grpc=False, intra_op_threads=1):
    """Serve ``model_path`` (with ``io_signature``) from a deployment bundle in a temporary folder,
    with ``target``'s execution provider and options ({slug, execution_provider, provider_options}),
    telemetry off and dynamic batching off (one client: a batch would only wait); yields a LocalServer
    once it answers ready, stops it on exit. ServerFailed (with berth-serve's log) if it cannot start."""
    with tempfile.TemporaryDirectory(prefix="berth-request-benchmark-") as folder:
        folder = Path(folder)
        sha256 = file_sha256(model_path)
        (folder / "artifacts").mkdir()
        shutil.copyfile(model_path, folder / "artifacts" / f"{sha256}.onnx")
        spec = {
            "endpoint": "request-benchmark",
            "model": MODEL,
            "generation": 1,
            "target": target,
            "deployments": [
                {
                    "version": "1",
                    "weight": 100,
                    "sha256": sha256,
                    "size_bytes": os.path.getsize(model_path),
                    "format": "onnx",
                    "artifact_url": f"artifacts/{sha256}.onnx",
                    "io_signature": io_signature,
                    "features": [],
                }
            ],
            "telemetry": None,
            "limits": {"max_request_bytes": 1 << 30},
            "batching": None,
        }
        (folder / "spec.json").write_text(json.dumps(spec))
        port = _free_port()
        grpc_port = _free_port() if grpc else None
        command = [sys.executable, "-m", "serving.cli", "--bundle", str(folder), "--port", str(port)]
        command += ["--no-telemetry", "--log-level", "warning", "--intra-op-threads", str(intra_op_threads)]
        if grpc_port is not None:
            command += ["--grpc-port", str(grpc_port)]
        # The package this module came from, whether installed or run from a checkout.
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        log_path = folder / "berth-serve.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        server = LocalServer(process, port, grpc_port, log_path)
        try:
            _wait_ready(server)
            yield server
        finally:
            _stop(process)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(server):
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            raise ServerFailed(
                f"berth-serve exited with {server.process.returncode} before it was ready: {server.log_tail()}"
            )
        try:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
            connection.request("GET", f"/v2/models/{MODEL}/ready")
            status = connection.getresponse().status
            connection.close()
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ServerFailed(f"berth-serve was not ready after {START_TIMEOUT:g} s: {server.log_tail()}")
        time.sleep(0.1)


def _stop(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class RequestClient:
    """One client on one keep-alive connection to a LocalServer, in one encoding.

    ``prepare(feeds)`` encodes a request of ``feeds`` ({input name: array}) once and returns a call
    that sends it and reads the whole answer (ServerFailed unless it succeeded)."""

    def __init__(self, server, encoding):
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
        self.server, self.encoding = server, encoding
        self._http = self._channel = None
        if encoding == "grpc":
            import grpc  # grpcio only where gRPC is measured

            self._channel = grpc.insecure_channel(
                f"127.0.0.1:{server.grpc_port}",
                options=[("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)],
            )
        else:
            self._http = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            self._http.connect()
            self._http.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        if self._http is not None:
            self._http.close()
        if self._channel is not None:
            self._channel.close()

    def prepare(self, feeds):
        if self.encoding == "grpc":
            return self._grpc_call(feeds)
        if self.encoding == "binary":
            header = json.dumps(
                {
                    "inputs": [
                        {**_tensor(name, array), "parameters": {"binary_data_size": array.nbytes}}
                        for name, array in feeds.items()
                    ],
                    "parameters": {"binary_data_output": True},
                }
            ).encode()
            body = header + b"".join(_little_endian(array).tobytes() for array in feeds.values())
            headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}
        else:
            body = json.dumps(
                {"inputs": [{**_tensor(name, array), "data": array.ravel().tolist()} for name, array in feeds.items()]}
            ).encode()
            headers = {"Content-Type": "application/json"}
        connection, path = self._http, f"/v2/models/{MODEL}/infer"

        def call():
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise ServerFailed(f"berth-serve answered {response.status}: {answer[:300]!r}")

        return call

    def _grpc_call(self, feeds):
        from .grpc_server import SERVICE, pb

        request = pb.ModelInferRequest(model_name=MODEL)
        for name, array in feeds.items():
            request.inputs.add(**_tensor(name, array))
            request.raw_input_contents.append(_little_endian(array).tobytes())
        body = request.SerializeToString()
        infer = self._channel.unary_unary(f"/{SERVICE}/ModelInfer")

        def call():
            infer(body, timeout=120)  # grpc.RpcError unless it succeeded

        return call


def _tensor(name, array):
    return {"name": name, "shape": list(array.shape), "datatype": DATATYPE_OF[array.dtype]}


def _little_endian(array):
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def server_environment(encoding):
    """What a request benchmark records about its server (beside the engine's environment)."""
    return {"berth_serve": __version__, "encoding": encoding, "transport": "loopback, one keep-alive connection"}
