"""parse_json's fast decoder (orjson, when installed) gives exactly what the standard library's
decoder gives, or leaves the body to it: same payloads, same refusals, same messages."""

import json

import pytest

from serving import protocol
from serving.protocol import BadRequest, parse_json

pytestmark = pytest.mark.skipif(protocol.orjson is None, reason="orjson is not installed (the serve extra)")

FLOATS = [0.8160928487777710, -1e-7, 3.4028234663852886e38, 0.0, -0.0, 1, 7]
BODIES = [
    json.dumps({"inputs": [{"name": "x", "shape": [1, 7], "datatype": "FP32", "data": FLOATS}]}).encode(),
    json.dumps(
        {
            "id": 'r\u00e9q \\ "1": {x}',
            "parameters": {"binary_data_output": True},
            "inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [9223372036854775807, -9]}],
            "outputs": [{"name": "y", "parameters": {"binary_data": False}}],
        },
        indent=2,
    ).encode(),
    b'{"inputs" : [ {"name" :"x","shape":[1],"datatype":"UINT64","data":[18446744073709551615]} ] }',
    b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP64","data":[1.2345678901234567890123]}]}',
    # What orjson reads otherwise or refuses: each must come out as the standard decoder has it.
    b'{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[123456789012345678901234567890]}]}',
    b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[NaN]}]}',
    b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1e400]}]}',
    b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[-Infinity]}]}',
    b'{"inputs":[{"name":"x","name":"y","shape":[1],"datatype":"FP32","data":[1]}]}',
    b'{"inputs":[],"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}',
    b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"parameters":{"a":1,"a":2}}]}',
    b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[{"a":1,"a":2}]}]}',
    b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[{"a":1}]}]}',
    b'{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"x":{"k":1,"k":2}}',
    b'{"id":"\\ud800","inputs":[]}',
    b'{"id":"\xed\xa0\x80","inputs":[]}',
    '{"id":"utf-16","inputs":[]}'.encode("utf-16"),
    b'\xef\xbb\xbf{"inputs":[]}',
    b'{"inputs":[1,2,]}',
    b'{"inputs":[]} x',
    b"[1, 2]",
    b'"text"',
    b"12345678901234567890123",
    b'{"a":"}{\\"b\\": :"}',
]


def standard(body):
    saved, protocol.orjson = protocol.orjson, None
    try:
        return parse_json(body)
    finally:
        protocol.orjson = saved


@pytest.mark.parametrize("body", BODIES)
def test_it_decodes_every_body_as_the_standard_decoder_does(body):
    try:
        expected = ("ok", standard(body))
    except BadRequest as exc:
        expected = ("refused", exc.message)
    try:
        got = ("ok", parse_json(body))
    except BadRequest as exc:
        got = ("refused", exc.message)
    assert got == expected
    if got[0] == "ok":  # the same types too (1 is not 1.0, a big integer is not a float)
        assert repr(got[1]) == repr(expected[1])


def test_it_takes_the_fast_path_for_an_ordinary_tensor():
    assert protocol._fast_json(BODIES[0]) == json.loads(BODIES[0])
    assert protocol._fast_json(BODIES[8]) is None  # a repeated key: the standard decoder refuses it
