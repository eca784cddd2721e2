"""Request decoding and response encoding, without a server; and the runtime's independence
from the Django project."""

import json
import subprocess
import sys

import numpy as np
import pytest

from serving.protocol import BadRequest, InvalidInput, Signature, decode_request, encode_response, response_prefix

from .conftest import ROOT

SIGNATURE = Signature.from_io_signature(
    {
        "inputs": [
            {"name": "x", "dtype": "float32", "shape": ["batch", 2, 2], "dynamic_axes": [0]},
            {"name": "mask", "dtype": "uint8", "shape": ["batch"], "dynamic_axes": [0]},
        ],
        "outputs": [{"name": "y", "dtype": "float32", "shape": ["batch"], "dynamic_axes": [0]}],
    }
)


def request(x_data, x_shape=(1, 2, 2), mask=(1,), **extra):
    return {
        "inputs": [
            {"name": "x", "shape": list(x_shape), "datatype": "FP32", "data": x_data},
            {"name": "mask", "shape": [len(mask)], "datatype": "UINT8", "data": list(mask)},
        ],
        **extra,
    }


def test_it_takes_flat_and_nested_data():
    flat, _, _ = decode_request(request([1, 2, 3, 4]), SIGNATURE)
    nested, _, _ = decode_request(request([[[1, 2], [3, 4]]]), SIGNATURE)
    np.testing.assert_array_equal(flat["x"], nested["x"])
    assert flat["x"].dtype == np.float32 and flat["x"].shape == (1, 2, 2)
    assert flat["mask"].dtype == np.uint8


def test_it_returns_the_requested_outputs_and_the_id():
    _, wanted, request_id = decode_request(request([1, 2, 3, 4], outputs=[{"name": "y"}], id="r1"), SIGNATURE)
    assert (wanted, request_id) == (["y"], "r1")


@pytest.mark.parametrize(
    "payload, error, fragment",
    [
        (request([1, 2, 3, 4], mask=(256,)), InvalidInput, "outside the UINT8 range"),
        (request([1, 2, 3, 4], mask=(-1,)), InvalidInput, "outside the UINT8 range"),
        (request([[1, 2], [3, 4]], x_shape=(1, 4)), InvalidInput, "has 2 dimensions but the model expects 3"),
        (request([1, 2, 3]), InvalidInput, "3 values but shape [1, 2, 2] needs 4"),
        (request([[1, 2, 3, 4]]), InvalidInput, "nested data has shape [1, 4]"),
        (
            {"inputs": [{"name": "x", "shape": [1, 2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
            InvalidInput,
            "missing input 'mask' (UINT8, shape [-1])",
        ),
        (request([1, 2, 3, 4], id=7), BadRequest, "'id' must be a string"),
        (request([1, 2, 3, 4], outputs="y"), BadRequest, "'outputs' must be a list"),
        ({"inputs": [{"name": "x", "shape": [1, -2, 2], "datatype": "FP32", "data": []}]}, BadRequest, "non-negative"),
        ({"inputs": ["x"]}, BadRequest, "inputs[0] must be an object"),
    ],
)
def test_it_says_what_is_wrong(payload, error, fragment):
    with pytest.raises(error) as raised:
        decode_request(payload, SIGNATURE)
    assert fragment in raised.value.message


def test_it_encodes_outputs_that_read_back_exactly():
    arrays = [
        np.array([[0.1, -3.4028235e38, 1e-45]], np.float32),
        np.array([1.0, 2.5], np.float64),
        np.array([0.1, 65504], np.float16),
        np.array([[-(2**63), 2**63 - 1]], np.int64),
        np.array([True, False]),
        np.zeros((0, 2), np.float32),
    ]
    names = ["f32", "f64", "f16", "i64", "b", "empty"]
    body = json.loads(encode_response(response_prefix("m", "1"), None, names, arrays))
    assert body["model_name"] == "m" and body["model_version"] == "1" and "id" not in body
    for output, array in zip(body["outputs"], arrays):
        assert output["shape"] == list(array.shape)
        np.testing.assert_array_equal(np.array(output["data"], dtype=array.dtype).reshape(array.shape), array)
    assert [o["datatype"] for o in body["outputs"]] == ["FP32", "FP64", "FP16", "INT64", "BOOL", "FP32"]


def test_it_writes_non_finite_outputs_as_strings_so_the_body_stays_json():
    def strict(token):
        raise ValueError(f"{token} is not JSON")

    for dtype in (np.float16, np.float32, np.float64):
        raw = encode_response(
            response_prefix("m", "1"), 'a"b', ["y"], [np.array([np.nan, np.inf, -np.inf, 1.5], dtype)]
        )
        body = json.loads(raw, parse_constant=strict)
        assert body["id"] == 'a"b'
        assert body["outputs"][0]["data"] == ["NaN", "Infinity", "-Infinity", 1.5]


def test_it_imports_nothing_of_the_django_project():
    """A serving host installs numpy, onnxruntime, uvicorn and prometheus-client only."""
    code = (
        "import sys, serving.cli, serving.app, serving.loadgen, serving.grpc_server\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'rest_framework', 'dashboard', 'registry', 'jobs', 'monitoring', 'celery', 'torch', 'sklearn') "
        "or (m.startswith('berth') and m != 'berth' and not m.startswith('berth.core')))\n"
        "print(bad)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
