"""What serving runtimes call with their endpoint token: spec, artifacts, telemetry, integrity reports."""

import json
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import Endpoint, MetricWindow, TelemetryFlush
from registry.models import ModelVersion
from serving.protocol import ENCODINGS
from serving.telemetry import REQUEST_SKETCHES
from tests.conftest import sha256_of
from tests.monitoring.conftest import profile_prediction, reference_x_mean

pytestmark = pytest.mark.django_db


def flush(version="1", requests=10, errors=1, **extra):
    start = timezone.now().replace(microsecond=0) - timedelta(seconds=30)
    body = {
        "endpoint": "digits-prod",
        "flush_id": str(uuid.uuid4()),
        "start": start.isoformat().replace("+00:00", "Z"),
        "seconds": 10,
        "dropped": 0,
        "series": [
            {
                "version": version,
                "requests": requests,
                "errors": errors,
                "error_kinds": {"invalid_input": errors},
                "latency": {"alpha": 0.01, "buckets": {"100": requests - 1, "101": 1}, "zero_count": 0},
                "features": {"x.mean": [1, 2, requests - 3]},
            }
        ],
    }
    body.update(extra)
    return body


def post(runtime, body):
    return runtime.post("/api/v1/telemetry/", body, format="json")


def test_the_spec_says_what_to_serve(runtime, endpoint, onnx_file):
    response = runtime.get("/api/v1/endpoints/digits-prod/spec/")
    assert response.status_code == 200
    spec = response.json()
    assert spec["endpoint"] == "digits-prod" and spec["model"] == "digits"
    assert spec["target"]["execution_provider"] == "CPUExecutionProvider"
    (deployment,) = spec["deployments"]
    assert deployment["version"] == "1" and deployment["weight"] == 100
    assert deployment["sha256"] == sha256_of(onnx_file)
    assert deployment["io_signature"]["inputs"][0]["name"] == "x"
    assert spec["telemetry"]["url"] == "/api/v1/telemetry/" and spec["telemetry"]["flush_seconds"] == 10
    artifact = runtime.get(deployment["artifact_url"])
    assert b"".join(artifact.streaming_content) == onnx_file.read_bytes()


def test_the_spec_answers_304_until_it_changes(runtime, engineer_api, endpoint):
    etag = runtime.get("/api/v1/endpoints/digits-prod/spec/")["ETag"]
    assert runtime.get("/api/v1/endpoints/digits-prod/spec/", HTTP_IF_NONE_MATCH=etag).status_code == 304
    engineer_api.post("/api/v1/endpoints/digits-prod/deploy/", {"version": "2", "weight": 10}, format="json")
    changed = runtime.get("/api/v1/endpoints/digits-prod/spec/", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200 and changed["ETag"] != etag
    assert {d["version"]: d["weight"] for d in changed.json()["deployments"]} == {"1": 90, "2": 10}


def test_the_spec_carries_the_reference_features(runtime, endpoint):
    version = ModelVersion.objects.get(version="1")
    dataset = reference_x_mean(version, edges=[0.1, 0.2], counts=[30, 40, 30], rows=100)
    profile_prediction(version, dataset, counts=[20, 30, 50])
    features = runtime.get("/api/v1/endpoints/digits-prod/spec/").json()["deployments"][0]["features"]
    assert features == [
        {"name": "x.mean", "kind": "mean", "input": "x", "edges": [0.1, 0.2]},
        {"name": "prediction", "kind": "class", "output": "probs", "classes": 3},
    ]


def test_runtime_calls_need_the_endpoints_own_token(runtime, anon_api, engineer_api, endpoint):
    from monitoring import services

    assert anon_api.get("/api/v1/endpoints/digits-prod/spec/").status_code == 401
    anon_api.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert anon_api.get("/api/v1/endpoints/digits-prod/spec/").status_code == 401
    assert post(anon_api, flush()).status_code == 401
    assert engineer_api.get("/api/v1/endpoints/digits-prod/spec/").status_code == 401  # a user token is no endpoint
    services.endpoint_create(name="other", model=endpoint.model, target=endpoint.target)
    assert runtime.get("/api/v1/endpoints/other/spec/").status_code == 403
    assert runtime.get("/api/v1/endpoints/nope/spec/").status_code == 404
    assert runtime.get("/api/v1/endpoints/digits-prod/artifacts/2/").status_code == 404  # never deployed here


def test_telemetry_is_counted_into_minute_windows(runtime, endpoint):
    assert post(runtime, flush(requests=10, errors=1)).status_code == 202
    assert post(runtime, flush(requests=5, errors=0)).status_code == 202
    window = MetricWindow.objects.get()
    assert (window.requests, window.errors, window.flushes) == (15, 1, 2)
    assert window.error_kinds == {"invalid_input": 1}
    assert window.latency["buckets"] == {"100": 13, "101": 2}
    assert window.features["x.mean"] == [2, 4, 9]
    assert window.start.second == 0 and window.resolution == "minute"


def test_a_retried_flush_counts_once(runtime, endpoint):
    body = flush()
    assert post(runtime, body).status_code == 202
    again = post(runtime, body)
    assert again.status_code == 200 and again.json() == {"accepted": False, "duplicate": True}
    assert MetricWindow.objects.get().requests == 10 and TelemetryFlush.objects.count() == 1


@pytest.mark.parametrize(
    "change,field",
    [
        ({"flush_id": "nope"}, "flush_id"),
        ({"start": "yesterday"}, "start"),
        ({"start": "2020-01-01T00:00:00Z"}, "start"),
        ({"seconds": -1}, "seconds"),
        ({"flush_id": None}, "flush_id"),
        ({"flush_id": 12}, "flush_id"),
        ({"dropped": -1}, "dropped"),
        ({"series": {"version": "1"}}, "series"),
        ({"series": [7]}, "series.0"),
    ],
)
def test_a_malformed_flush_is_refused(runtime, endpoint, change, field):
    response = post(runtime, flush(**change))
    assert response.status_code == 400 and field in response.json()["errors"], response.json()
    assert not MetricWindow.objects.exists() and not TelemetryFlush.objects.exists()


@pytest.mark.parametrize("missing", ["flush_id", "start", "series"])
def test_a_flush_without_a_required_part_is_refused(runtime, endpoint, missing):
    body = flush()
    del body[missing]
    response = post(runtime, body)
    assert response.status_code == 400 and missing in response.json()["errors"], response.json()
    assert not TelemetryFlush.objects.exists()


def test_a_flush_that_is_no_object_is_refused(runtime, endpoint):
    response = runtime.post("/api/v1/telemetry/", "[1, 2]", content_type="application/json")
    assert response.status_code == 400 and "JSON object" in response.json()["detail"], response.json()


def test_telemetry_with_a_nul_character_is_refused(runtime, endpoint):
    body = flush()
    body["series"][0]["error_kinds"] = {"bad\x00kind": 1}
    response = post(runtime, body)
    assert response.status_code == 400 and "NUL" in response.json()["detail"]
    assert not MetricWindow.objects.exists() and not TelemetryFlush.objects.exists()


def test_telemetry_is_json_only(runtime, endpoint):
    response = runtime.post("/api/v1/telemetry/", {"flush_id": "x"}, format="multipart")
    assert response.status_code == 415
    assert not MetricWindow.objects.exists()


@pytest.mark.parametrize(
    "series_change,field",
    [
        ({"version": "9"}, "series.0.version"),
        ({"requests": -1}, "series.0.requests"),
        ({"errors": 20}, "series.0.requests"),
        ({"latency": {"alpha": 0.01, "buckets": {"100": -2}}}, "series.0.latency"),
        ({"latency": {"alpha": 0.01, "buckets": {"a": 1}}}, "series.0.latency"),
        ({"latency": {"alpha": 0.05, "buckets": {"1": 1}}}, "series.0.latency"),
        ({"features": {"x.mean": [1, -1]}}, "series.0.features"),
    ],
)
def test_a_malformed_series_writes_nothing(runtime, endpoint, series_change, field):
    body = flush()
    body["series"].append({**body["series"][0], **series_change})  # the second series is the bad one
    response = post(runtime, body)
    assert response.status_code == 400 and field.replace("0", "1") in response.json()["errors"], response.json()
    assert not MetricWindow.objects.exists() and not TelemetryFlush.objects.exists()


def test_nan_latency_is_refused(runtime, endpoint):
    text = json.dumps(flush()).replace('"zero_count": 0', '"zero_count": NaN')
    response = runtime.post("/api/v1/telemetry/", text, content_type="application/json")
    assert response.status_code == 400
    assert not MetricWindow.objects.exists()


def test_an_oversized_flush_is_refused(runtime, endpoint, settings):
    settings.BERTH_TELEMETRY_MAX_BYTES = 200
    response = post(runtime, flush())
    assert response.status_code == 413 and "at most 200 bytes" in response.json()["detail"]
    assert not TelemetryFlush.objects.exists()


def integrity_report(version="1", **changes):
    return {
        "version": version,
        "expected_sha256": "a" * 64,
        "actual_sha256": "b" * 64,
        "where": "download",
        "detail": "sha256 mismatch: …",
        "host": "serve-1",
        **changes,
    }


def test_a_runtime_reports_a_sha256_mismatch_into_the_audit_log(runtime, endpoint, admin_user):
    from common.models import AuditEvent

    answer = runtime.post("/api/v1/endpoints/digits-prod/integrity/", integrity_report(), format="json")
    assert answer.status_code == 201
    event = AuditEvent.objects.get(pk=answer.json()["audit_event"])
    assert (event.action, event.target) == ("integrity", "digits:1")
    assert event.details["endpoint"] == "digits-prod" and event.details["host"] == "serve-1"
    assert event.details["registry_sha256"] == ModelVersion.objects.get(version="1").sha256
    from django.test import Client

    page = Client()
    page.force_login(admin_user)
    assert "serve-1" in page.get("/audit/?action=integrity").content.decode()


@pytest.mark.parametrize(
    "changes,status",
    [
        ({"version": "2"}, 404),  # never deployed on this endpoint
        ({"expected_sha256": "xyz"}, 400),
        ({"where": "moon"}, 400),
        ({"actual_sha256": None}, 400),
    ],
)
def test_a_bad_integrity_report_writes_nothing(runtime, endpoint, changes, status):
    from common.models import AuditEvent

    answer = runtime.post("/api/v1/endpoints/digits-prod/integrity/", integrity_report(**changes), format="json")
    assert answer.status_code == status and answer.json()["detail"]
    assert not AuditEvent.objects.filter(action="integrity").exists()


def test_only_the_endpoints_runtime_reports_integrity(anon_api, engineer_api, endpoint):
    assert (
        anon_api.post("/api/v1/endpoints/digits-prod/integrity/", integrity_report(), format="json").status_code == 401
    )
    assert (
        engineer_api.post("/api/v1/endpoints/digits-prod/integrity/", integrity_report(), format="json").status_code
        == 401
    )  # a user token is no endpoint token


def test_batch_sizes_are_summed_into_windows_and_shown_per_version(runtime, endpoint):
    from monitoring import series

    # One fixed start: flushes stamped "now - 30 s" one by one could fall in two minutes (two windows).
    start = (timezone.now().replace(second=10, microsecond=0) - timedelta(minutes=1)).isoformat()
    for batch_sizes in ({"1": 3, "8": 2}, {"8": 1, "16": 4}):
        body = flush(start=start)
        body["series"][0]["batch_sizes"] = batch_sizes
        assert post(runtime, body).status_code == 202
    assert post(runtime, flush(start=start)).status_code == 202  # a runtime that sends none
    assert MetricWindow.objects.get().batch_sizes == {"1": 3, "8": 3, "16": 4}
    (summary,) = series.recent(endpoint, minutes=5).values()
    assert summary["batch_sizes"] == [(1, 3), (8, 3), (16, 4)]


@pytest.mark.parametrize("batch_sizes", [{"8": -1}, {"eight": 1}, {"²": 1}, [8], {"8": 1.5}])
def test_malformed_batch_sizes_write_nothing(runtime, endpoint, batch_sizes):
    body = flush()
    body["series"][0]["batch_sizes"] = batch_sizes
    response = post(runtime, body)
    assert response.status_code == 400 and "series.0.batch_sizes" in response.json()["errors"], response.json()
    assert not MetricWindow.objects.exists()


def test_the_spec_carries_the_endpoints_batching(runtime, engineer_api, endpoint):
    assert runtime.get("/api/v1/endpoints/digits-prod/spec/").json()["batching"] == {
        "max_batch_size": 1,
        "max_queue_delay_us": 0,
        "threads": None,
    }
    response = engineer_api.patch(
        "/api/v1/endpoints/digits-prod/", {"max_batch_size": 16, "max_queue_delay_us": 2000}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["max_batch_size"], response.json()["max_queue_delay_us"]) == (16, 2000)
    assert runtime.get("/api/v1/endpoints/digits-prod/spec/").json()["batching"] == {
        "max_batch_size": 16,
        "max_queue_delay_us": 2000,
        "threads": None,
    }
    refused = engineer_api.patch(
        "/api/v1/endpoints/digits-prod/", {"max_batch_size": 0, "max_queue_delay_us": 2000}, format="json"
    )
    assert refused.status_code == 400 and "max_batch_size" in refused.json()["errors"]


def test_inference_threads_are_set_kept_and_cleared_through_the_api(runtime, engineer_api, endpoint):
    def patch(body):
        return engineer_api.patch("/api/v1/endpoints/digits-prod/", body, format="json")

    response = patch({"max_batch_size": 8, "max_queue_delay_us": 500, "inference_threads": 4})
    assert response.status_code == 200 and response.json()["inference_threads"] == 4, response.json()
    assert runtime.get("/api/v1/endpoints/digits-prod/spec/").json()["batching"]["threads"] == 4
    assert patch({"max_batch_size": 16, "max_queue_delay_us": 500}).json()["inference_threads"] == 4  # absent: kept
    for bad in (0, 65, "four"):
        refused = patch({"max_batch_size": 16, "max_queue_delay_us": 500, "inference_threads": bad})
        assert refused.status_code == 400 and "inference_threads" in refused.json()["errors"], refused.json()
    assert Endpoint.objects.get().inference_threads == 4  # nothing written by the refusals
    cleared = patch({"max_batch_size": 16, "max_queue_delay_us": 500, "inference_threads": None})
    assert cleared.json()["inference_threads"] is None
    assert runtime.get("/api/v1/endpoints/digits-prod/spec/").json()["batching"]["threads"] is None


def test_the_inference_only_sketch_is_stored_by_batch_size_and_checked(runtime, endpoint):
    body = flush(requests=10)
    body["series"][0]["inference_latency"] = {
        "1": {"alpha": 0.01, "buckets": {"50": 6}, "zero_count": 0},
        "4": {"alpha": 0.01, "buckets": {"60": 1}, "zero_count": 0},
    }
    assert post(runtime, body).status_code == 202
    (window,) = MetricWindow.objects.all()
    assert window.inference_latency == {
        "1": {"alpha": 0.01, "buckets": {"50": 6}, "zero_count": 0},
        "4": {"alpha": 0.01, "buckets": {"60": 1}, "zero_count": 0},
    }
    for bad in ({"one": {"buckets": {}}}, {"1": {"alpha": 0.5, "buckets": {}}}, {"1": {"buckets": {"x": 1}}}, []):
        body = flush()
        body["series"][0]["inference_latency"] = bad
        response = post(runtime, body)
        assert response.status_code == 400 and any("inference_latency" in f for f in response.json()["errors"])
    assert MetricWindow.objects.get().requests == 10  # nothing partial written


def test_request_latency_is_stored_by_encoding_and_rows_and_checked(runtime, endpoint):
    # One start for every flush, so that all fall in one minute window whenever the test runs.
    start = (timezone.now().replace(second=10, microsecond=0) - timedelta(minutes=1)).isoformat()
    body = flush(requests=10, start=start)
    body["series"][0]["request_latency"] = {
        "json": {"1": {"alpha": 0.01, "buckets": {"300": 6}, "zero_count": 0}},
        "grpc": {"8": {"alpha": 0.01, "buckets": {"320": 3}, "zero_count": 0}},
    }
    assert post(runtime, body).status_code == 202
    body = flush(requests=4, start=start)
    body["series"][0]["request_latency"] = {"json": {"1": {"alpha": 0.01, "buckets": {"300": 2}, "zero_count": 0}}}
    assert post(runtime, body).status_code == 202
    (window,) = MetricWindow.objects.all()
    assert window.request_latency == {
        "json": {"1": {"alpha": 0.01, "buckets": {"300": 8}, "zero_count": 0}},
        "grpc": {"8": {"alpha": 0.01, "buckets": {"320": 3}, "zero_count": 0}},
    }
    for bad in (
        {"xml": {"1": {"alpha": 0.01, "buckets": {}}}},
        {"json": {"one": {"alpha": 0.01, "buckets": {}}}},
        {"json": {"1": {"alpha": 0.5, "buckets": {}}}},
        {"json": []},
        [],
    ):
        body = flush(start=start)
        body["series"][0]["request_latency"] = bad
        response = post(runtime, body)
        assert response.status_code == 400 and any("request_latency" in f for f in response.json()["errors"]), bad
    assert MetricWindow.objects.get().requests == 14  # nothing partial written
    # A flush without it (an older berth-serve) is still counted.
    assert post(runtime, flush(requests=5, start=start)).status_code == 202
    assert MetricWindow.objects.get().requests == 19


def test_request_latency_past_the_sketch_cap_refuses_the_whole_flush(runtime, endpoint):
    def sketches(count):
        """``count`` request sketches, by encoding (in turn) and rows."""
        by_encoding = {}
        for i in range(count):
            by_encoding.setdefault(ENCODINGS[i % len(ENCODINGS)], {})[str(i + 1)] = {
                "alpha": 0.01,
                "buckets": {"300": 1},
                "zero_count": 0,
            }
        return by_encoding

    # One start for both flushes, so that they fall in one minute window whenever the test runs.
    start = (timezone.now().replace(second=10, microsecond=0) - timedelta(minutes=1)).isoformat()
    at_cap = flush(requests=REQUEST_SKETCHES, errors=0, start=start)
    at_cap["series"][0]["request_latency"] = sketches(REQUEST_SKETCHES)
    assert post(runtime, at_cap).status_code == 202
    stored = MetricWindow.objects.get().request_latency
    assert sum(len(by_rows) for by_rows in stored.values()) == REQUEST_SKETCHES
    over = flush(requests=REQUEST_SKETCHES + 1, errors=0, start=start)
    over["series"][0]["request_latency"] = sketches(REQUEST_SKETCHES + 1)
    response = post(runtime, over)
    assert response.status_code == 400
    (message,) = response.json()["errors"]["series.0.request_latency"]
    assert f"at most {REQUEST_SKETCHES} encoding × rows sketches" in message
    # Nothing of the refused flush is written: the window and the flush log are as before.
    assert MetricWindow.objects.get().requests == REQUEST_SKETCHES
    assert MetricWindow.objects.get().request_latency == stored
    assert not TelemetryFlush.objects.filter(flush_id=over["flush_id"]).exists()
