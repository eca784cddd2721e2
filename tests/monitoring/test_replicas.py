"""Replicas: what each berth-serve reports about itself, which token it uses, and how the
endpoint lists them (serving, silent, refused) through a token rotation."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import Endpoint, MetricWindow, Replica
from tests.monitoring.test_runtime_api import flush

pytestmark = pytest.mark.django_db

INSTANCE = "3f1c2b9a8d7e4f60a1b2c3d4e5f60718"


def report(**extra):
    now = timezone.now().isoformat().replace("+00:00", "Z")
    return {
        "instance": INSTANCE,
        "host": "serve-a",
        "pid": 4242,
        "runtime": "berth-serve 0.1",
        "generation": 1,
        "versions": ["1"],
        "spec_polled": now,
        "started": now,
        **extra,
    }


def post(runtime, body):
    return runtime.post("/api/v1/telemetry/", body, format="json", HTTP_X_BERTH_INSTANCE=INSTANCE)


def replicas(client):
    return client.get("/api/v1/endpoints/digits-prod/").json()["replicas"]


def test_a_replica_is_listed_with_what_it_reported(runtime, viewer_api, endpoint):
    assert post(runtime, flush(replica=report())).status_code == 202
    (row,) = replicas(viewer_api)
    assert row["instance"] == INSTANCE and row["host"] == "serve-a" and row["pid"] == 4242
    assert row["generation"] == 1 and row["versions"] == ["1"] and row["spec_polled"]
    assert row["state"] == "serving" and row["token"] == "current"


def test_telemetry_without_a_replica_object_is_still_accepted(runtime, viewer_api, endpoint):
    assert post(runtime, flush()).status_code == 202
    assert replicas(viewer_api) == []


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"instance": "short"}, "replica"),
        (report(pid=-1), "replica.pid"),
        (report(versions="1"), "replica.versions"),
        (report(spec_polled="yesterday"), "replica.spec_polled"),
        (report(secret="x"), "replica"),
    ],
)
def test_a_malformed_replica_object_is_refused_before_anything_is_counted(runtime, endpoint, bad, field):
    response = post(runtime, flush(replica=bad))
    assert response.status_code == 400 and field in response.json()["errors"]
    assert not MetricWindow.objects.exists() and not Replica.objects.exists()


def test_a_silent_replica_is_flagged(runtime, viewer_api, endpoint, settings):
    post(runtime, flush(replica=report()))
    Replica.objects.update(last_seen=timezone.now() - timedelta(seconds=settings.BERTH_REPLICA_SILENT_SECONDS + 5))
    assert replicas(viewer_api)[0]["state"] == "silent"


def test_through_a_rotation_the_replica_shows_its_old_token_then_refused(runtime, engineer_api, viewer_api, endpoint):
    post(runtime, flush(replica=report()))
    new = engineer_api.post("/api/v1/endpoints/digits-prod/token/").json()["token"]
    # In the grace period, the replica keeps reporting with the old token, and is shown so.
    assert post(runtime, flush(replica=report())).status_code == 202
    (row,) = replicas(viewer_api)
    assert row["token"] == "old" and row["state"] == "serving"
    # After it, its flush is refused, and the replica is listed as refused, with the reason.
    Endpoint.objects.filter(pk=endpoint.pk).update(old_token_expires=timezone.now() - timedelta(seconds=1))
    assert post(runtime, flush(replica=report())).status_code == 401
    (row,) = replicas(viewer_api)
    assert row["state"] == "refused" and "grace period ended" in row["refused_reason"]
    # Restarted with the new token, it serves again.
    runtime.credentials(HTTP_AUTHORIZATION=f"Bearer {new}")
    assert post(runtime, flush(replica=report())).status_code == 202
    (row,) = replicas(viewer_api)
    assert row["state"] == "serving" and row["token"] == "current"


def test_a_stranger_cannot_mark_a_replica_refused(runtime, anon_api, viewer_api, endpoint):
    post(runtime, flush(replica=report()))
    anon_api.credentials(HTTP_AUTHORIZATION="Bearer not-the-token", HTTP_X_BERTH_INSTANCE=INSTANCE)
    assert anon_api.get("/api/v1/endpoints/digits-prod/spec/").status_code == 401
    assert replicas(viewer_api)[0]["state"] == "serving"
