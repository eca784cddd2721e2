"""Jobs: the API CI polls, and the services that claim, run, fail and cancel them."""

import pytest

from jobs import services
from jobs.models import Job
from registry.models import ModelVersion
from tests.conftest import failing_onnx_bytes, register

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(engineer_api, onnx_file):
    register(engineer_api, onnx_file, version="1")
    return Job.objects.get()


def test_it_lists_and_filters_jobs(viewer_api, job):
    body = viewer_api.get("/api/v1/jobs/").json()
    assert body["count"] == 1 and body["results"][0]["kind"] == "validate"
    assert viewer_api.get("/api/v1/jobs/?status=running").json()["count"] == 0
    assert viewer_api.get("/api/v1/jobs/?version=digits:1").json()["count"] == 1
    detail = viewer_api.get(f"/api/v1/jobs/{job.id}/").json()
    assert detail["status"] == "queued" and detail["version"] == "digits:1" and "log" in detail
    assert viewer_api.get("/api/v1/jobs/999/").status_code == 404


def test_it_starts_a_validate_job(engineer_api, job):
    response = engineer_api.post("/api/v1/jobs/", {"kind": "validate", "version": "digits:1"}, format="json")
    assert response.status_code == 202
    assert response.json()["status"] == "queued" and response.json()["queue"] == "default"
    assert Job.objects.count() == 2


@pytest.mark.parametrize(
    "body,field",
    [
        ({"kind": "explode", "version": "digits:1"}, "kind"),
        ({"kind": "validate", "version": "digits:404"}, "version"),
        ({"kind": "validate", "version": "no-colon"}, "version"),
        ({"kind": "validate", "version": "digits:1", "params": {"x": 1}}, "params"),
        ({"kind": "validate", "version": "digits:1", "target": "nope"}, "target"),
    ],
)
def test_it_refuses_bad_job_requests(engineer_api, job, body, field):
    response = engineer_api.post("/api/v1/jobs/", body, format="json")
    assert response.status_code in (400, 404)
    assert field in response.json()["errors"], response.json()
    assert Job.objects.count() == 1


def test_viewers_cannot_start_or_cancel_jobs(viewer_api, job):
    assert (
        viewer_api.post("/api/v1/jobs/", {"kind": "validate", "version": "digits:1"}, format="json").status_code == 403
    )
    assert viewer_api.post(f"/api/v1/jobs/{job.id}/cancel/").status_code == 403
    assert Job.objects.get().status == "queued"


def test_cancel_marks_the_job_and_refuses_a_finished_one(engineer_api, job):
    response = engineer_api.post(f"/api/v1/jobs/{job.id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert "Cancelled by ed" in response.json()["log"]
    again = engineer_api.post(f"/api/v1/jobs/{job.id}/cancel/")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]


def test_a_cancelled_job_never_runs(job):
    services.job_cancel(job=job)
    services.job_run(job_id=job.id, worker_host="test")
    job.refresh_from_db()
    assert job.status == "cancelled" and job.started is None


def test_a_job_runs_once_even_if_delivered_twice(job):
    services.job_run(job_id=job.id, worker_host="first")
    done = Job.objects.get(id=job.id)
    assert done.status == "succeeded" and done.worker_host == "first"
    services.job_run(job_id=job.id, worker_host="second")
    again = Job.objects.get(id=job.id)
    assert (again.worker_host, again.finished, again.log) == ("first", done.finished, done.log)


def test_an_invalid_model_fails_the_job_with_the_engines_reason(engineer_api, tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(failing_onnx_bytes())
    register(engineer_api, path, model="bad", version="1")
    job = Job.objects.get()
    services.job_run(job_id=job.id, worker_host="test")
    job.refresh_from_db()
    version = ModelVersion.objects.get()
    assert job.status == "failed"
    assert job.error.startswith("Test inference failed on generated inputs")
    assert "Traceback" not in job.error
    assert version.status == "invalid" and version.status_detail == job.error


def test_a_changed_artifact_fails_validation_loudly(job):
    version = job.version
    with open(version.artifact.path, "ab") as f:
        f.write(b"tampered")
    services.job_run(job_id=job.id, worker_host="test")
    job.refresh_from_db()
    assert job.status == "failed" and "changed on disk" in job.error
    version.refresh_from_db()
    assert version.status == "invalid"
    # ... and is audited, for the admins to see.
    from common.models import AuditEvent

    event = AuditEvent.objects.get(action="integrity")
    assert (
        event.target == version.ref and event.details["job"] == job.id and "changed on disk" in event.details["error"]
    )
    assert event.details["worker"] == "test"


def test_revalidating_an_invalid_version_resets_it(engineer_api, job):
    ModelVersion.objects.update(status="invalid", status_detail="old")
    engineer_api.post("/api/v1/jobs/", {"kind": "validate", "version": "digits:1"}, format="json")
    assert ModelVersion.objects.get().status == "validating"


def _worker(hostname, queues, seen_seconds_ago=0):
    from datetime import timedelta

    from django.utils import timezone

    from jobs.models import WorkerHost

    seen = timezone.now() - timedelta(seconds=seen_seconds_ago)
    return WorkerHost.objects.create(hostname=hostname, queues=queues, started=seen, last_seen=seen)


def test_the_reaper_fails_running_jobs_whose_heartbeat_stopped(job, settings):
    from datetime import timedelta

    from django.utils import timezone

    services.job_claim(job_id=job.id, worker_host="celery@gone")
    assert services.jobs_reap() == 0  # fresh heartbeat
    Job.objects.filter(pk=job.pk).update(heartbeat=timezone.now() - timedelta(seconds=600))
    assert services.jobs_reap() == 1
    job.refresh_from_db()
    assert job.status == "failed" and job.error.startswith("Worker lost: celery@gone stopped reporting")
    assert ModelVersion.objects.get().status == "invalid"
    services.job_run(job_id=job.id, worker_host="celery@back")  # the re-delivered message
    job.refresh_from_db()
    assert job.status == "failed" and job.worker_host == "celery@gone"


def test_the_reconciler_resends_jobs_an_idle_worker_never_got(job, settings):
    from datetime import timedelta

    from django.utils import timezone

    long_ago = timezone.now() - timedelta(seconds=settings.BERTH_JOB_REQUEUE_AFTER_SECONDS + 60)
    Job.objects.filter(pk=job.pk).update(enqueued=long_ago)
    assert services.jobs_requeue_lost() == 0  # no live worker on "default": nothing would take it
    _worker("celery@idle", ["default"])
    _worker("celery@old", ["default"], seen_seconds_ago=3600)
    assert services.jobs_requeue_lost() == 1
    job.refresh_from_db()
    assert job.enqueued > long_ago and "Re-sent to the broker" in job.log
    assert services.jobs_requeue_lost() == 0  # not again before BERTH_JOB_REQUEUE_AFTER_SECONDS


def test_the_reconciler_leaves_jobs_behind_a_busy_worker(job, settings):
    from datetime import timedelta

    from django.utils import timezone

    Job.objects.filter(pk=job.pk).update(
        enqueued=timezone.now() - timedelta(seconds=settings.BERTH_JOB_REQUEUE_AFTER_SECONDS + 60)
    )
    _worker("celery@busy", ["default"])
    Job.objects.create(kind="validate", version=job.version, status="running", worker_host="celery@busy")
    assert services.jobs_requeue_lost() == 0
