"""Dynamic batching in a real berth-serve: concurrent clients with distinct inputs each get
exactly their own rows (equal to a direct onnxruntime run), batches of several requests form
(Prometheus berth_batch_size), shapes that cannot be concatenated run apart, and a client that
goes away does not break the batch it was queued in."""

import concurrent.futures
import re
import threading

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2

from .conftest import Client, Serve, deployment, infer_body, make_spec, write_bundle

DELAY_US = 30_000


@pytest.fixture(scope="module")
def server(digits, tmp_path_factory):
    models = digits["models"]
    folder = tmp_path_factory.mktemp("bundle")
    spec = make_spec([deployment("1", models["1"], 100)])
    spec["batching"] = {"max_batch_size": 16, "max_queue_delay_us": DELAY_US}
    write_bundle(folder, spec, [models["1"]])
    process = Serve(["--bundle", folder, "--grpc-port", "0", "--threads", "2"], folder / "serve.log").wait_ready()
    process.grpc_address = "127.0.0.1:" + re.search(r"grpc on 127\.0\.0\.1:(\d+)", process.log()).group(1)
    yield process
    process.stop()


def _batches(server):
    """(runs, rows) of version 1 from /metrics."""
    status, text = Client(server.port).get("/metrics")
    assert status == 200
    family = next(f for f in text_string_to_metric_families(text) if f.name == "berth_batch_size")
    samples = {s.name: s.value for s in family.samples if s.labels.get("version") == "1" and "le" not in s.labels}
    return samples.get("berth_batch_size_count", 0), samples.get("berth_batch_size_sum", 0)


def test_concurrent_clients_get_their_own_rows(server, digits):
    x = digits["x"]
    expected = digits["models"]["1"].run(x=x[:200])[0]
    runs_before, rows_before = _batches(server)
    slices = [(i * 3, i * 3 + 1 + i % 3) for i in range(48)]  # 1 to 3 rows each, all distinct

    def ask(bounds):
        client = Client(server.port)
        try:
            status, body = client.post("/v2/models/digits/infer", infer_body(x[bounds[0] : bounds[1]]))
        finally:
            client.close()
        assert status == 200, body
        output = body["outputs"][0]
        return bounds, np.array(output["data"], np.float32).reshape(output["shape"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        for (start, end), logits in pool.map(ask, slices):
            np.testing.assert_array_equal(logits, expected[start:end])
    runs, rows = _batches(server)
    assert rows - rows_before == sum(end - start for start, end in slices)
    assert runs - runs_before < len(slices) / 2, "requests should share batches"


def test_shapes_that_cannot_be_concatenated_run_apart(server, digits, tmp_path):
    """The digits MLP takes [batch, 64]: a request with another width is refused on its own,
    without failing the valid requests queued at the same time."""
    x = digits["x"][:2]
    barrier = threading.Barrier(6)

    def ask(width):
        client = Client(server.port)
        barrier.wait()
        try:
            return client.post("/v2/models/digits/infer", infer_body(np.zeros((1, width)) if width != 64 else x))
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(ask, [64, 64, 63, 64, 64, 64]))
    assert [status for status, _ in answers] == [200, 200, 400, 200, 200, 200]
    expected = digits["models"]["1"].run(x=x)[0]
    for status, body in answers:
        if status == 200:
            np.testing.assert_array_equal(np.array(body["outputs"][0]["data"], np.float32).reshape(2, 10), expected)


def test_a_client_that_goes_away_does_not_break_the_batch(server, digits):
    """gRPC clients whose deadline passes while they wait in the queue are cancelled; the
    requests queued beside them still get their answers."""
    x = digits["x"][:8].astype(np.float32)
    expected = digits["models"]["1"].run(x=x)[0]

    def request(row):
        message = service_pb2.ModelInferRequest(model_name="digits")
        message.inputs.add(name="x", datatype="FP32", shape=[1, 64])
        message.raw_input_contents.append(x[row : row + 1].tobytes())
        return message

    with grpc.insecure_channel(server.grpc_address) as channel:
        infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=service_pb2.ModelInferResponse.FromString,
        )
        assert infer(request(0), timeout=10).model_name == "digits"  # connected
        calls = [infer.future(request(row), timeout=0.005 if row % 2 else 10) for row in range(8)]
        for row, call in enumerate(calls):
            if row % 2:
                with pytest.raises(grpc.RpcError) as raised:
                    call.result()
                assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            else:
                logits = np.frombuffer(call.result().raw_output_contents[0], np.float32)
                np.testing.assert_array_equal(logits, expected[row])
    status, body = Client(server.port).post("/v2/models/digits/infer", infer_body(x[:1]))
    assert status == 200, body
