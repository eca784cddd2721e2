"""Redis restarted while jobs are queued and one runs: no job is lost or stuck.

Redis runs as CI and DESIGN run it, without persistence, so the restart forgets every message:
the queued ones and the running job's unacknowledged one. Berth does not ask for a persistent
Redis (even appendonly loses the last second on a crash): the Job row is the truth, and beat's
reconciler sends the queued jobs the broker no longer has, and the jobs created while it was
down, once it is back."""

import pytest

from berth.client import upload_complete, upload_file
from jobs.models import BenchmarkResult, Job
from jobs.services import NOT_SENT
from registry.models import ModelVersion
from tests.conftest import tiny_onnx_bytes, wait_for

from .conftest import api

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

QUICK = {"min_runs": 10, "min_seconds": 0.05, "max_seconds": 5, "warmup": 2, "measure_memory": False}


def benchmark(client, params=QUICK):
    status, job = client.json(
        "POST", "/api/v1/jobs/", {"kind": "benchmark", "version": "digits:1", "target": "cpu", "params": params}
    )
    assert status == 202, job
    return job


def register_version(client, folder, version):
    path = folder / f"digits-{version}.onnx"
    path.write_bytes(tiny_onnx_bytes(seed=int(version)))
    upload = upload_file(client, path, chunk_size=64 * 1024)
    created, body = upload_complete(client, upload["id"], model="digits", version=version)
    assert created and body["status"] == "validating", body
    return Job.objects.get(version_id=body["id"], kind="validate").id


def test_no_job_is_lost_or_stuck_when_redis_restarts(processes, ready_version, engineer, tmp_path):
    redis = processes.redis()
    broker = {"CELERY_BROKER_URL": redis.url}
    dashboard = processes.dashboard(wait=False, **broker)
    # Beat sends the reconciler every second; a queued job counts as lost after 2 s with its
    # worker idle (600 s by default).
    worker = processes.worker(
        ["default", "target.cpu"],
        beat=True,
        wait=False,
        BERTH_REQUEUE_SECONDS=1,
        BERTH_JOB_REQUEUE_AFTER_SECONDS=2,
        **broker,
    )
    dashboard.wait_ready()
    worker.wait_ready()
    client = api(dashboard, engineer)

    running = benchmark(client, {**QUICK, "min_seconds": 8, "max_seconds": 9})["id"]
    wait_for(lambda: Job.objects.get(id=running).status == "running", timeout=60, message="the long benchmark to start")
    queued = [benchmark(client)["id"] for _ in range(2)]
    queued += [register_version(client, tmp_path, version) for version in ("2", "3")]
    doomed = benchmark(client)["id"]
    assert redis.job_messages() == sorted([running, *queued, doomed])
    assert Job.objects.get(id=running).status == "running"

    redis.kill()
    status, created_while_down = client.json(
        "POST", "/api/v1/jobs/", {"kind": "benchmark", "version": "digits:1", "target": "cpu", "params": QUICK}
    )
    assert status == 202 and created_while_down["status"] == "queued"
    assert created_while_down["message"] == NOT_SENT
    status, cancelled = client.json("POST", f"/api/v1/jobs/{doomed}/cancel/")
    assert status == 200 and cancelled["status"] == "cancelled"
    redis.start()
    assert redis.job_messages() == []  # the restart forgot them all

    jobs = [running, *queued, created_while_down["id"]]
    wait_for(
        lambda: Job.objects.filter(id__in=jobs, status__in=Job.FINISHED).count() == len(jobs),
        timeout=90,
        interval=0.3,
        message=f"every job to finish; worker log:\n{worker.log()[-3000:]}",
    )
    for job in Job.objects.filter(id__in=jobs):
        assert job.status == "succeeded", (job.id, job.error, job.log)
        assert job.log.count("Started on") == 1, job.log
        assert job.worker_host == worker.hostname
    for job_id in queued:
        assert "Re-sent to the broker" in Job.objects.get(id=job_id).log
    down = Job.objects.get(id=created_while_down["id"])
    assert "Not sent: the broker could not be reached" in down.log
    assert "Sent to the broker, which could not be reached when the job was created" in down.log
    assert Job.objects.get(id=doomed).status == "cancelled"
    assert BenchmarkResult.objects.filter(job_id=doomed).count() == 0
    for job_id in [running, *queued[:2], created_while_down["id"]]:
        assert BenchmarkResult.objects.filter(job_id=job_id).count() == 1
    assert set(ModelVersion.objects.values_list("version", "status")) == {
        ("1", "ready"),
        ("2", "ready"),
        ("3", "ready"),
    }

    status, body = client.json("GET", f"/api/v1/jobs/{created_while_down['id']}/")
    assert body["status"] == "succeeded" and body["message"] == "Done"
