"""berth-serve against the real dashboard: spec, artifacts and telemetry over the REST API."""

import json
import socket
import threading
import urllib.request
from collections import Counter

import numpy as np
import onnxruntime as ort
import pytest
from django.db.models import Sum

from jobs import services as job_services
from jobs.models import Job
from monitoring import services
from monitoring.models import MetricWindow
from registry.models import HardwareTarget
from tests.conftest import wait_for
from tests.serving.conftest import Serve, serve_args

pytestmark = pytest.mark.django_db(transaction=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url, body=None, timeout=10):
    """(status, JSON answer) of a GET, or of a POST when ``body`` is given."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def infer_body(rows):
    return {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP32", "data": rows.ravel().tolist()}]}


class Runtime:
    def __init__(self, url, process, endpoint):
        self.url, self.process, self.endpoint = url, process, endpoint

    def infer(self, rows, version=None):
        path = f"/v2/models/digits/versions/{version}/infer" if version else "/v2/models/digits/infer"
        return call(self.url + path, infer_body(rows))

    def versions(self):
        status, body = call(self.url + "/v2/models/digits")
        return sorted(body.get("versions", [])) if status == 200 else []


@pytest.fixture
def served(live_server, digits_version, engineer, settings, tmp_path):
    """digits-prod serving digits:1 through a real berth-serve process that reads the spec from
    the live dashboard and flushes telemetry every second."""
    settings.BERTH_TELEMETRY_FLUSH_SECONDS = 1
    endpoint, token = services.endpoint_create(
        name="digits-prod", model=digits_version.model, target=HardwareTarget.objects.get(slug="cpu")
    )
    services.deploy(endpoint=endpoint, version=digits_version, weight=100, user=engineer)
    process = Serve(
        serve_args(live_server.url, tmp_path / "cache", "--poll-seconds", "0.3", token=None),
        tmp_path / "berth-serve.log",
        env={"BERTH_ENDPOINT_TOKEN": token},
    ).wait_ready()
    yield Runtime(f"http://127.0.0.1:{process.port}", process.process, endpoint)
    process.stop()


def reported(endpoint, field="requests"):
    return MetricWindow.objects.filter(endpoint=endpoint).aggregate(total=Sum(field))["total"] or 0


def test_it_serves_the_deployed_version_and_reports_every_request(served, digits_files):
    from dashboard.demo import digits_data

    rows = digits_data().test_x[:8]
    status, body = served.infer(rows)
    assert status == 200 and body["model_version"] == "1"
    expected = ort.InferenceSession(str(digits_files["onnx"])).run(None, {"x": rows})[0]
    np.testing.assert_allclose(np.asarray(body["outputs"][0]["data"]).reshape(expected.shape), expected, rtol=1e-5)
    for _ in range(39):
        assert served.infer(rows[:1])[0] == 200
    for _ in range(5):
        bad = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 0]}]}
        status, answer = call(served.url + "/v2/models/digits/infer", bad)
        assert status == 400 and "x" in answer["error"]
    wait_for(lambda: reported(served.endpoint) == 45, timeout=30, message="every request to be reported")
    assert reported(served.endpoint, "errors") == 5
    kinds = Counter()
    for window in MetricWindow.objects.filter(endpoint=served.endpoint):
        kinds.update(window.error_kinds)
    assert kinds == {"invalid_input": 5}


def test_a_canary_takes_its_share_and_switches_lose_nothing(served, digits_version, engineer):
    from dashboard.demo import digits_data

    cpu = HardwareTarget.objects.get(slug="cpu")
    compress = job_services.job_create(
        kind="compress", version=digits_version, target=cpu, params={"method": "dynamic_int8"}
    )
    job_services.job_run(job_id=compress.id, worker_host="test")
    canary = Job.objects.get(pk=compress.pk).output_version
    services.deploy(endpoint=served.endpoint, version=canary, weight=10, user=engineer)
    wait_for(
        lambda: served.versions() == sorted(["1", canary.version]), timeout=30, message="the runtime to load the canary"
    )

    rows = digits_data().test_x[:1]
    seen = Counter(served.infer(rows)[1]["model_version"] for _ in range(2000))
    assert abs(seen[canary.version] / 2000 - 0.10) <= 0.03, seen

    failures, stop = [], threading.Event()

    def steady_traffic():
        while not stop.is_set():
            status, body = served.infer(rows)
            if status != 200:
                failures.append((status, body))

    thread = threading.Thread(target=steady_traffic)
    thread.start()
    try:
        services.deploy(endpoint=served.endpoint, version=canary, weight=100, user=engineer)
        wait_for(lambda: served.versions() == [canary.version], timeout=30, message="the promotion")
        services.rollback(endpoint=served.endpoint, user=engineer)
        wait_for(lambda: served.versions() == sorted(["1", canary.version]), timeout=30, message="the rollback")
    finally:
        stop.set()
        thread.join()
    assert failures == []


@pytest.mark.worker
def test_production_requests_are_compared_with_the_end_to_end_benchmark_of_their_encoding(
    served, celery_worker, engineer_api, viewer_api
):
    """A real request benchmark (a worker's own berth-serve, JSON, batch 1) and real production
    traffic (this berth-serve, JSON requests of one row, telemetry to the dashboard): the metrics
    API compares the two, and nothing else."""
    from dashboard.demo import digits_data

    response = engineer_api.post(
        "/api/v1/jobs/",
        {
            "kind": "benchmark",
            "version": "digits:1",
            "target": "cpu",
            "params": {"measure": "requests", "encoding": "json", "min_runs": 20, "min_seconds": 0.2},
        },
        format="json",
    )
    assert response.status_code == 202, response.json()
    job = wait_for(
        lambda: Job.objects.filter(id=response.json()["id"], status__in=Job.FINISHED).first(),
        timeout=300,
        message="the request benchmark",
    )
    assert job.status == Job.Status.SUCCEEDED, job.error
    benchmark_p95 = job.result["results"][0]["p95_ms"]

    rows = digits_data().test_x[:60]
    for row in rows:
        assert served.infer(row[None])[0] == 200
    wait_for(lambda: reported(served.endpoint) == 60, timeout=30, message="every request to be reported")
    data = viewer_api.get("/api/v1/endpoints/digits-prod/metrics/?range=15m").json()
    (version,) = data["versions"]
    request = version["benchmark"]["request"]
    assert request["comparable"], request
    assert (request["encoding"], request["batch_size"], request["requests"], request["share"]) == ("json", 1, 60, 1.0)
    assert request["benchmark_p95_ms"] == pytest.approx(benchmark_p95)
    assert request["ratio"] == pytest.approx(request["production_p95_ms"] / benchmark_p95)
    assert version["request_benchmark_p95_ms"] == pytest.approx(benchmark_p95)
    # The session.run figure is never beside requests: this version has no session.run benchmark.
    assert not version["benchmark"]["inference"]["comparable"] and version["benchmark_p95_ms"] is None
