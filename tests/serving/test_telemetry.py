"""Telemetry to the (stand-in) dashboard: exact counts with error kinds, feature histograms,
a retried flush counted once, an outage ridden out, the last window sent at shutdown, and a
full queue dropping the oldest flush and saying so."""

import re
import signal
import threading
import time
import uuid

import numpy as np

from serving.dashboard import DashboardUnreachable, Response
from serving.telemetry import Sender

from .conftest import deployment, infer_body, make_spec, serve_args, wait_until


def _telemetry(flush_seconds=0.5, flush_requests=1000):
    return {"url": "/api/v1/telemetry/", "flush_seconds": flush_seconds, "flush_requests": flush_requests}


def _start(serve, dashboard, digits, tmp_path, telemetry, **spec):
    models = digits["models"]
    deployments = spec.pop("deployments", None) or [deployment("1", models["1"], features=digits["features"])]
    dashboard.publish(make_spec(deployments, telemetry=telemetry, **spec), models.values())
    return serve(
        *serve_args(dashboard.url, tmp_path / "cache", "--poll-seconds", "0.2", "--shutdown-flush-seconds", "10")
    )


def test_it_reports_exactly_the_requests_it_served_with_their_error_kinds(serve, dashboard, digits, tmp_path):
    models = digits["models"]
    process = _start(
        serve,
        dashboard,
        digits,
        tmp_path,
        _telemetry(),
        max_request_bytes=4096,
        deployments=[deployment("1", models["1"], 90, features=digits["features"]), deployment("2", models["2"], 10)],
    )
    client, x = process.client, digits["x"]
    for row in x[:30]:
        assert client.post("/v2/models/digits/versions/1/infer", infer_body(row[None]))[0] == 200
    for row in x[30:50]:
        assert client.post("/v2/models/digits/versions/2/infer", infer_body(row[None]))[0] == 200
    for _ in range(5):
        assert client.post("/v2/models/digits/versions/1/infer", raw=b"{oops")[0] == 400
    for _ in range(4):
        assert client.post("/v2/models/digits/versions/2/infer", infer_body(np.zeros((1, 63))))[0] == 400
    for _ in range(3):
        assert client.post("/v2/models/digits/versions/1/infer", raw=b" " * 5000)[0] == 413
    assert client.post("/v2/models/digits/versions/7/infer", infer_body(x[:1]))[0] == 404  # routed nowhere
    assert client.post("/v2/models/other/infer", infer_body(x[:1]))[0] == 404

    expected = {
        "1": {"requests": 38, "errors": 8, "error_kinds": {"bad_request": 5, "too_large": 3}},
        "2": {"requests": 24, "errors": 4, "error_kinds": {"invalid_input": 4}},
    }
    wait_until(lambda: dashboard.totals() == expected, timeout=20, message=f"{expected}, got {dashboard.totals()}")
    process.stop()
    assert dashboard.totals() == expected

    payloads = list(dashboard.accepted.values())
    for payload in payloads:
        assert payload["endpoint"] == "digits-prod"
        assert uuid.UUID(payload["flush_id"]).version == 4
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["start"])
        assert 0 <= payload["seconds"] <= 1 and payload["dropped"] == 0  # a shutdown flush may follow at once
    series = [s for p in payloads for s in p["series"]]
    assert sum(sum(s["latency"]["buckets"].values()) + s["latency"]["zero_count"] for s in series) == 62
    assert all(
        s["latency"]["alpha"] == 0.01 and all(isinstance(k, str) for k in s["latency"]["buckets"]) for s in series
    )
    # The inference-only (session.run) sketch: one value per model run, by batch size; the failed
    # requests never ran. Each run is shorter than its request.
    runs = {}
    for s in series:
        for rows, sketch in s.get("inference_latency", {}).items():
            runs[(s["version"], rows)] = (
                runs.get((s["version"], rows), 0) + sum(sketch["buckets"].values()) + sketch["zero_count"]
            )
    assert runs == {("1", "1"): 30, ("2", "1"): 20}
    from berth.core.stats import sketch_quantiles

    inference = sketch_quantiles(
        [s["inference_latency"]["1"] for s in series if s["version"] == "1" and "1" in s.get("inference_latency", {})],
        (0.5,),
    )[0]
    request = sketch_quantiles([s["latency"] for s in series if s["version"] == "1"], (0.5,))[0]
    assert 0 < inference < request

    # Feature histograms of version 1: the 30 images it answered, binned as the contract says.
    merged = {}
    for s in series:
        if s["version"] == "1":
            for name, counts in s["features"].items():
                merged[name] = np.add(merged.get(name, 0), counts)
    answered = x[:30].astype(np.float32)
    by_name = {f["name"]: f for f in digits["features"]}

    def histogram(values, edges):
        return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1).tolist()

    assert merged["x.mean"].tolist() == histogram(answered.mean(axis=1, dtype=np.float64), by_name["x.mean"]["edges"])
    assert merged["x.std"].tolist() == histogram(answered.std(axis=1, dtype=np.float64), by_name["x.std"]["edges"])
    assert merged["x[36]"].tolist() == histogram(answered[:, 36], by_name["x[36]"]["edges"])
    predicted = models["1"].run(x=answered)[0].argmax(axis=1)
    assert merged["prediction"].tolist() == np.bincount(predicted, minlength=10).tolist()
    assert all(s["features"] == {} for s in series if s["version"] == "2")  # no reference profile


def test_it_retries_a_flush_answered_500_and_it_is_counted_once(serve, dashboard, digits, tmp_path):
    dashboard.telemetry_failures = 1
    process = _start(serve, dashboard, digits, tmp_path, _telemetry(flush_seconds=60, flush_requests=10))
    for row in digits["x"][:10]:
        assert process.client.post("/v2/models/digits/infer", infer_body(row[None]))[0] == 200
    wait_until(lambda: [s for s, _ in dashboard.posts][:2] == [500, 200], message="the answer 500 and the retry")
    failed = [p["flush_id"] for status, p in dashboard.posts if status == 500]
    assert len(failed) == 1
    assert [status for status, p in dashboard.posts if p["flush_id"] == failed[0]] == [500, 200]
    assert list(dashboard.accepted).count(failed[0]) == 1
    assert "retrying in 1.0 s" in process.log()
    process.stop()
    assert dashboard.totals()["1"]["requests"] == 10


def test_it_keeps_answering_while_the_dashboard_is_down_and_delivers_every_window_afterwards(
    serve, dashboard, digits, tmp_path
):
    process = _start(serve, dashboard, digits, tmp_path, _telemetry(flush_seconds=0.5))
    body = infer_body(digits["x"][:1])
    dashboard.stop()
    sent, started = 0, time.monotonic()
    while time.monotonic() - started < 5:  # five seconds of traffic with the dashboard gone
        status, answer = process.client.post("/v2/models/digits/infer", body)
        assert status == 200, answer
        sent += 1
    down_until = time.time()
    dashboard.start()
    wait_until(
        lambda: dashboard.totals().get("1", {}).get("requests") == sent,
        timeout=30,
        message=f"{sent} requests to be reported",
    )
    windows = sorted(p["start"] for p in dashboard.accepted.values() if p["series"] and p["start"] < _iso(down_until))
    assert len(windows) >= 8  # ~10 windows of 0.5 s while it was down, each delivered
    assert all(p["dropped"] == 0 for p in dashboard.accepted.values())
    assert "telemetry: the dashboard is unreachable" in process.log()


def _iso(timestamp):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(timestamp))


def test_it_sends_pending_telemetry_when_it_shuts_down(serve, dashboard, digits, tmp_path):
    process = _start(serve, dashboard, digits, tmp_path, _telemetry(flush_seconds=3600, flush_requests=100000))
    for row in digits["x"][:25]:
        assert process.client.post("/v2/models/digits/infer", infer_body(row[None]))[0] == 200
    assert dashboard.totals() == {}
    process.stop(signal.SIGTERM)
    assert dashboard.totals() == {"1": {"requests": 25, "errors": 0, "error_kinds": {}}}
    assert "sending 1 pending telemetry flush(es)" in process.log()


class FlakyClient:
    """A DashboardClient stand-in: unreachable until ``up`` is set, then answers 202."""

    def __init__(self):
        self.up = threading.Event()
        self.delivered = []

    def post_json(self, url, payload):
        if not self.up.is_set():
            raise DashboardUnreachable("connection refused")
        self.delivered.append((payload["flush_id"], payload["dropped"]))
        return Response(202, {}, b"{}")

    def close(self):
        pass


def test_it_drops_the_oldest_flush_when_its_queue_is_full_and_reports_how_many():
    client = FlakyClient()
    sender = Sender(lambda: client, "/api/v1/telemetry/", capacity=3, first_backoff=0.01, max_backoff=0.05)
    sender.start()
    sender.enqueue({"flush_id": "f1", "start": "t1", "series": [], "dropped": 0})
    wait_until(lambda: sender.pending() == 1 and not sender._queue, message="f1 to be taken for sending")
    for n in range(2, 7):
        sender.enqueue({"flush_id": f"f{n}", "start": f"t{n}", "series": [], "dropped": 0})
    assert sender.dropped == 2  # f2 and f3, the oldest waiting; f1 is being sent
    client.up.set()
    wait_until(lambda: len(client.delivered) == 4, message="the flushes left")
    assert client.delivered == [("f1", 0), ("f4", 2), ("f5", 0), ("f6", 0)]
    sender.close(1)
    assert sender.lost == 0


def test_it_gives_up_at_shutdown_after_its_deadline_and_says_what_was_lost(caplog):
    client = FlakyClient()
    sender = Sender(lambda: client, "/api/v1/telemetry/", first_backoff=0.01, max_backoff=0.05)
    sender.start()
    sender.enqueue({"flush_id": "f1", "start": "t1", "series": [{"requests": 7}], "dropped": 0})
    started = time.monotonic()
    sender.close(0.3)
    assert time.monotonic() - started < 3
    assert sender.lost == 1
    assert "1 flush(es) with 7 requests could not be delivered before shutdown" in caplog.text


def test_it_reports_request_latency_by_encoding_and_rows(serve, dashboard, digits, tmp_path):
    """JSON, binary and gRPC requests (Triton's own clients) are counted by how they came and their
    rows, so production's request latency can be compared with an end-to-end benchmark in that
    encoding; failed requests are not in it (the benchmark times successes)."""
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http

    models = digits["models"]
    dashboard.publish(make_spec([deployment("1", models["1"])], telemetry=_telemetry()), models.values())
    process = serve(
        *serve_args(dashboard.url, tmp_path / "cache", "--grpc-port", "0", "--shutdown-flush-seconds", "10")
    )
    grpc_port = re.search(r"grpc on 127\.0\.0\.1:(\d+)", process.log()).group(1)
    x = digits["x"].astype(np.float32)
    for row in x[:6]:
        assert process.client.post("/v2/models/digits/infer", infer_body(row[None]))[0] == 200
    for start in (6, 8, 10):
        assert process.client.post("/v2/models/digits/infer", infer_body(x[start : start + 2]))[0] == 200
    assert process.client.post("/v2/models/digits/infer", infer_body(np.zeros((1, 63))))[0] == 400
    http_client = triton_http.InferenceServerClient(f"127.0.0.1:{process.port}")
    grpc_client = triton_grpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    for row in x[12:16]:
        tensor = triton_http.InferInput("x", [1, 64], "FP32")
        tensor.set_data_from_numpy(row[None], binary_data=True)
        http_client.infer("digits", [tensor])
    for row in x[16:21]:
        tensor = triton_grpc.InferInput("x", [1, 64], "FP32")
        tensor.set_data_from_numpy(row[None])
        grpc_client.infer("digits", [tensor])
    http_client.close()
    grpc_client.close()
    wait_until(lambda: dashboard.totals().get("1", {}).get("requests") == 19, timeout=20, message="19 requests")
    process.stop()

    counted = {}
    for payload in dashboard.accepted.values():
        for series in payload["series"]:
            for encoding, by_rows in series.get("request_latency", {}).items():
                for rows, sketch in by_rows.items():
                    assert sketch["alpha"] == 0.01
                    key = (encoding, rows)
                    counted[key] = counted.get(key, 0) + sum(sketch["buckets"].values()) + sketch["zero_count"]
    assert counted == {("json", "1"): 6, ("json", "2"): 3, ("binary", "1"): 4, ("grpc", "1"): 5}
