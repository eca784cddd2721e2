"""HTTP framing against a real berth-serve, over raw sockets: Content-Length that lies (short,
long, huge, malformed, repeated), chunked bodies split anywhere (valid, over the limit, broken),
and bodies near the size limit. Every answer is a 4xx with a message or a correct 200, never a
5xx or a hang; memory stays bounded; the server stays ready; each answer from the app is
counted once in telemetry."""

import json

import hypothesis.strategies as st
import numpy as np
from hypothesis import given, note, seed, settings

from .conftest import LIMIT, SEED, examples
from .test_json import FUZZ
from .transports import HTTP_JSON, raw_exchange, strict_json, valid_body

BODY = json.dumps(valid_body({"x": np.array([[1.0, 2.0, 0.5, 4.0]], np.float32)})).encode()


def _request(server, headers, body=b"", version="1", close=True):
    head = f"POST {server.path(version)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers) + b"\r\n" + body


def _check(server, answers, version="1"):
    """Each answer is a 200 with outputs, or a 4xx; the app's answers (JSON) go in the ledger."""
    for status, _headers, body in answers:
        assert status < 500, (status, body[:300])
        try:
            data = strict_json(body)
        except ValueError:  # uvicorn's own answer to a malformed request, before the app
            assert status == 400, (status, body[:300])
            continue
        if data == {"ready": True}:  # a pipelined GET /v2/health/ready
            continue
        assert (status == 200 and data["outputs"]) or (status in (400, 413) and data["error"]), (status, data)
        server.ledger.answered(version, status)


def _chunked(body, cuts):
    cuts = sorted({c for c in cuts if 0 < c < len(body)})
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@seed(SEED)
@settings(max_examples=examples(30), **FUZZ)
@given(
    data=st.data(),
    lie=st.sampled_from(
        ["short", "long", "huge", "malformed", "twice", "chunked", "chunked-big", "chunked-broken", "both"]
    ),
)
def test_framing_lies_get_a_4xx_or_a_correct_200_and_never_hang(server, data, lie):
    body = BODY
    shut_write = False  # a half-closed connection is a client gone: uvicorn drops its answer
    if lie == "short":  # declares more than it sends, then stops sending
        headers = [("Content-Length", len(body) + data.draw(st.integers(1, 10_000)))]
        shut_write = True  # the server waits for the rest, then sees the client go: no answer, no 5xx
    elif lie == "long":  # declares less: the rest is read as the next request. (Bytes that are not a
        # request make uvicorn answer 400 and close at once, dropping the answer to the first request,
        # which the server did count: the client cannot tell, so the ledger could not either.)
        extra = data.draw(
            st.sampled_from(
                [
                    b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n",
                    _request(server, [("Content-Length", len(BODY))], BODY),
                ]
            )
        )
        headers, body = [("Content-Length", len(body))], body + extra
    elif lie == "huge":
        headers = [("Content-Length", data.draw(st.integers(4 * LIMIT + 1, 2**63)))]
    elif lie == "malformed":
        headers = [
            (
                "Content-Length",
                data.draw(
                    st.sampled_from(
                        ["-1", "abc", "1e3", " ", "0x10", "99999999999999999999999", f"{len(body)}, {len(body)}"]
                    )
                ),
            )
        ]
    elif lie == "twice":
        headers = [("Content-Length", len(body)), ("Content-Length", data.draw(st.integers(0, 2 * len(body))))]
    elif lie == "both":
        headers = [("Content-Length", len(body)), ("Transfer-Encoding", "chunked")]
    else:
        headers = [("Transfer-Encoding", "chunked")]
        if lie == "chunked-big":
            body = body[:-2] + b', "pad": "' + b"a" * data.draw(st.integers(LIMIT - 200, 5 * LIMIT)) + b'"}'
        cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=20))
        body = _chunked(body, cuts)
        if lie == "chunked-broken":  # a chunk size may now promise more than follows: the client stops
            shut_write = True  # sending, as for "short" (a client still sending is waited for)
            at = data.draw(st.integers(0, len(body)))
            body = (
                body[:at]
                + data.draw(st.sampled_from([b"zz\r\n", b"\r\n", b"ffffffffffffffff\r\n", b"-1\r\n"]))
                + body[at:]
            )
    raw = _request(server, headers, body, close=lie != "long")
    note(f"seed {SEED}; {lie}: {raw[:500]!r}")
    # "long" leaves the connection open after its answers (uvicorn closes it after 5 s idle).
    answers, timed_out = raw_exchange(server.port, raw, shut_write=shut_write, timeout=1 if lie == "long" else 10)
    assert answers or not timed_out, f"no answer within 10 s to {lie}"
    _check(server, answers)
    if lie == "huge":
        assert answers and answers[0][0] == 413, answers
    if lie == "chunked-big" and LIMIT + 1000 < len(body) < 4 * LIMIT:  # past 4x, the server stops reading
        assert answers and answers[0][0] == 413, answers


def test_bodies_near_the_limit_keep_memory_bounded(server):
    """Bodies just under the limit, shaped to cost the most once decoded, and then over it."""
    pid = server.process.process.pid

    def high_water_mb():
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    before = high_water_mb()
    envelope = b'{"inputs": [{"name": "x", "shape": [%d, 4], "datatype": "FP32", "data": %s}]}'
    fill = LIMIT - 100
    bodies = [
        envelope % (fill // 8, b"[" + b",".join([b"0"] * (fill // 2 - 10)) + b"]"),
        envelope % (fill // 8, b"[" + b",".join([b"[0,0,0,0]"] * (fill // 10 - 10)) + b"]"),
        envelope % (1, b"[" + b",".join([b"{}"] * (fill // 3 - 10)) + b"]"),
        envelope % (1, b"[" + b",".join([b"[]"] * (fill // 3 - 10)) + b"]"),
        envelope % (1, b'["' + b"\\u0000" * (fill // 6 - 10) + b'"]'),
        envelope % (1, b"[" + b",".join([b"1e400"] * (fill // 6 - 10)) + b"]"),
        envelope % (1, b"[" + b"1" * (fill - 10) + b"]"),
    ]
    for _ in range(3):
        for body in bodies:
            assert len(body) <= LIMIT
            answer = HTTP_JSON.infer(server, "1", body)
            assert answer.status in (200, 400), answer
        for size in (LIMIT + 1, 3 * LIMIT, 6 * LIMIT):
            assert HTTP_JSON.infer(server, "1", b" " * size).status == 413
    peak = high_water_mb()
    assert peak - before < 100, f"the server's peak memory grew by {peak - before:.0f} MB on {LIMIT:,}-byte bodies"
    assert peak < 600, f"the server's peak memory is {peak:.0f} MB"
