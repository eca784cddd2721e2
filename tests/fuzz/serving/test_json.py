"""Open Inference Protocol JSON bodies against a real berth-serve: valid requests get the answer
a direct onnxruntime run gives (non-finite outputs as "NaN"/"Infinity"/"-Infinity" strings, so
every 200 is strict JSON); structure, types, shapes, sizes, nesting, numbers (NaN, Infinity,
-0, 1e400), unicode and repeated keys, mutated as objects and as text, get a 400 or 413 with a
message, or a correct 200; never a 5xx. Each module ends with the server ready and every answer
counted once in telemetry and /metrics."""

import json
import re

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
from hypothesis import HealthCheck, given, note, seed, settings

from .conftest import LIMIT, SEED, examples
from .transports import HTTP_JSON, valid_body

FUZZ = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck), print_blob=True)
ELEMENTS = {
    "float32": st.floats(width=32, allow_nan=False, allow_infinity=False),
    "float16": st.floats(width=16, allow_nan=False, allow_infinity=False),
    "float64": st.floats(allow_nan=False, allow_infinity=False),
    "int64": st.integers(-(2**63), 2**63 - 1),
    "bool": st.booleans(),
}


@st.composite
def feeds(draw, version):
    """Valid inputs for ``version``: {name: ndarray} with one batch size for all."""
    batch = draw(st.integers(0, 5))
    out = {}
    for tensor in version.signature["inputs"]:
        shape = tuple(batch if d == "batch" else d for d in tensor["shape"])
        out[tensor["name"]] = draw(hnp.arrays(np.dtype(tensor["dtype"]), shape, elements=ELEMENTS[tensor["dtype"]]))
    return out


@st.composite
def valid_requests(draw, server):
    version = server.versions[draw(st.sampled_from(sorted(server.versions)))]
    inputs = draw(feeds(version))
    outputs = [o["name"] for o in version.signature["outputs"]]
    wanted = draw(st.none() | st.lists(st.sampled_from(outputs), min_size=1, unique=True))
    body = valid_body(
        inputs, nested=draw(st.booleans()), outputs=wanted, request_id=draw(st.none() | st.text(max_size=20))
    )
    if draw(st.booleans()):
        body["parameters"] = draw(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3))
    return version, inputs, wanted, body


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from([-0.0, 1e308, -1e308, 2**63, 2**64, -(2**63) - 1, "", "\u0000", "\ud800", "FP32", "x"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _paths(value, path=()):
    """Every path (tuple of keys and indexes) into a JSON value, the value's own included."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value[:6]):
            yield from _paths(item, path + (index,))


def _mutate(draw, body):
    """One change at a random place: replace, delete, or add a key/element."""
    path = draw(st.sampled_from(list(_paths(body))))
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if not path:
        return draw(JSON_VALUES) if action == "replace" else body
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if action == "replace":
        parent[last] = draw(
            JSON_VALUES
            | st.sampled_from(
                [[], {}, [[]], -1, 0, 2**31, [2**62, 2**62], [-1, 4], [1.5, 4], [True, 4], "FP64", "BYTES", "INT8"]
            )
        )
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(JSON_VALUES)
    else:
        parent.insert(draw(st.integers(0, len(parent))), draw(JSON_VALUES))
    return body


@seed(SEED)
@settings(max_examples=examples(60), **FUZZ)
@given(data=st.data())
def test_valid_requests_get_the_answer_of_a_direct_run(server, data):
    version, inputs, wanted, body = data.draw(valid_requests(server))
    raw = json.dumps(body).encode()
    note(f"seed {SEED}; version {version.name}: {raw[:2000]!r}")
    answer = HTTP_JSON.infer(server, version.name, raw)
    if len(raw) > LIMIT:
        assert answer.status == 413
        return
    assert answer.status == 200, answer
    assert answer.data.get("id") == body.get("id")
    HTTP_JSON.check_outputs(answer, version, inputs, wanted)


@seed(SEED)
@settings(max_examples=examples(150), **FUZZ)
@given(data=st.data())
def test_mutated_requests_get_a_4xx_with_a_message_or_a_correct_200(server, data):
    version, _, _, body = data.draw(valid_requests(server))
    for _ in range(data.draw(st.integers(1, 3))):
        body = _mutate(data.draw, body)
    raw = json.dumps(body).encode()  # NaN and Infinity as Python writes them
    note(f"seed {SEED}; version {version.name}: {raw[:2000]!r}")
    HTTP_JSON.infer(server, version.name, raw)  # checks the answer


def _text_mutations():
    return st.sampled_from(
        [
            "truncate",
            "insert",
            "replace",
            "nan",
            "bignum",
            "deep",
            "duplicate",
            "bom",
            "utf8",
            "surrogate",
            "whitespace",
            "pad",
        ]
    )


@seed(SEED)
@settings(max_examples=examples(150), **FUZZ)
@given(data=st.data())
def test_text_mutations_get_a_4xx_with_a_message_or_a_correct_200(server, data):
    version, _, _, body = data.draw(valid_requests(server))
    raw = json.dumps(body).encode()
    kind = data.draw(_text_mutations())
    at = data.draw(st.integers(0, len(raw)))
    if kind == "truncate":
        raw = raw[:at]
    elif kind == "insert":
        raw = (
            raw[:at]
            + data.draw(
                st.binary(max_size=16)
                | st.sampled_from([b"[", b"]", b"{", b"}", b",", b'"', b":", b"\\", b"null", b"-0", b"1e400"])
            )
            + raw[at:]
        )
    elif kind == "replace":
        raw = raw[:at] + data.draw(st.text(max_size=12)).encode("utf-8", "surrogatepass") + raw[at + 8 :]
    elif kind == "nan":
        raw = re.sub(
            rb"(?<=[\[,])-?[0-9][0-9.e+-]*(?=[,\]])",
            data.draw(
                st.sampled_from(
                    [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"-0", b"-0.0", b"1e-400", b"70000"]
                )
            ),
            raw,
            count=data.draw(st.integers(1, 3)),
        )
    elif kind == "bignum":
        raw = raw[:at] + b"1" * data.draw(st.sampled_from([20, 400, 5000, 40000])) + raw[at:]
    elif kind == "deep":
        depth = data.draw(st.integers(1, 3000))
        raw = raw[:at] + b"[" * depth + b"0" + b"]" * depth + raw[at:]
    elif kind == "duplicate":
        raw = raw.replace(b'"name": ', b'"name": "x", "name": ', 1)
    elif kind == "bom":
        raw = b"\xef\xbb\xbf" + raw
    elif kind == "utf8":
        raw = raw[:at] + data.draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"])) + raw[at:]
    elif kind == "surrogate":
        raw = raw.replace(b'"name": "', b'"name": "\\ud800', 1)
    elif kind == "whitespace":
        raw = b" \t\r\n" * data.draw(st.integers(0, 100)) + raw + b"\n" * data.draw(st.integers(0, 100))
    elif kind == "pad":
        raw = raw[:-1] + b"," + b'"pad": "' + b"a" * data.draw(st.integers(LIMIT - len(raw) - 20, LIMIT)) + b'"}'
    note(f"seed {SEED}; {kind} at {at}; version {version.name}: {raw[:2000]!r}")
    answer = HTTP_JSON.infer(server, version.name, raw)
    if len(raw) > LIMIT:
        assert answer.status == 413, answer


FLOAT_INPUTS = [("1", "x"), ("3", "h"), ("3", "d")]


@seed(SEED)
@settings(max_examples=examples(40), **FUZZ)
@given(
    data=st.data(),
    where=st.sampled_from(FLOAT_INPUTS),
    token=st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e39", "70000"]),
)
def test_non_finite_input_is_refused_naming_the_tensor(server, data, where, token):
    version = server.versions[where[0]]
    inputs = data.draw(feeds(version).filter(lambda f: f[where[1]].size > 0))
    dtype = inputs[where[1]].dtype
    if (token == "1e39" and dtype == np.float64) or (token == "70000" and dtype != np.float16):
        token = "Infinity"  # finite in a wider type
    body = valid_body(inputs)
    tensor = next(t for t in body["inputs"] if t["name"] == where[1])
    tensor["data"][data.draw(st.integers(0, len(tensor["data"]) - 1))] = "@TOKEN@"
    raw = json.dumps(body).encode().replace(b'"@TOKEN@"', token.encode())
    note(f"seed {SEED}: {raw[:2000]!r}")
    answer = HTTP_JSON.infer(server, version.name, raw)
    assert answer.status == 400 and f"input {where[1]!r}" in answer.error() and "finite" in answer.error(), answer


@seed(SEED)
@settings(max_examples=examples(20), **FUZZ)
@given(
    depth=st.integers(33, 200_000),
    inner=st.sampled_from([b"", b"0", b'"[{"', b"{}"]),
    opener=st.sampled_from([b"[", b'{"a":']),
)
def test_nesting_deeper_than_the_limit_is_a_clear_400(server, depth, inner, opener):
    closer = b"]" if opener == b"[" else b"}"
    depth = min(depth, (LIMIT - 100) // (len(opener) + 1))
    raw = b'{"inputs": ' + opener * depth + inner + closer * depth + b"}"
    answer = HTTP_JSON.infer(server, "1", raw)
    assert answer.status == 400 and "deep" in answer.error(), answer


def test_a_repeated_key_is_refused_naming_it(server):
    body = valid_body({"x": np.ones((1, 4), np.float32)})
    raw = json.dumps(body).encode().replace(b'"datatype": "FP32"', b'"datatype": "FP64", "datatype": "FP32"')
    answer = HTTP_JSON.infer(server, "1", raw)
    assert answer.status == 400 and "'datatype'" in answer.error() and "repeats" in answer.error(), answer


def test_non_finite_outputs_are_strict_json_strings(server):
    x = np.array([[-1.0, 0.0, 1.0, np.float32(3.4e38)]], np.float32)
    answer = HTTP_JSON.infer(server, "1", json.dumps(valid_body({"x": x})).encode())
    assert answer.status == 200
    assert answer.data["outputs"][0]["data"][:2] == ["NaN", "-Infinity"]
    h = np.array([300.0, 1.0], np.float16)  # 300² overflows FP16
    answer = HTTP_JSON.infer(server, "3", json.dumps(valid_body({"h": h, "d": np.zeros(1)})).encode())
    assert answer.status == 200 and answer.data["outputs"][0]["data"] == ["Infinity", 1]
