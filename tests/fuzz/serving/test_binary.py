"""Bodies with the binary tensor data extension against a real berth-serve: valid ones (some
inputs binary, some JSON, outputs in binary or JSON) get a direct onnxruntime run's answer;
lying header lengths, binary_data_size values that do not add up, truncated binary parts and
extra bytes get a 400 or 413 with a message; never a 5xx."""

import json

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, note, seed, settings

from .conftest import LIMIT, SEED, examples
from .test_json import FUZZ, feeds
from .transports import HTTP_JSON, binary_body, raw_bytes


@st.composite
def binary_requests(draw, server):
    """(version, feeds, header, chunks, binary outputs wanted) of a valid binary request."""
    version = server.versions[draw(st.sampled_from(sorted(server.versions)))]
    inputs = draw(feeds(version))
    tensors, chunks = [], []
    for name, array in inputs.items():
        tensor = {
            "name": name,
            "shape": list(array.shape),
            "datatype": {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64", "bool": "BOOL"}[
                array.dtype.name
            ],
        }
        if draw(st.booleans()) or not chunks and name == list(inputs)[-1]:
            tensor["parameters"] = {"binary_data_size": array.nbytes}
            chunks.append(raw_bytes(array))
        else:
            tensor["data"] = array.ravel().tolist()
        tensors.append(tensor)
    header = {"inputs": tensors}
    binary_out = draw(st.booleans())
    if binary_out:
        header["parameters"] = {"binary_data_output": True}
    return version, inputs, header, chunks


@seed(SEED)
@settings(max_examples=examples(40), **FUZZ)
@given(data=st.data())
def test_valid_binary_requests_get_the_answer_of_a_direct_run(server, data):
    version, inputs, header, chunks = data.draw(binary_requests(server))
    body, headers = binary_body(header, chunks)
    note(f"seed {SEED}; version {version.name}: {headers} {body[:1000]!r}")
    answer = HTTP_JSON.infer(server, version.name, body, headers=headers)
    assert answer.status == 200, answer
    HTTP_JSON.check_outputs(answer, version, inputs)


def _lie(draw, header, chunks):
    """One inconsistency between the JSON header, its declared length and the binary part."""
    binary = [t for t in header["inputs"] if "parameters" in t]
    kind = draw(
        st.sampled_from(
            ["header-length", "size", "truncate", "extra", "no-header-length", "both", "size-type", "splice"]
        )
    )
    header_length = None
    if kind == "size" and binary:
        tensor = draw(st.sampled_from(binary))
        tensor["parameters"]["binary_data_size"] += draw(
            st.integers(-64, 64).filter(bool) | st.sampled_from([2**31, 2**48, 2**63 - 1, -(2**31)])
        )
    elif kind == "size-type" and binary:
        draw(st.sampled_from(binary))["parameters"]["binary_data_size"] = draw(
            st.sampled_from([None, "8", 1.0, True, [], {}, -1, 2**64])
        )
    elif kind == "both" and binary:
        draw(st.sampled_from(binary))["data"] = [0]
    elif kind == "truncate":
        joined = b"".join(chunks)
        chunks = [joined[: draw(st.integers(0, max(0, len(joined) - 1)))]]
    elif kind == "extra":
        chunks = chunks + [draw(st.binary(min_size=1, max_size=64))]
    elif kind == "splice":
        joined = b"".join(chunks)
        at = draw(st.integers(0, len(joined)))
        chunks = [joined[:at] + draw(st.binary(max_size=16)) + joined[at + draw(st.integers(0, 16)) :]]
    encoded = len(json.dumps(header).encode())
    if kind == "header-length":
        header_length = draw(
            st.sampled_from([-1, 0, 1, encoded - 1, encoded + 1, encoded + 10**6, 2**63, "x", "1e3", " 12", ""])
        )
    elif kind == "no-header-length":
        header_length = "omit"
    return kind, header, chunks, header_length


@seed(SEED)
@settings(max_examples=examples(120), **FUZZ)
@given(data=st.data())
def test_lying_binary_requests_get_a_4xx_with_a_message(server, data):
    version, _, header, chunks = data.draw(binary_requests(server))
    kind, header, chunks, header_length = _lie(data.draw, header, chunks)
    body, headers = binary_body(header, chunks, None if header_length == "omit" else header_length)
    if header_length == "omit":
        del headers["Inference-Header-Content-Length"]
    note(f"seed {SEED}; {kind}; version {version.name}: {headers} {body[:1000]!r}")
    answer = HTTP_JSON.infer(server, version.name, body, headers=headers)  # checks the answer
    if len(body) > LIMIT:
        assert answer.status == 413, answer


def test_a_binary_non_finite_input_is_refused_naming_the_tensor(server):
    x = np.array([[1.0, np.nan, 2.0, 3.0]], np.float32)
    body, headers = binary_body(
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]},
        [raw_bytes(x)],
    )
    answer = HTTP_JSON.infer(server, "1", body, headers=headers)
    assert answer.status == 400 and "input 'x'" in answer.error() and "finite" in answer.error(), answer
