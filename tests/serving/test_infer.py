"""The Open Inference Protocol v2 paths of a real berth-serve (uvicorn, bundle mode): metadata,
readiness, inference against a direct onnxruntime run, validation, pinning, the weighted split
and /metrics."""

import collections
import http.client
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ROOT, Client, Serve, deployment, infer_body, make_spec, write_bundle

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(digits, tmp_path_factory):
    """digits "1" at 90 % and "2" at 10 %, a 64 KiB request limit."""
    models = digits["models"]
    folder = tmp_path_factory.mktemp("bundle")
    spec = make_spec([deployment("1", models["1"], 90), deployment("2", models["2"], 10)], max_request_bytes=LIMIT)
    write_bundle(folder, spec, models.values())
    process = Serve(["--bundle", folder], folder / "serve.log").wait_ready()
    yield process
    process.stop()


@pytest.fixture
def client(server):
    client = Client(server.port)
    yield client
    client.close()


def test_it_answers_health_and_server_metadata(client):
    assert client.get("/v2/health/live") == (200, {"live": True})
    assert client.get("/v2/health/ready") == (200, {"ready": True})
    assert client.get("/v2") == (200, {"name": "berth", "version": "0.1.0", "extensions": ["binary_tensor_data"]})


def test_it_describes_the_model_and_its_versions(client):
    status, metadata = client.get("/v2/models/digits")
    assert status == 200
    assert metadata == {
        "name": "digits",
        "versions": ["1", "2"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
    }
    status, version = client.get("/v2/models/digits/versions/2")
    assert status == 200 and version["versions"] == ["2"]
    assert client.get("/v2/models/digits/ready") == (200, {"name": "digits", "ready": True})
    assert client.get("/v2/models/digits/versions/1/ready") == (200, {"name": "digits", "ready": True})


@pytest.mark.parametrize("version", ["1", "2"])
def test_it_matches_a_direct_onnxruntime_run(client, digits, version):
    x = digits["x"][:5]
    status, body = client.post(f"/v2/models/digits/versions/{version}/infer", infer_body(x))
    assert status == 200, body
    (output,) = body["outputs"]
    assert (body["model_name"], body["model_version"]) == ("digits", version)
    assert (output["name"], output["datatype"], output["shape"]) == ("logits", "FP32", [5, 10])
    (expected,) = digits["models"][version].run(x=x)
    np.testing.assert_array_equal(np.array(output["data"], dtype=np.float32).reshape(5, 10), expected)


def test_it_pins_versions_and_refuses_unknown_ones(client):
    assert client.post("/v2/models/digits/versions/2/infer", infer_body(np.zeros((1, 64))))[1]["model_version"] == "2"
    status, body = client.post("/v2/models/digits/versions/9/infer", infer_body(np.zeros((1, 64))))
    assert status == 404 and "no version '9'" in body["error"]
    assert client.get("/v2/models/digits/versions/9")[0] == 404
    assert client.get("/v2/models/digits/versions/9/ready")[0] == 404
    status, body = client.post("/v2/models/mnist/infer", infer_body(np.zeros((1, 64))))
    assert status == 404 and "unknown model 'mnist'" in body["error"]
    assert client.get("/v2/models/mnist")[0] == 404


ROW = [0.5] * 64


@pytest.mark.parametrize(
    "body, fragments",
    [
        (b"{not json", ["not valid JSON"]),
        (b"", ["no body"]),
        ([1, 2], ["JSON object"]),
        ({"inputs": []}, ["'inputs'", "non-empty"]),
        ({"inputs": [{"shape": [1, 64], "datatype": "FP32", "data": ROW}]}, ["inputs[0]", "'name'"]),
        ({"inputs": [{"name": "y", "shape": [1, 64], "datatype": "FP32", "data": ROW}]}, ["unknown input 'y'", "x"]),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": ROW}] * 2}, ["'x'", "twice"]),
        (
            {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "INT64", "data": [1] * 64}]},
            ["input 'x'", "INT64", "expects FP32"],
        ),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "BYTES", "data": ["a"] * 64}]}, ["'x'", "BYTES"]),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP33", "data": ROW}]}, ["'x'", "FP33", "FP32"]),
        (
            {"inputs": [{"name": "x", "shape": [1, 63], "datatype": "FP32", "data": ROW[:63]}]},
            ["input 'x'", "[1, 63]", "[-1, 64]", "dimension 1 must be 64"],
        ),
        (
            {"inputs": [{"name": "x", "shape": [64], "datatype": "FP32", "data": ROW}]},
            ["input 'x'", "1 dimensions", "expects 2", "[-1, 64]"],
        ),
        (
            {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": ROW[:60]}]},
            ["input 'x'", "60 values", "needs 64"],
        ),
        (
            {"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32", "data": [ROW]}]},
            ["input 'x'", "nested data has shape [1, 64]", "[2, 64]"],
        ),
        (
            {"inputs": [{"name": "x", "shape": [2, 64], "datatype": "FP32", "data": [ROW, ROW[:10]]}]},
            ["input 'x'", "regular"],
        ),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": ["a"] * 64}]}, ["input 'x'", "FP32"]),
        ({"inputs": [{"name": "x", "shape": "1x64", "datatype": "FP32", "data": ROW}]}, ["input 'x'", "'shape'"]),
        ({"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32"}]}, ["input 'x'", "no 'data'"]),
        (
            {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": ROW}], "outputs": [{"name": "p"}]},
            ["unknown output 'p'", "logits"],
        ),
    ],
)
def test_it_rejects_malformed_requests_with_a_message_that_says_why(client, body, fragments):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer = client.post("/v2/models/digits/infer", raw=raw)
    assert status == 400, answer
    for fragment in fragments:
        assert fragment in answer["error"], (fragment, answer["error"])


def test_it_refuses_a_body_over_the_limit_and_keeps_the_connection_usable(client):
    status, body = client.post("/v2/models/digits/infer", raw=b"[" + b"0," * LIMIT + b"0]")
    assert status == 413 and f"{LIMIT:,} bytes" in body["error"]
    assert client.post("/v2/models/digits/infer", infer_body(np.zeros((1, 64))))[0] == 200


def test_it_answers_405_for_a_wrong_method(client):
    status, body = client.get("/v2/models/digits/infer")
    assert status == 405 and "POST" in body["error"]


def test_it_serves_a_triton_style_client(server, digits):
    """What a generic OIP v2 client does, with plain http.client: server and model readiness,
    metadata, then infer with nested data, a request id and an explicit output."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

    def call(method, path, payload=None):
        connection.request(
            method,
            path,
            body=json.dumps(payload) if payload is not None else None,
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    assert call("GET", "/v2/health/live")[0] == 200
    assert call("GET", "/v2/health/ready")[0] == 200
    assert call("GET", "/v2/models/digits/versions/1/ready") == (200, {"name": "digits", "ready": True})
    _, metadata = call("GET", "/v2/models/digits/versions/1")
    tensor = metadata["inputs"][0]
    x = digits["x"][:3]
    status, body = call(
        "POST",
        "/v2/models/digits/versions/1/infer",
        {
            "id": "request-42",
            "inputs": [
                {
                    "name": tensor["name"],
                    "shape": [3, tensor["shape"][1]],
                    "datatype": tensor["datatype"],
                    "data": x.tolist(),
                }
            ],
            "outputs": [{"name": metadata["outputs"][0]["name"]}],
            "parameters": {"binary_data_output": False},
        },
    )
    connection.close()
    assert status == 200, body
    assert body["id"] == "request-42"
    assert [o["name"] for o in body["outputs"]] == ["logits"]
    (expected,) = digits["models"]["1"].run(x=x)
    np.testing.assert_array_equal(np.array(body["outputs"][0]["data"], dtype=np.float32).reshape(3, 10), expected)


def test_it_splits_traffic_by_weight(client):
    body = infer_body(np.zeros((1, 64)))
    counts = collections.Counter(client.post("/v2/models/digits/infer", body)[1]["model_version"] for _ in range(2000))
    assert abs(counts["1"] / 2000 - 0.90) <= 0.03, counts
    assert counts["1"] + counts["2"] == 2000


def test_it_exposes_prometheus_metrics(client):
    client.post("/v2/models/digits/versions/2/infer", infer_body(np.zeros((1, 64))))
    client.post("/v2/models/digits/versions/2/infer", {"inputs": [{"name": "nope"}]})
    status, text = client.get("/metrics")
    assert status == 200
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = {
        s.labels["version"]: s.value for s in families["berth_requests"].samples if s.name == "berth_requests_total"
    }
    assert requests["2"] >= 2 and set(requests) >= {"2"}
    failures = [
        s
        for s in families["berth_request_failures"].samples
        if s.labels == {"model": "digits", "version": "2", "kind": "invalid_input"}
    ]
    assert failures and failures[0].value >= 1
    buckets = [
        s
        for s in families["berth_request_duration_seconds"].samples
        if s.name.endswith("_bucket") and s.labels["version"] == "2"
    ]
    assert buckets and buckets[-1].labels["le"] == "+Inf" and buckets[-1].value >= 2
    loaded = {s.labels["version"]: s.value for s in families["berth_model_version_loaded"].samples}
    assert loaded == {"1": 1.0, "2": 1.0}


def test_the_load_generator_sends_steady_traffic_with_drift_and_malformed_requests(server):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "serving.loadgen",
            "--url",
            f"http://127.0.0.1:{server.port}",
            "--model",
            "digits",
            "--rate",
            "40",
            "--duration",
            "2",
            "--drift-after",
            "1",
            "--drift-for",
            "1",
            "--malformed-every",
            "5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "input 'x'" in result.stdout and "drift from 1 s for 1 s" in result.stdout
    sent, ok, rejected = (
        int(v)
        for v in re.search(r"sent (\d+), ok (\d+), rejected (\d+), failed 0, unreachable 0", result.stdout).groups()
    )
    assert 70 <= sent <= 82 and rejected == sent // 5 and ok == sent - rejected
