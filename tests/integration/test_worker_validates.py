"""A real Celery worker on the real broker validates what the API registered."""

import pytest

from jobs.models import Job
from registry.models import ModelVersion
from tests.conftest import register, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_it_validates_a_registered_version_end_to_end(celery_worker, engineer_api, onnx_file):
    response = register(engineer_api, onnx_file, version="7")
    assert response.status_code == 201

    def finished():
        job = Job.objects.get(version_id=response.json()["id"])
        return job if job.is_finished else None

    job = wait_for(finished, timeout=60, message="the validate job to finish")
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.worker_host
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.status == ModelVersion.Status.READY
    assert version.io_signature["inputs"] == [
        {"name": "x", "dtype": "float32", "shape": ["batch", 4], "dynamic_axes": [0]}
    ]
    assert version.io_signature["outputs"][0]["name"] == "probs"
    body = engineer_api.get("/api/v1/models/digits/versions/7/").json()
    assert body["status"] == "ready"
    assert body["jobs"][0]["status"] == "succeeded"


def test_a_second_delivery_of_a_finished_job_does_nothing(celery_worker, engineer_api, onnx_file):
    from jobs.tasks import run_job

    response = register(engineer_api, onnx_file, version="8")
    job_id = Job.objects.get(version_id=response.json()["id"]).id
    done = wait_for(
        lambda: Job.objects.filter(id=job_id, status=Job.Status.SUCCEEDED).first(), timeout=60, message="the first run"
    )
    run_job.apply_async(args=[job_id], queue="default")
    # A marker job queued after the re-delivery: once it ran, the re-delivery was consumed too.
    marker = Job.objects.create(kind="validate", version=done.version, queue="default")
    run_job.apply_async(args=[marker.id], queue="default")
    wait_for(lambda: Job.objects.get(id=marker.id).is_finished, timeout=60, message="the marker job")
    again = Job.objects.get(id=job_id)
    assert again.status == Job.Status.SUCCEEDED
    assert again.started == done.started and again.finished == done.finished
    assert again.log == done.log
