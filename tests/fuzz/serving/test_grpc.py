"""ModelInfer messages of the protocol's gRPC service against a real berth-serve: valid ones
(raw or typed contents) get a direct onnxruntime run's answer; raw contents of the wrong size,
typed contents in the wrong field or of the wrong length, mismatched shapes and datatypes,
missing and repeated inputs, non-finite values and bytes that are no message at all get
INVALID_ARGUMENT (or RESOURCE_EXHAUSTED) with a message; never INTERNAL or UNKNOWN."""

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, note, seed, settings

from .conftest import SEED, examples
from .test_json import FUZZ, feeds
from .transports import DATATYPES, GRPC, raw_bytes

TYPED = {"float32": "fp32_contents", "float64": "fp64_contents", "int64": "int64_contents", "bool": "bool_contents"}
FIELDS = [
    "fp32_contents",
    "fp64_contents",
    "int64_contents",
    "int_contents",
    "uint_contents",
    "uint64_contents",
    "bool_contents",
]


def _pb():
    from tritonclient.grpc import service_pb2 as pb

    return pb


@st.composite
def grpc_requests(draw, server):
    """(version, feeds, ModelInferRequest): raw contents for all inputs, or typed ones (FP16 has
    no typed field, so a version with an FP16 input always goes raw)."""
    pb = _pb()
    version = server.versions[draw(st.sampled_from(sorted(server.versions)))]
    inputs = draw(feeds(version))
    raw = draw(st.booleans()) or any(a.dtype == np.float16 for a in inputs.values())
    request = pb.ModelInferRequest(model_name="fuzz", model_version=version.name, id=draw(st.text(max_size=8)))
    for name, array in inputs.items():
        tensor = request.inputs.add(name=name, datatype=DATATYPES[array.dtype.name], shape=array.shape)
        if raw:
            request.raw_input_contents.append(raw_bytes(array))
        else:
            getattr(tensor.contents, TYPED[array.dtype.name]).extend(array.ravel().tolist())
    return version, inputs, request


@seed(SEED)
@settings(max_examples=examples(40), **FUZZ)
@given(data=st.data())
def test_valid_messages_get_the_answer_of_a_direct_run(server, data):
    version, inputs, request = data.draw(grpc_requests(server))
    note(f"seed {SEED}: {request}")
    code, response = GRPC.infer(server, version.name, request)
    assert code == "OK", response
    GRPC.check_outputs(response, version, inputs)


def _mutate(draw, request):
    kind = draw(
        st.sampled_from(
            [
                "raw-size",
                "raw-count",
                "typed-field",
                "typed-length",
                "shape",
                "datatype",
                "drop-input",
                "repeat-input",
                "rename",
                "mixed",
                "non-finite",
                "output",
            ]
        )
    )
    tensor = draw(st.sampled_from(list(request.inputs)))
    index = list(request.inputs).index(tensor)
    if kind == "raw-size" and request.raw_input_contents:
        data = request.raw_input_contents[index]
        request.raw_input_contents[index] = data[: draw(st.integers(0, len(data)))] + draw(st.binary(max_size=9))
    elif kind == "raw-count":
        request.raw_input_contents.append(draw(st.binary(max_size=16)))
    elif kind == "typed-field":
        tensor.ClearField("contents")
        getattr(tensor.contents, draw(st.sampled_from(FIELDS))).extend([1] * draw(st.integers(0, 12)))
    elif kind == "typed-length" and tensor.HasField("contents"):
        for field in FIELDS:
            values = getattr(tensor.contents, field)
            if len(values):
                values.extend([0] * draw(st.integers(1, 3)))
    elif kind == "shape":
        del tensor.shape[:]
        tensor.shape.extend(draw(st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-2, 6), max_size=4)))
    elif kind == "datatype":
        tensor.datatype = draw(st.sampled_from(["FP32", "FP16", "FP64", "INT64", "INT8", "BOOL", "BYTES", "", "fp32"]))
    elif kind == "drop-input":
        del request.inputs[index]
        if request.raw_input_contents:
            del request.raw_input_contents[index]
    elif kind == "repeat-input":
        request.inputs.append(tensor)
        if request.raw_input_contents:
            request.raw_input_contents.append(request.raw_input_contents[index])
    elif kind == "rename":
        tensor.name = draw(st.text(max_size=6))
    elif kind == "mixed" and request.raw_input_contents:
        tensor.contents.fp32_contents.append(1.0)
    elif kind == "non-finite":
        values = tensor.contents.fp32_contents if tensor.datatype == "FP32" else tensor.contents.fp64_contents
        if tensor.datatype in ("FP32", "FP64") and len(values):
            values[draw(st.integers(0, len(values) - 1))] = draw(
                st.sampled_from([float("nan"), float("inf"), float("-inf")])
            )
    elif kind == "output":
        request.outputs.add(name=draw(st.text(max_size=6)))
    return kind, request


@seed(SEED)
@settings(max_examples=examples(120), **FUZZ)
@given(data=st.data())
def test_mutated_messages_get_invalid_argument_with_a_message_or_a_correct_answer(server, data):
    version, _, request = data.draw(grpc_requests(server))
    kind, request = _mutate(data.draw, request)
    note(f"seed {SEED}; {kind}: {request}")
    GRPC.infer(server, version.name, request)  # checks the answer


@seed(SEED)
@settings(max_examples=examples(40), **FUZZ)
@given(data=st.data())
def test_bytes_that_are_no_message_get_invalid_argument(server, data):
    _, _, request = data.draw(grpc_requests(server))
    raw = request.SerializeToString()
    at = data.draw(st.integers(0, len(raw)))
    raw = raw[:at] + data.draw(st.binary(min_size=1, max_size=12)) + raw[at + data.draw(st.integers(0, 12)) :]
    note(f"seed {SEED}: {raw!r}")
    try:
        message = _pb().ModelInferRequest.FromString(raw)
    except Exception:
        message = None
    # A splice that still parses may name another model or version, or none (the split sends all
    # traffic to "1"): counted when it reaches a served version.
    version = message and message.model_name == "fuzz" and (message.model_version or "1")
    counted = version in server.versions
    code, _ = GRPC.infer(server, version if counted else None, raw, counted=counted)
    if message is None:
        assert code == "INVALID_ARGUMENT"
