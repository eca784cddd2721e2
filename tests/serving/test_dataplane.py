"""Triton's own clients against a real berth-serve: tritonclient.http with the binary tensor data
extension (its default) and with JSON, tritonclient.grpc, outputs equal to a direct onnxruntime
run; malformed binary bodies and gRPC messages answered 400 / INVALID_ARGUMENT with a message
while the server keeps serving.

This process imports tritonclient's generated protos only: berth-serve's own (serving/proto)
live in the same protobuf package and cannot be imported beside them, and berth-serve runs in
its own process here anyway."""

import json
import re
import struct

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from .conftest import Client, Serve, deployment, infer_body, make_spec, serve_args, write_bundle

LIMIT = 1 << 20


@pytest.fixture(scope="module")
def server(digits, tmp_path_factory):
    models = digits["models"]
    folder = tmp_path_factory.mktemp("bundle")
    spec = make_spec([deployment("1", models["1"], 100), deployment("2", models["2"], 0)], max_request_bytes=LIMIT)
    write_bundle(folder, spec, models.values())
    process = Serve(["--bundle", folder, "--grpc-port", "0"], folder / "serve.log").wait_ready()
    process.grpc_address = "127.0.0.1:" + re.search(r"grpc on 127\.0\.0\.1:(\d+)", process.log()).group(1)
    yield process
    process.stop()


@pytest.fixture
def http_client(server):
    client = triton_http.InferenceServerClient(f"127.0.0.1:{server.port}")
    yield client
    client.close()


def _infer_http(client, x, version, *, binary_in, binary_out=None, outputs=True):
    tensor = triton_http.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary_in)
    requested = [triton_http.InferRequestedOutput("logits", binary_data=binary_out)] if outputs else None
    return client.infer("digits", [tensor], model_version=version, outputs=requested)


@pytest.mark.parametrize("version", ["1", "2"])
def test_tritonclient_http_with_its_defaults_gets_onnxruntimes_outputs(http_client, digits, version):
    """Defaults: binary input, no outputs named (so binary_data_output), as Triton's examples do."""
    assert http_client.is_server_live() and http_client.is_server_ready()
    assert http_client.is_model_ready("digits", version)
    assert "binary_tensor_data" in http_client.get_server_metadata()["extensions"]
    x = digits["x"][:7].astype(np.float32)
    result = _infer_http(http_client, x, version, binary_in=True, outputs=False)
    (expected,) = digits["models"][version].run(x=x)
    assert result.get_response()["model_version"] == version
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == expected.nbytes
    np.testing.assert_array_equal(result.as_numpy("logits"), expected)


@pytest.mark.parametrize("binary_in, binary_out", [(False, False), (True, False), (False, True)])
def test_tritonclient_http_in_json_and_mixed(http_client, digits, binary_in, binary_out):
    x = digits["x"][10:13].astype(np.float32)
    result = _infer_http(http_client, x, "1", binary_in=binary_in, binary_out=binary_out)
    output = result.get_response()["outputs"][0]
    assert ("data" in output) == (not binary_out)
    np.testing.assert_array_equal(result.as_numpy("logits"), digits["models"]["1"].run(x=x)[0])


def test_tritonclient_http_sees_the_servers_message_for_bad_input(http_client):
    tensor = triton_http.InferInput("x", [1, 63], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 63), np.float32))
    with pytest.raises(InferenceServerException, match="dimension 1 must be 64"):
        http_client.infer("digits", [tensor])


def _binary_body(header, *chunks):
    text = json.dumps(header).encode()
    return text + b"".join(chunks), len(text)


def _x_input(shape=(1, 64), size=None, datatype="FP32"):
    size = 4 * int(np.prod(shape)) if size is None else size
    return {"name": "x", "shape": list(shape), "datatype": datatype, "parameters": {"binary_data_size": size}}


ROW = np.full((1, 64), 0.5, np.float32).tobytes()


@pytest.mark.parametrize(
    "body, header_length, fragments",
    [
        # header length beyond the body
        (ROW, 10_000, ["Inference-Header-Content-Length is 10000", "body has"]),
        # not a number
        (ROW, "ten", ["Inference-Header-Content-Length must be an integer"]),
        # sizes that do not add up: more bytes than declared, fewer, and a size that does not fit the shape
        (*_binary_body({"inputs": [_x_input()]}, ROW, b"\0" * 8), ["binary part has 264 bytes", "add up to 256"]),
        (*_binary_body({"inputs": [_x_input()]}, ROW[:100]), ["goes past the end of the body"]),
        (*_binary_body({"inputs": [_x_input(size=252)]}, ROW[:252]), ["binary_data_size is 252", "need 256"]),
        # huge declared sizes
        (
            *_binary_body({"inputs": [_x_input(shape=(1 << 40, 64), size=1 << 48)]}, ROW),
            ["binary_data_size 281474976710656 goes past the end of the body"],
        ),
        (*_binary_body({"inputs": [_x_input(size=1 << 48)]}, ROW), ["binary_data_size is 281474976710656", "need 256"]),
        # unknown datatype, BYTES tensors
        (*_binary_body({"inputs": [_x_input(datatype="FP33")]}, ROW), ["'x'", "FP33", "FP32"]),
        (*_binary_body({"inputs": [_x_input(datatype="BYTES")]}, struct.pack("<I", 3) + b"abc"), ["'x'", "BYTES"]),
        # binary_data_size without the header, negative, or with data as well
        (json.dumps({"inputs": [_x_input()]}).encode(), None, ["no binary part", "Inference-Header-Content-Length"]),
        (*_binary_body({"inputs": [_x_input(size=-4)]}, ROW), ["binary_data_size must be a non-negative integer"]),
        (*_binary_body({"inputs": [dict(_x_input(), data=[0.5] * 64)]}, ROW), ["both 'data'", "binary_data_size"]),
        # a JSON header that is not JSON
        (b"{inputs" + ROW, 7, ["not valid JSON"]),
    ],
)
def test_malformed_binary_bodies_get_a_400_and_the_server_keeps_serving(server, body, header_length, fragments):
    client = Client(server.port)
    headers = {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
    status, answer = client.post("/v2/models/digits/infer", raw=body, headers=headers)
    assert status == 400, answer
    for fragment in fragments:
        assert fragment in answer["error"], (fragment, answer["error"])
    status, answer = client.post("/v2/models/digits/infer", infer_body(np.zeros((1, 64))))
    assert status == 200, answer
    client.close()


# --- gRPC ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpc_client(server):
    client = triton_grpc.InferenceServerClient(server.grpc_address)
    yield client
    client.close()


@pytest.mark.parametrize("version", ["1", "2"])
def test_tritonclient_grpc_gets_onnxruntimes_outputs(grpc_client, digits, version):
    assert grpc_client.is_server_live() and grpc_client.is_server_ready()
    assert grpc_client.is_model_ready("digits", version)
    assert grpc_client.get_server_metadata(as_json=True)["extensions"] == ["binary_tensor_data"]
    metadata = grpc_client.get_model_metadata("digits", as_json=True)
    assert metadata["versions"] == ["1", "2"] and metadata["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": ["-1", "64"]}
    ]
    x = digits["x"][20:25].astype(np.float32)
    tensor = triton_grpc.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = grpc_client.infer(
        "digits",
        [tensor],
        model_version=version,
        request_id="r-7",
        outputs=[triton_grpc.InferRequestedOutput("logits")],
    )
    response = result.get_response()
    assert (response.model_version, response.id) == (version, "r-7")
    np.testing.assert_array_equal(result.as_numpy("logits"), digits["models"][version].run(x=x)[0])


def _stub_call(server, method, request, response_type):
    with grpc.insecure_channel(server.grpc_address) as channel:
        call = channel.unary_unary(
            f"/inference.GRPCInferenceService/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_type.FromString,
        )
        return call(request, timeout=10)


def test_typed_contents_work_like_raw_ones(server, digits):
    x = digits["x"][:2].astype(np.float32)
    request = service_pb2.ModelInferRequest(model_name="digits")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 64])
    tensor.contents.fp32_contents.extend(x.ravel().tolist())
    response = _stub_call(server, "ModelInfer", request, service_pb2.ModelInferResponse)
    logits = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(2, 10)
    np.testing.assert_array_equal(logits, digits["models"]["1"].run(x=x)[0])


def _infer_request(shape=(1, 64), datatype="FP32", raw=(ROW,), model="digits", version="", **tensor):
    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    request.inputs.add(name=tensor.pop("name", "x"), datatype=datatype, shape=list(shape), **tensor)
    request.raw_input_contents.extend(raw)
    return request


@pytest.mark.parametrize(
    "request_, code, fragments",
    [
        (_infer_request(shape=(1, 63), raw=(ROW[:252],)), "INVALID_ARGUMENT", ["dimension 1 must be 64"]),
        (_infer_request(raw=(ROW[:100],)), "INVALID_ARGUMENT", ["raw_input_contents[0] has 100 bytes", "need 256"]),
        (_infer_request(raw=(ROW, ROW)), "INVALID_ARGUMENT", ["raw_input_contents has 2 entries", "1 inputs"]),
        (_infer_request(datatype="BYTES", raw=(b"abc",)), "INVALID_ARGUMENT", ["'x'", "BYTES"]),
        (_infer_request(datatype="FP33"), "INVALID_ARGUMENT", ["'x'", "FP33"]),
        (_infer_request(name="y"), "INVALID_ARGUMENT", ["unknown input 'y'"]),
        (_infer_request(shape=(1 << 40, 64)), "INVALID_ARGUMENT", ["has 256 bytes", "need 281474976710656"]),
        (_infer_request(raw=()), "INVALID_ARGUMENT", ["contents.fp32_contents has 0 values", "needs 64"]),
        (_infer_request(version="9"), "NOT_FOUND", ["no version '9'"]),
        (_infer_request(model="mnist"), "NOT_FOUND", ["unknown model 'mnist'"]),
        (
            _infer_request(shape=(5000, 64), raw=(b"\0" * (5000 * 256),)),
            "RESOURCE_EXHAUSTED",
            [f"limit of {LIMIT:,} bytes"],
        ),
    ],
)
def test_bad_grpc_requests_get_a_status_with_a_message_and_the_server_keeps_serving(
    server, grpc_client, request_, code, fragments
):
    with pytest.raises(grpc.RpcError) as raised:
        _stub_call(server, "ModelInfer", request_, service_pb2.ModelInferResponse)
    assert raised.value.code().name == code
    for fragment in fragments:
        assert fragment in raised.value.details(), (fragment, raised.value.details())
    tensor = triton_grpc.InferInput("x", [1, 64], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 64), np.float32))
    assert grpc_client.infer("digits", [tensor]).as_numpy("logits").shape == (1, 10)


def test_garbage_bytes_are_invalid_argument(server):
    with grpc.insecure_channel(server.grpc_address) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as raised:
            call(b"\xff\xff\xff", timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a ModelInferRequest" in raised.value.details()


def test_the_standard_health_service_says_serving(server):
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_grpc_requests_are_counted_in_telemetry_like_http_ones(serve, dashboard, digits, tmp_path):
    """The same error kinds per version as over HTTP: a pinned version, bad input, a message over
    the endpoint's limit, and one routed nowhere (not counted)."""
    from .conftest import wait_until

    models = digits["models"]
    spec = make_spec(
        [deployment("1", models["1"], 100), deployment("2", models["2"], 0)],
        max_request_bytes=4096,
        telemetry={"url": "/api/v1/telemetry/", "flush_seconds": 0.5, "flush_requests": 1000},
    )
    dashboard.publish(spec, models.values())
    process = serve(*serve_args(dashboard.url, tmp_path / "cache", "--poll-seconds", "0.2", "--grpc-port", "0"))
    address = "127.0.0.1:" + re.search(r"grpc on 127\.0\.0\.1:(\d+)", process.log()).group(1)
    x = digits["x"][:1].astype(np.float32)
    with grpc.insecure_channel(address) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=service_pb2.ModelInferResponse.FromString,
        )
        for version, raw, code in (
            [("1", x.tobytes(), None)] * 6
            + [("2", ROW[:100], "INVALID_ARGUMENT")] * 2
            + [("1", b"\0" * 8192, "RESOURCE_EXHAUSTED"), ("7", x.tobytes(), "NOT_FOUND")]
        ):
            request = _infer_request(shape=(len(raw) // 256 or 1, 64), raw=(raw,), version=version)
            if code is None:
                assert infer(request, timeout=10).model_version == version
            else:
                with pytest.raises(grpc.RpcError) as raised:
                    infer(request, timeout=10)
                assert raised.value.code().name == code
    expected = {
        "1": {"requests": 7, "errors": 1, "error_kinds": {"too_large": 1}},
        "2": {"requests": 2, "errors": 2, "error_kinds": {"invalid_input": 2}},
    }
    wait_until(lambda: dashboard.totals() == expected, timeout=20, message=f"{expected}, got {dashboard.totals()}")
