"""How the fuzz suite talks to berth-serve, one class per transport, and what every answer of
that transport must be. A transport has ``infer(server, version, payload, **kw) -> Answer``
(which records each answer the server gave in the ledger), ``check(answer, version)`` (the
invariants any answer must meet: a correct 200 or a 4xx with a message) and
``check_outputs(answer, version, feeds)`` (a 200 equals a direct onnxruntime run). Add a
transport here (binary tensor bodies, gRPC) and its strategies beside test_json.py.
"""

import http.client
import json
import math
import socket
from dataclasses import dataclass, field

import numpy as np

DATATYPES = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64", "bool": "BOOL"}
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict = field(default_factory=dict)
    data: object = None  # the body as strict JSON (None if it is not)

    def error(self):
        return self.data.get("error") if isinstance(self.data, dict) else None


def strict_json(raw):
    """RFC 8259 JSON: NaN, Infinity and -Infinity literals are refused."""

    def refuse(token):
        raise ValueError(f"{token} is not JSON")

    return json.loads(raw, parse_constant=refuse)


def valid_body(feeds, *, nested=False, request_id=None, outputs=None):
    """An OIP request for ``feeds`` ({name: ndarray}), data flat or nested as the shape says."""
    body = {
        "inputs": [
            {
                "name": name,
                "shape": list(array.shape),
                "datatype": DATATYPES[array.dtype.name],
                "data": array.tolist() if nested and array.ndim else array.ravel().tolist(),
            }
            for name, array in feeds.items()
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    if outputs is not None:
        body["outputs"] = [{"name": name} for name in outputs]
    return body


class HttpJson:
    """OIP JSON bodies over HTTP/1.1 (keep-alive, one connection per server)."""

    name = "http-json"

    def __init__(self):
        self._connections = {}

    def infer(self, server, version, body, *, headers=None, timeout=20):
        """POST ``body`` (bytes) to the pinned version; every answer is recorded in the ledger."""
        for attempt in (1, 2):
            connection = self._connections.get(server.port)
            if connection is None:
                connection = self._connections[server.port] = http.client.HTTPConnection(
                    "127.0.0.1", server.port, timeout=timeout
                )
            try:
                connection.request(
                    "POST",
                    server.path(version),
                    body=body,
                    headers={"Content-Type": "application/json", **(headers or {})},
                )
                response = connection.getresponse()
                raw = response.read()
                if response.will_close:
                    self.close(server)
                break
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine):
                self.close(server)
                if attempt == 2:
                    raise
        answer = Answer(response.status, raw, {k.lower(): v for k, v in response.getheaders()})
        header_length = answer.headers.get("inference-header-content-length")
        try:
            answer.data = strict_json(raw if header_length is None else raw[: int(header_length)])
        except ValueError:
            pass
        if header_length is not None and answer.data is not None:
            _attach_binary(answer, raw[int(header_length) :])
        server.ledger.answered(version, answer.status)
        self.check(answer, server.versions[version])
        return answer

    def close(self, server):
        connection = self._connections.pop(server.port, None)
        if connection is not None:
            connection.close()

    def check(self, answer, version):
        """A 200 is strict JSON in the OIP response shape; anything else a 400 or 413 with a message."""
        if answer.status != 200:
            assert answer.status in (400, 413), f"{answer.status}: {answer.body[:500]!r}"
            assert answer.data is not None, f"the {answer.status} body is not strict JSON: {answer.body[:300]!r}"
            assert isinstance(answer.error(), str) and answer.error(), answer.body[:300]
            return
        assert answer.data is not None, f"the 200 body is not strict JSON: {answer.body[:300]!r}"
        body = answer.data
        assert body["model_name"] == "fuzz" and body["model_version"] == version.name, body
        outputs = {o["name"]: o for o in version.signature["outputs"]}
        assert body["outputs"], body
        for output in body["outputs"]:
            spec = outputs[output["name"]]
            assert output["datatype"] == DATATYPES[spec["dtype"]], output
            shape = output["shape"]
            assert all(type(d) is int and d >= 0 for d in shape), output
            floating = spec["dtype"].startswith("float")
            if "binary" in output:  # binary_data_size bytes after the JSON header
                assert len(output["binary"]) == math.prod(shape) * np.dtype(spec["dtype"]).itemsize, output
                continue
            assert len(output["data"]) == math.prod(shape), output
            for value in output["data"]:
                if spec["dtype"] == "bool":
                    assert type(value) is bool, value
                elif floating:
                    assert type(value) in (int, float) or value in NON_FINITE, value
                else:
                    assert type(value) is int, value

    def check_outputs(self, answer, version, feeds, wanted=None):
        expected = version.run(feeds)
        got = {o["name"]: o for o in answer.data["outputs"]}
        assert set(got) == set(wanted if wanted is not None else expected), (got.keys(), wanted)
        for name, output in got.items():
            want = expected[name]
            assert output["shape"] == list(want.shape), (output["shape"], want.shape)
            if "binary" in output:
                got_array = np.frombuffer(output["binary"], dtype=want.dtype.newbyteorder("<"))
            else:
                got_array = np.array(
                    [NON_FINITE.get(v, v) if isinstance(v, str) else v for v in output["data"]], dtype=want.dtype
                )
            np.testing.assert_array_equal(got_array.reshape(want.shape), want)


def _attach_binary(answer, rest):
    """Give each output answered in binary its bytes (``output["binary"]``); the sizes must add up."""
    offset = 0
    for output in answer.data.get("outputs") or ():
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            assert "data" not in output, output
            output["binary"] = rest[offset : offset + size]
            offset += size
    assert offset == len(rest), f"binary outputs add up to {offset} bytes but {len(rest)} follow the header"


def binary_body(header, chunks, header_length=None):
    """(body, headers) of a request with the binary tensor data extension."""
    encoded = json.dumps(header).encode()
    length = len(encoded) if header_length is None else header_length
    return encoded + b"".join(chunks), {
        "Inference-Header-Content-Length": str(length),
        "Content-Type": "application/octet-stream",
    }


def raw_bytes(array):
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


HTTP_JSON = HttpJson()


class Grpc:
    """ModelInfer of the protocol's gRPC service (tritonclient's messages: the real peer's), with a
    channel per server. Errors must be INVALID_ARGUMENT or RESOURCE_EXHAUSTED with a message;
    each one that reached a version is counted under the HTTP status it stands for."""

    name = "grpc"
    CODES = {"INVALID_ARGUMENT": 400, "RESOURCE_EXHAUSTED": 413}

    def __init__(self):
        self._stubs = {}

    def _stub(self, server):
        stub = self._stubs.get(server.grpc_address)
        if stub is None:
            import grpc

            from tritonclient.grpc import service_pb2 as pb

            channel = grpc.insecure_channel(
                server.grpc_address,
                options=[("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)],
            )
            stub = self._stubs[server.grpc_address] = channel.unary_unary(
                "/inference.GRPCInferenceService/ModelInfer",
                request_serializer=lambda raw: raw,
                response_deserializer=pb.ModelInferResponse.FromString,
            )
        return stub

    def infer(self, server, version, message, *, counted=True):
        """Send ``message`` (a ModelInferRequest, or raw bytes); returns (code name, response or
        details). ``counted``: the message names a served version, so the server counts it (a
        message that names none may also get NOT_FOUND)."""
        import grpc

        raw = message if isinstance(message, bytes) else message.SerializeToString()
        try:
            response = self._stub(server)(raw, timeout=20)
            code, result = "OK", response
        except grpc.RpcError as exc:
            code, result = exc.code().name, exc.details()
        if counted:
            server.ledger.answered(version, 200 if code == "OK" else self.CODES.get(code, 500))
        if code != "OK":
            assert code in self.CODES or (not counted and code == "NOT_FOUND"), f"{code}: {result}"
            assert isinstance(result, str) and result, code
        else:
            assert result.model_name == "fuzz" and result.model_version == version, result
        return code, result

    def check_outputs(self, response, version, feeds, wanted=None):
        expected = version.run(feeds)
        assert [o.name for o in response.outputs] == [n for n in expected if wanted is None or n in wanted]
        for output, raw in zip(response.outputs, response.raw_output_contents):
            want = expected[output.name]
            assert list(output.shape) == list(want.shape) and output.datatype == DATATYPES[want.dtype.name]
            got = np.frombuffer(raw, dtype=want.dtype.newbyteorder("<")).reshape(want.shape)
            np.testing.assert_array_equal(got, want)


GRPC = Grpc()
# Transports fuzzed by the suite: JSON and binary bodies go through HTTP_JSON (the binary tensor
# data extension is a header and a body), gRPC through GRPC.
TRANSPORTS = [HTTP_JSON, GRPC]


# --- raw HTTP, for framing ------------------------------------------------------------------------


def raw_exchange(port, data, *, shut_write=False, timeout=5.0):
    """Send ``data`` on a fresh connection and read every response until the server closes it or
    ``timeout`` passes without one. Returns [(status, headers, body)], and whether it timed out."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            sock.sendall(data)
            if shut_write:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking everything: read what it said
        reader = sock.makefile("rb")
        answers, timed_out = [], False
        while True:
            try:
                line = reader.readline()
            except (socket.timeout, TimeoutError):
                timed_out = True
                break
            except ConnectionResetError:
                break
            if not line:
                break
            parts = line.split(b" ", 2)
            assert parts[0].startswith(b"HTTP/1.") and len(parts) >= 2, line
            headers = {}
            while True:
                header = reader.readline()
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = reader.read(int(headers.get("content-length", 0)))
            answers.append((int(parts[1]), headers, body))
            if headers.get("connection", "").lower() == "close":
                break
        return answers, timed_out
    finally:
        sock.close()
