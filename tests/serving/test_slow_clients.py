"""Clients that take too long to send a request (slowloris): berth-serve answers 408 and closes
their connection after --request-timeout, keeps serving everyone else, and counts the cuts."""

import json
import socket
import subprocess
import sys
import time

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ROOT, deployment, infer_body, make_spec, write_bundle

TIMEOUT = 1.0


def _server(serve, digits, tmp_path):
    model = digits["models"]["1"]
    write_bundle(tmp_path / "bundle", make_spec([deployment("1", model)]), [model])
    return serve("--bundle", tmp_path / "bundle", "--request-timeout", TIMEOUT)


def _read_all(sock, limit=10.0):
    """Everything the server sends until it closes the connection (or ``limit`` seconds)."""
    sock.settimeout(limit)
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _timeouts(process):
    text = process.client.get("/metrics")[1]
    families = {family.name: family for family in text_string_to_metric_families(text)}
    return sum(s.value for s in families["berth_request_timeouts"].samples if s.name.endswith("_total"))


def test_a_request_whose_body_trickles_in_is_answered_408_and_closed(serve, digits, tmp_path):
    process = _server(serve, digits, tmp_path)
    body = json.dumps(infer_body(digits["x"][:1])).encode()
    sock = socket.create_connection(("127.0.0.1", process.port))
    started = time.monotonic()
    sock.sendall(
        b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
    )
    sent = 0
    try:
        while sent < len(body) - 1 and time.monotonic() - started < 5 * TIMEOUT:
            sock.sendall(body[sent : sent + 1])  # one byte every 0.1 s: the body would take minutes
            sent += 1
            time.sleep(0.1)
    except OSError:  # the server closed while we were still sending
        pass
    answer = _read_all(sock)
    elapsed = time.monotonic() - started
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"did not arrive within 1 s" in answer
    assert TIMEOUT <= elapsed < TIMEOUT + 3
    # Everyone else is served, and the cut is counted.
    status, result = process.client.post("/v2/models/digits/infer", infer_body(digits["x"][:1]))
    assert status == 200
    np.testing.assert_allclose(
        np.array(result["outputs"][0]["data"], np.float32),
        digits["models"]["1"].run(x=digits["x"][:1])[0].ravel(),
        rtol=1e-6,
    )
    assert _timeouts(process) == 1


def test_a_connection_that_never_sends_a_request_is_closed(serve, digits, tmp_path):
    process = _server(serve, digits, tmp_path)
    idle = [socket.create_connection(("127.0.0.1", process.port)) for _ in range(3)]
    half = socket.create_connection(("127.0.0.1", process.port))
    half.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # headers never finished
    started = time.monotonic()
    answers = [_read_all(sock) for sock in [*idle, half]]
    assert time.monotonic() - started < TIMEOUT + 3
    for sock in [*idle, half]:
        sock.close()
    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), answers
    assert _timeouts(process) == 4


def test_slow_but_timely_requests_and_kept_alive_connections_are_served(serve, digits, tmp_path):
    process = _server(serve, digits, tmp_path)
    body = json.dumps(infer_body(digits["x"][:2])).encode()
    sock = socket.create_connection(("127.0.0.1", process.port))
    sock.settimeout(10)
    for _ in range(2):  # two requests on one connection, with an idle pause between them
        sock.sendall(
            b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body)
        )
        time.sleep(TIMEOUT / 3)
        sock.sendall(body[:10])
        time.sleep(TIMEOUT / 3)
        sock.sendall(body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _length(answer):
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        time.sleep(TIMEOUT * 0.8)  # idle between requests is uvicorn's keep-alive's business
    sock.close()
    assert _timeouts(process) == 0


def _length(answer):
    head = answer.split(b"\r\n\r\n", 1)[0].decode().lower()
    return int(head.split("content-length:")[1].split("\r\n")[0])


def test_a_grpc_connection_that_never_completes_its_handshake_is_closed(serve, digits, tmp_path):
    import re

    import tritonclient.grpc as triton_grpc

    model = digits["models"]["1"]
    write_bundle(tmp_path / "bundle", make_spec([deployment("1", model)]), [model])
    process = serve("--bundle", tmp_path / "bundle", "--request-timeout", TIMEOUT, "--grpc-port", "0")
    port = int(re.search(r"grpc on 127\.0\.0\.1:(\d+)", process.log()).group(1))
    silent = socket.create_connection(("127.0.0.1", port))
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"PRI * HTTP/2.0\r\n")  # the start of the HTTP/2 preface, never finished
    started = time.monotonic()
    for sock in (silent, half):
        sock.settimeout(TIMEOUT + 5)
        try:
            while sock.recv(65536):  # the server's SETTINGS, then the end
                pass
        except ConnectionResetError:
            pass
        sock.close()
    assert time.monotonic() - started < TIMEOUT + 3  # gRPC's own default waits 120 s
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
    assert client.is_server_ready()  # everyone else is served
    client.close()


def test_the_timeout_must_be_positive():
    result = subprocess.run(
        [sys.executable, "-m", "serving.cli", "--bundle", ".", "--request-timeout", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--request-timeout must be > 0 seconds" in result.stderr
