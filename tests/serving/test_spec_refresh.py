"""Following the dashboard's spec: canary, promotion and rollback applied while requests keep
flowing; artifacts verified by sha256 and cached; start-up against a dashboard that refuses,
does not know the endpoint, or is not there yet."""

import collections
import hashlib
import subprocess
import sys
import threading

import numpy as np

from .conftest import (
    ROOT,
    TOKEN,
    Client,
    FakeDashboard,
    deployment,
    free_port,
    infer_body,
    make_spec,
    serve_args,
    served_versions,
    wait_until,
)


def _args(dashboard_url, tmp_path, *extra):
    return serve_args(dashboard_url, tmp_path / "cache", "--poll-seconds", "0.1", "--no-telemetry", *extra)


class Traffic:
    """Requests without pause from a thread; counts answers by version and keeps failures."""

    def __init__(self, port, x):
        self.client = Client(port)
        self.body = infer_body(x)
        self.versions = collections.Counter()
        self.failures = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            status, answer = self.client.post("/v2/models/digits/infer", self.body)
            if status == 200:
                self.versions[answer["model_version"]] += 1
            else:
                self.failures.append((status, answer))

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        self.client.close()


def test_it_follows_a_canary_a_promotion_and_a_rollback_without_failing_a_request(serve, dashboard, digits, tmp_path):
    models = digits["models"]
    one, two = models["1"], models["2"]
    dashboard.publish(make_spec([deployment("1", one)], generation=1), [one])
    process = serve(*_args(dashboard.url, tmp_path))
    traffic = Traffic(process.port, digits["x"][:1])
    try:
        wait_until(lambda: traffic.versions["1"] > 20, message="traffic on version 1")

        dashboard.publish(make_spec([deployment("1", one, 90), deployment("2", two, 10)], generation=2), [one, two])
        wait_until(lambda: traffic.versions["2"] > 20, message="the canary to get traffic")

        dashboard.publish(make_spec([deployment("2", two, 100)], generation=3), [two])
        wait_until(lambda: served_versions(process.client) == ["2"], message="the promotion")
        seen = traffic.versions["1"]
        wait_until(lambda: traffic.versions["2"] > 200 + traffic.versions["2"] // 2, message="traffic after promotion")
        assert traffic.versions["1"] - seen <= 1  # at most the request in flight at the switch

        dashboard.publish(make_spec([deployment("1", one, 100)], generation=4), [one])
        wait_until(lambda: served_versions(process.client) == ["1"], message="the rollback")
        seen = traffic.versions["2"]
        wait_until(lambda: traffic.versions["1"] > seen + 100, message="traffic after rollback")
    finally:
        traffic.stop()
    assert traffic.failures == []
    log = process.log()
    assert "serving digits generation 4: 1 (100 %)" in log
    assert "released digits:2" in log  # its session went once its last request finished
    assert dashboard.artifact_requests.count("/api/v1/endpoints/digits-prod/artifacts/1/") == 1  # kept, not reloaded


def test_the_specs_thread_count_resizes_the_inference_pool_while_requests_flow(serve, dashboard, digits, tmp_path):
    import psutil
    from prometheus_client.parser import text_string_to_metric_families

    one = digits["models"]["1"]

    def publish(threads, generation):
        spec = make_spec([deployment("1", one)], generation=generation)
        spec["batching"] = {"max_batch_size": 4, "max_queue_delay_us": 500, "threads": threads}
        dashboard.publish(spec, [one])

    def gauge():
        text = Client(process.port).get("/metrics")[1]
        (family,) = [f for f in text_string_to_metric_families(text) if f.name == "berth_inference_threads"]
        return family.samples[0].value

    publish(3, 1)
    process = serve(*_args(dashboard.url, tmp_path, "--threads", "4"))
    os_threads = psutil.Process(process.process.pid)
    traffic = Traffic(process.port, digits["x"][:1])
    try:
        wait_until(lambda: gauge() == 3, message="3 inference threads")
        base = os_threads.num_threads()  # 3 inference threads and the rest of the process's
        for generation, threads in ((2, 5), (3, 2), (4, None)):
            publish(threads, generation)
            wanted = threads or 4  # null: back to --threads
            wait_until(lambda n=wanted: gauge() == n, message=f"{wanted} inference threads")
            wait_until(lambda n=wanted: os_threads.num_threads() == base - 3 + n, message=f"{wanted} OS threads")
            served = sum(traffic.versions.values())
            wait_until(lambda s=served: sum(traffic.versions.values()) > s + 50, message="requests after the resize")
    finally:
        traffic.stop()
    assert traffic.failures == []
    assert "inference threads: 5 (were 3)" in process.log()


def test_it_refuses_an_artifact_whose_sha256_does_not_match(serve, dashboard, digits, tmp_path):
    models = digits["models"]
    one, two = models["1"], models["2"]
    dashboard.publish(make_spec([deployment("1", one)], generation=1), [one])
    process = serve(*_args(dashboard.url, tmp_path))

    canary = deployment("2", two, 10)
    dashboard.publish(make_spec([deployment("1", one, 90), canary], generation=2), [one, two])
    dashboard.artifacts[canary["artifact_url"]] = two.raw[:-9] + b"corrupted"
    wait_until(lambda: "REFUSED digits:2" in process.log(), message="the refusal")
    assert "sha256 mismatch" in process.log()
    corrupted = hashlib.sha256(two.raw[:-9] + b"corrupted").hexdigest()
    wait_until(lambda: dashboard.integrity_reports, message="the mismatch reported to the dashboard")
    report = dashboard.integrity_reports[0]
    assert (report["version"], report["where"], report["expected_sha256"], report["actual_sha256"]) == (
        "2",
        "download",
        two.sha256,
        corrupted,
    )
    wait_until(
        lambda: "serving digits generation 2: 1 (100 %); refused: 2" in process.log(),
        message="generation 2 served without the refused version",
    )
    status, body = process.client.post("/v2/models/digits/versions/2/infer", infer_body(digits["x"][:1]))
    assert status == 503 and "sha256 mismatch" in body["error"]
    assert {
        process.client.post("/v2/models/digits/infer", infer_body(digits["x"][:1]))[1]["model_version"]
        for _ in range(30)
    } == {"1"}
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.onnx")) == [f"{one.sha256}.onnx"]
    assert not list((tmp_path / "cache").glob("*.part"))

    # Promoting the corrupt version to 100 % keeps the last good split.
    dashboard.spec = make_spec([dict(canary, weight=100)], generation=3)
    wait_until(
        lambda: "none of the weighted versions of digits generation 3" in process.log(),
        message="generation 3 to be turned down",
    )
    assert served_versions(process.client) == ["1"]
    assert process.client.post("/v2/models/digits/infer", infer_body(digits["x"][:1]))[0] == 200


def test_a_corrupted_cached_artifact_is_reported_and_downloaded_again(serve, dashboard, digits, tmp_path):
    one = digits["models"]["1"]
    dashboard.publish(make_spec([deployment("1", one)]), [one])
    serve(*_args(dashboard.url, tmp_path)).stop()
    cached = tmp_path / "cache" / f"{one.sha256}.onnx"
    cached.write_bytes(one.raw[:100] + bytes([one.raw[100] ^ 0xFF]) + one.raw[101:])
    process = serve(*_args(dashboard.url, tmp_path))
    assert process.client.post("/v2/models/digits/infer", infer_body(digits["x"][:1]))[0] == 200
    assert [(r["version"], r["where"]) for r in dashboard.integrity_reports] == [("1", "cache")]
    assert cached.read_bytes() == one.raw


def test_it_reuses_cached_artifacts_after_a_restart(serve, dashboard, digits, tmp_path):
    one = digits["models"]["1"]
    dashboard.publish(make_spec([deployment("1", one)]), [one])
    serve(*_args(dashboard.url, tmp_path)).stop()
    assert (tmp_path / "cache" / f"{one.sha256}.onnx").read_bytes() == one.raw
    dashboard.artifacts.clear()
    downloads = len(dashboard.artifact_requests)
    process = serve(*_args(dashboard.url, tmp_path))
    assert process.client.post("/v2/models/digits/infer", infer_body(digits["x"][:1]))[0] == 200
    assert len(dashboard.artifact_requests) == downloads


def _start_and_exit(*args):
    return subprocess.run(
        [sys.executable, "-m", "serving.cli", "--port", "0", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_exits_at_start_up_when_the_dashboard_refuses_the_token(dashboard, tmp_path):
    result = _start_and_exit(
        "--dashboard", dashboard.url, "--endpoint", "digits-prod", "--token", "wrong", "--cache-dir", tmp_path
    )
    assert result.returncode == 2
    assert "refuses the token for endpoint 'digits-prod' (401" in result.stderr


def test_it_exits_at_start_up_for_an_unknown_endpoint(dashboard, tmp_path):
    result = _start_and_exit(
        "--dashboard", dashboard.url, "--endpoint", "nope", "--token", TOKEN, "--cache-dir", tmp_path
    )
    assert result.returncode == 2
    assert "has no endpoint 'nope' (404" in result.stderr


def test_it_takes_the_token_from_the_environment(serve, dashboard, digits, tmp_path):
    one = digits["models"]["1"]
    dashboard.publish(make_spec([deployment("1", one)]), [one])
    process = serve(
        *serve_args(dashboard.url, tmp_path, "--no-telemetry", token=None), env={"BERTH_ENDPOINT_TOKEN": TOKEN}
    )
    assert process.client.get("/v2/health/ready")[0] == 200


def test_it_takes_the_token_from_a_file_and_names_itself_to_the_dashboard(serve, dashboard, digits, tmp_path):
    one = digits["models"]["1"]
    dashboard.publish(
        make_spec([deployment("1", one)], telemetry={"url": "/api/v1/telemetry/", "flush_seconds": 0.2}), [one]
    )
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    process = serve(
        *serve_args(dashboard.url, tmp_path, "--token-file", token_file, "--poll-seconds", "0.1", token=None),
        env={"BERTH_ENDPOINT_TOKEN": "not-this-one"},
    )
    assert TOKEN not in " ".join(process.process.args)
    wait_until(
        lambda: any(p.get("replica", {}).get("generation") == 1 for _, p in dashboard.posts),
        message="a flush describing the replica",
    )
    replica = next(p["replica"] for _, p in dashboard.posts if p.get("replica", {}).get("generation") == 1)
    assert replica["versions"] == ["1"] and replica["pid"] == process.process.pid
    assert replica["host"] and replica["spec_polled"].endswith("Z") and len(replica["instance"]) == 32
    assert dashboard.instances == {replica["instance"]}  # every request named the replica


def test_an_empty_token_file_is_a_usage_error(tmp_path):
    (tmp_path / "token").write_text("\n")
    result = _start_and_exit(
        "--dashboard", "http://127.0.0.1:9", "--endpoint", "digits-prod", "--token-file", tmp_path / "token"
    )
    assert result.returncode == 2 and "is empty; put the endpoint token on its first line" in result.stderr
    result = _start_and_exit(
        "--dashboard", "http://127.0.0.1:9", "--endpoint", "digits-prod", "--token-file", tmp_path / "missing"
    )
    assert result.returncode == 2 and "--token-file" in result.stderr and "No such file" in result.stderr


def test_it_waits_for_an_unreachable_dashboard_and_is_not_ready_meanwhile(serve, digits, tmp_path):
    port = free_port()
    process = serve(*_args(f"http://127.0.0.1:{port}", tmp_path), wait="listening")
    assert process.client.get("/v2/health/live") == (200, {"live": True})
    assert process.client.get("/v2/health/ready") == (503, {"ready": False})
    status, body = process.client.post("/v2/models/digits/infer", infer_body(digits["x"][:1]))
    assert status == 503 and "no spec is loaded yet" in body["error"]
    assert "at start-up; serving nothing (ready: 503) until it answers" in process.log()

    one = digits["models"]["1"]
    dashboard = FakeDashboard(port=port)
    try:
        dashboard.publish(make_spec([deployment("1", one)]), [one])
        process.wait_ready()
    finally:
        dashboard.stop()
    # Gone again: the last good spec keeps serving.
    wait_until(lambda: "still serving digits generation 1" in process.log(), message="the outage to be noticed")
    status, body = process.client.post("/v2/models/digits/infer", infer_body(digits["x"][:2]))
    assert status == 200
    np.testing.assert_array_equal(
        np.array(body["outputs"][0]["data"], dtype=np.float32).reshape(2, 10), one.run(x=digits["x"][:2])[0]
    )
