"""Starting jobs from the version page, and the pages that show them."""

import pytest
from django.test import Client

from jobs.models import Job

pytestmark = pytest.mark.django_db


def browser(user):
    client = Client()
    client.force_login(user)
    return client


def test_the_version_page_offers_compress_and_benchmark(digits_version, engineer, viewer):
    html = browser(engineer).get("/models/digits/versions/1/").content.decode()
    assert "Compress" in html and "Benchmark on" in html and "Convert to ONNX" not in html
    assert "Not benchmarked yet." in html
    assert "Run a job" not in browser(viewer).get("/models/digits/versions/1/").content.decode()


def test_an_engineer_compresses_from_the_page(digits_version, engineer):
    response = browser(engineer).post("/models/digits/versions/1/run/compress/", {
        "compress-method": "static_int8", "compress-target": "cpu", "compress-calibration_method": "entropy",
        "compress-per_channel": "on", "compress-benchmark_after": "on", "compress-batch_sizes": "1, 8"})
    job = Job.objects.get(kind="compress")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.id}/"
    assert job.params["calibration_method"] == "entropy" and job.params["per_channel"] is True
    assert job.params["reduce_range"] is False
    assert job.params["then_benchmark"]["batch_sizes"] == [1, 8]


def test_benchmarking_on_two_targets_starts_two_jobs(digits_version, engineer):
    from registry.models import HardwareTarget

    HardwareTarget.objects.create(slug="cpu-2", name="other CPU")
    response = browser(engineer).post("/models/digits/versions/1/run/benchmark/", {
        "benchmark-targets": ["cpu", "cpu-2"], "benchmark-batch_sizes": "1,8,32", "benchmark-min_runs": "30",
        "benchmark-min_seconds": "1"})
    assert response.status_code == 302
    jobs = Job.objects.filter(kind="benchmark").order_by("queue")
    assert [j.queue for j in jobs] == ["target.cpu", "target.cpu-2"]
    assert all(j.params["batch_sizes"] == [1, 8, 32] for j in jobs)


def test_a_bad_form_explains_itself_and_starts_nothing(digits_version, engineer):
    client = browser(engineer)
    response = client.post("/models/digits/versions/1/run/benchmark/", {
        "benchmark-targets": ["cpu"], "benchmark-batch_sizes": "one", "benchmark-min_runs": "30",
        "benchmark-min_seconds": "1"}, follow=True)
    assert "whole numbers separated by commas" in response.content.decode()
    response = client.post("/models/digits/versions/1/run/compress/", {
        "compress-method": "prune", "compress-target": "cpu", "compress-sparsity": "5"}, follow=True)
    assert "less than or equal to 0.99" in response.content.decode()
    assert not Job.objects.exclude(kind="validate").exists()


def test_viewers_cannot_start_jobs_from_the_page(digits_version, viewer):
    response = browser(viewer).post("/models/digits/versions/1/run/benchmark/", {"benchmark-targets": ["cpu"]})
    assert response.status_code == 403
    assert not Job.objects.exclude(kind="validate").exists()


def test_the_workers_page_lists_hosts_and_unserved_targets(viewer):
    from django.utils import timezone

    from jobs.models import WorkerHost
    from registry.models import HardwareTarget

    HardwareTarget.objects.create(slug="cpu", name="CPU")
    HardwareTarget.objects.create(slug="gpu-a100", name="A100", device="cuda",
                                  execution_provider="CUDAExecutionProvider")
    now = timezone.now()
    WorkerHost.objects.create(hostname="celery@cpu-box", queues=["default", "target.cpu"], cpu_model="AMD EPYC",
                              cpu_count=2, providers=["CPUExecutionProvider"], started=now, last_seen=now)
    html = browser(viewer).get("/workers/").content.decode()
    assert "celery@cpu-box" in html and "AMD EPYC" in html and "CPUExecutionProvider" in html
    assert "its jobs wait for a worker on target.gpu-a100" in html
    assert "its jobs wait for a worker on target.cpu" not in html
