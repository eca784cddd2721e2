"""A worker killed with SIGKILL (as the OOM killer does) while it runs a job: the job ends failed
with a message saying what happened, never stuck running, and the job queued behind it runs on
the next worker.

tests/integration/test_pipeline.py calls the reaper itself; here beat runs it in another worker
process, as in production."""

from datetime import timedelta

import pytest

from jobs.models import BenchmarkResult, Job
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

QUICK = {"min_runs": 10, "min_seconds": 0.05, "max_seconds": 5, "warmup": 2, "measure_memory": False}


def start(client, params):
    response = client.post(
        "/api/v1/jobs/", {"kind": "benchmark", "version": "digits:1", "target": "cpu", "params": params}, format="json"
    )
    assert response.status_code == 202, response.json()
    return response.json()["id"]


def test_a_job_whose_worker_is_killed_fails_clearly_and_the_queue_goes_on(processes, ready_version, engineer_api):
    # Beat runs the reaper every second, which fails a job silent for 4 s (90 s by default).
    reaper = processes.worker(["default"], beat=True, wait=False, BERTH_REAP_SECONDS=1, BERTH_JOB_LOST_AFTER_SECONDS=4)
    doomed = processes.worker(["target.cpu"], wait=False, BERTH_JOB_HEARTBEAT_SECONDS=1)
    reaper.wait_ready()
    doomed.wait_ready()

    killed = start(engineer_api, {**QUICK, "min_seconds": 60, "max_seconds": 120})
    running = wait_for(
        lambda: Job.objects.filter(id=killed, status="running").first(),
        timeout=60,
        message="the long benchmark to start",
    )
    assert running.worker_host == doomed.hostname
    behind = start(engineer_api, QUICK)
    # Beating for longer than the reaper's 4 s: the reaper leaves a live job alone.
    wait_for(
        lambda: (job := Job.objects.get(id=killed)).heartbeat - job.started > timedelta(seconds=5),
        timeout=15,
        message="five seconds of heartbeats",
    )
    assert Job.objects.get(id=killed).status == "running"

    doomed.kill()
    job = wait_for(
        lambda: Job.objects.filter(id=killed).exclude(status="running").first(),
        timeout=30,
        interval=0.2,
        message="the reaper to fail the job",
    )
    assert job.status == "failed"
    assert job.error.startswith(f"Worker lost: {doomed.hostname} stopped reporting at ")
    assert job.error.endswith("(killed, out of memory or disconnected). Start the job again.")
    body = engineer_api.get(f"/api/v1/jobs/{killed}/").json()
    assert body["status"] == "failed" and body["error"] == job.error and body["message"] == "Failed: worker lost"
    assert not BenchmarkResult.objects.filter(job_id=killed).exists()
    assert Job.objects.get(id=behind).status == "queued"

    replacement = processes.worker(["target.cpu"], purge=False)
    done = wait_for(
        lambda: Job.objects.filter(id=behind, status__in=Job.FINISHED).first(),
        timeout=60,
        message="the job queued behind to run on the replacement worker",
    )
    assert done.status == "succeeded", done.error
    assert done.worker_host == replacement.hostname
    assert BenchmarkResult.objects.filter(job_id=behind).count() == 1
    again = Job.objects.get(id=killed)
    assert again.status == "failed" and again.error == job.error and again.log.count("Started on") == 1
