"""Compression and benchmarks through real Celery workers on the real broker."""

import csv
import io
import os
import signal

import pytest

from jobs import services
from jobs.models import BenchmarkResult, Job
from registry.models import HardwareTarget, ModelVersion
from tests.conftest import register, wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

QUICK = {"min_runs": 10, "min_seconds": 0.05, "max_seconds": 5, "warmup": 2}


def start(client, kind, params, version="digits:1", target="cpu"):
    response = client.post(
        "/api/v1/jobs/", {"kind": kind, "version": version, "target": target, "params": params}, format="json"
    )
    assert response.status_code == 202, response.json()
    return response.json()["id"]


def finished(job_id, timeout=180):
    return wait_for(
        lambda: (job := Job.objects.get(id=job_id)).is_finished and job,
        timeout=timeout,
        message=f"job {job_id} to finish",
    )


def test_it_compresses_then_benchmarks_end_to_end(celery_worker, engineer_api, viewer_api, digits_version):
    job_id = start(
        engineer_api, "compress", {"method": "static_int8", "then_benchmark": {"batch_sizes": [1, 8], **QUICK}}
    )
    job = finished(job_id)
    assert job.status == "succeeded", job.error
    child = ModelVersion.objects.get(pk=job.output_version_id)
    assert child.parent == digits_version and child.status == "ready" and child.format == "onnx"
    assert child.recipe["method"] == "static_int8" and child.recipe["calibration"]["method"] == "minmax"
    assert child.recipe["per_channel"] is True and child.size_bytes < digits_version.size_bytes
    assert child.io_signature["inputs"][0]["name"] == "x"

    benchmark = finished(job.result["benchmark_job"])
    assert benchmark.status == "succeeded", benchmark.error
    assert benchmark.queue == "target.cpu"
    rows = list(BenchmarkResult.objects.filter(version=child).order_by("batch_size"))
    assert [r.batch_size for r in rows] == [1, 8]
    for row in rows:
        assert row.p50_ms <= row.p95_ms <= row.p99_ms and row.iterations >= 10
        assert row.accuracy is not None and abs(row.accuracy_delta) <= 0.02
        assert row.fidelity["reference"] == "digits:1"
        assert row.peak_memory_bytes > 0 and row.load_time_ms > 0
        assert row.environment["provider"] == "CPUExecutionProvider"

    api = viewer_api.get("/api/v1/models/digits/versions/1-int8-static/").json()
    assert {b["batch_size"] for b in api["benchmarks"]} == {1, 8}
    exported = viewer_api.get("/api/v1/benchmarks/?model=digits&format=csv")
    assert exported["Content-Type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert {(r["version"], r["batch_size"]) for r in table} == {("1-int8-static", "1"), ("1-int8-static", "8")}
    assert float(table[0]["p50_ms"]) == pytest.approx(rows[0].p50_ms)


def test_it_converts_torchscript_to_onnx(celery_worker, engineer_api, digits_files, digits_version):
    register(engineer_api, digits_files["torchscript"], version="ts")
    wait_for(lambda: ModelVersion.objects.get(version="ts").status == "ready", message="the worker to validate it")
    job = finished(start(engineer_api, "convert", {}, version="digits:ts"))
    assert job.status == "succeeded", job.error
    child = job.output_version
    assert child.version == "ts-onnx" and child.format == "onnx" and child.status == "ready"
    assert child.recipe["parity_max_abs_diff"] < 1e-4
    assert child.io_signature["inputs"][0]["dynamic_axes"] == [0]


def test_cancel_stops_a_running_benchmark(celery_worker, engineer_api, digits_version):
    job_id = start(engineer_api, "benchmark", {"min_seconds": 30, "max_seconds": 120, "measure_memory": False})
    wait_for(lambda: Job.objects.get(id=job_id).status == "running", message="the benchmark to start")
    response = engineer_api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    wait_for(
        lambda: "Stopped: the job was cancelled" in Job.objects.get(id=job_id).log,
        timeout=30,
        message="the worker to stop the benchmark",
    )
    assert Job.objects.get(id=job_id).status == "cancelled"
    assert not BenchmarkResult.objects.exists()


def test_a_killed_worker_leaves_the_job_failed_not_running(worker_process, engineer_api, digits_version, settings):
    worker = worker_process(["target.cpu"], BERTH_JOB_HEARTBEAT_SECONDS=1)
    job_id = start(engineer_api, "benchmark", {"min_seconds": 60, "max_seconds": 120, "measure_memory": False})
    wait_for(lambda: Job.objects.get(id=job_id).status == "running", timeout=60, message="the benchmark to start")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    settings.BERTH_JOB_LOST_AFTER_SECONDS = 3
    wait_for(
        lambda: services.jobs_reap() or Job.objects.get(id=job_id).status != "running",
        timeout=30,
        interval=0.5,
        message="the reaper to notice the lost worker",
    )
    job = Job.objects.get(id=job_id)
    assert job.status == "failed"
    assert job.error.startswith("Worker lost:") and worker.hostname in job.error
    assert not BenchmarkResult.objects.exists()


def test_jobs_for_a_target_without_a_worker_wait_and_say_so(worker_process, engineer_api, viewer, digits_version):
    from django.test import Client

    HardwareTarget.objects.create(
        slug="gpu-a100", name="A100", device="cuda", execution_provider="CUDAExecutionProvider"
    )
    worker = worker_process(["default", "target.cpu"])
    waiting = start(engineer_api, "benchmark", QUICK, target="gpu-a100")
    done = finished(start(engineer_api, "benchmark", {**QUICK, "measure_memory": False}))
    assert done.status == "succeeded", done.error and done.worker_host == worker.hostname
    body = engineer_api.get(f"/api/v1/jobs/{waiting}/").json()
    assert body["status"] == "queued"
    assert body["waiting_for"] == "Waiting for a worker on target.gpu-a100: no live worker consumes that queue."

    browser = Client()
    browser.force_login(viewer)
    page = browser.get("/workers/").content.decode()
    assert worker.hostname in page and "CPUExecutionProvider" in page
    assert "its jobs wait for a worker on target.gpu-a100" in page
    job_page = browser.get(f"/jobs/{waiting}/").content.decode()
    assert "Waiting for a worker on target.gpu-a100" in job_page
