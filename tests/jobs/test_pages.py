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
    response = browser(engineer).post(
        "/models/digits/versions/1/run/compress/",
        {
            "compress-method": "static_int8",
            "compress-target": "cpu",
            "compress-calibration_method": "entropy",
            "compress-per_channel": "on",
            "compress-benchmark_after": "on",
            "compress-batch_sizes": "1, 8",
        },
    )
    job = Job.objects.get(kind="compress")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.id}/"
    assert job.params["calibration_method"] == "entropy" and job.params["per_channel"] is True
    assert job.params["reduce_range"] is False
    assert job.params["then_benchmark"]["batch_sizes"] == [1, 8]


def test_benchmarking_on_two_targets_starts_two_jobs(digits_version, engineer):
    from registry.models import HardwareTarget

    HardwareTarget.objects.create(slug="cpu-2", name="other CPU")
    response = browser(engineer).post(
        "/models/digits/versions/1/run/benchmark/",
        {
            "benchmark-targets": ["cpu", "cpu-2"],
            "benchmark-batch_sizes": "1,8,32",
            "benchmark-min_runs": "30",
            "benchmark-min_seconds": "1",
        },
    )
    assert response.status_code == 302
    jobs = Job.objects.filter(kind="benchmark").order_by("queue")
    assert [j.queue for j in jobs] == ["target.cpu", "target.cpu-2"]
    assert all(j.params["batch_sizes"] == [1, 8, 32] for j in jobs)


def test_the_version_page_starts_an_end_to_end_benchmark_and_shows_it_apart(digits_version, engineer):
    from jobs.models import BenchmarkResult
    from tests.conftest import BenchWorld

    response = browser(engineer).post(
        "/models/digits/versions/1/run/benchmark/",
        {
            "benchmark-targets": ["cpu"],
            "benchmark-batch_sizes": "1,8",
            "benchmark-min_runs": "30",
            "benchmark-min_seconds": "1",
            "benchmark-measure": "requests",
            "benchmark-encoding": "grpc",
        },
    )
    assert response.status_code == 302
    job = Job.objects.get(kind="benchmark")
    assert job.params["measure"] == "requests" and job.params["encoding"] == "grpc" and "threads" not in job.params

    BenchWorld.result(None, digits_version, job.target, p95=0.02)
    BenchWorld.result(None, digits_version, job.target, p95=0.75, scope="request", encoding="grpc")
    html = browser(engineer).get("/models/digits/versions/1/").content.decode()
    end_to_end = html.split('class="numbers request-benchmarks">')[1].split("</table>")[0]
    assert "<td>grpc</td>" in end_to_end and "0.75" in end_to_end
    session_run = html.split('id="version-benchmarks">')[1].split('id="request-benchmarks"')[0]
    assert "0.02" in session_run and "0.75" not in session_run  # never in the session.run table
    assert BenchmarkResult.objects.count() == 2

    Job.objects.filter(pk=job.pk).update(
        status="succeeded",
        result={
            "scope": "request",
            "encoding": "grpc",
            "results": [
                {"batch_size": 1, "threads": 1, "p50_ms": 0.6, "p95_ms": 0.75, "p99_ms": 0.9, "throughput": 1600}
            ],
        },
    )
    html = browser(engineer).get(f"/jobs/{job.id}/").content.decode()
    assert "Requests end to end through a local berth-serve, <strong>grpc</strong> encoding" in html


def test_a_bad_form_explains_itself_beside_the_field_and_keeps_what_was_typed(digits_version, engineer):
    import re

    client = browser(engineer)
    response = client.post(
        "/models/digits/versions/1/run/benchmark/",
        {
            "benchmark-targets": ["cpu"],
            "benchmark-batch_sizes": "one",
            "benchmark-min_runs": "31",
            "benchmark-min_seconds": "1",
        },
    )
    html = response.content.decode()
    assert response.status_code == 400
    # The error sits in the field's own group, right after its input, which keeps the typed values.
    group = re.search(r'<input[^>]*name="benchmark-batch_sizes"[^>]*>.*?</div>', html, re.S).group(0)
    assert 'value="one"' in group and "whole numbers separated by commas" in group
    assert re.search(r'name="benchmark-min_runs"[^>]*value="31"|value="31"[^>]*name="benchmark-min_runs"', html)
    assert 'class="messages"' not in html  # no banner at the top
    response = client.post(
        "/models/digits/versions/1/run/compress/",
        {"compress-method": "prune", "compress-target": "cpu", "compress-sparsity": "5"},
    )
    html = response.content.decode()
    assert response.status_code == 400 and "less than or equal to 0.99" in html
    assert re.search(r'<option value="prune" selected>', html)
    assert not Job.objects.exclude(kind="validate").exists()


def test_help_text_is_text_not_html():
    from jobs.forms import ConvertForm

    html = str(ConvertForm(prefix="convert").as_div())
    assert "Default: &lt;version&gt;-onnx" in html


def test_job_results_are_tables_with_the_json_a_click_away(digits_version, engineer):
    compress = Job.objects.create(
        kind="compress",
        version=digits_version,
        status="succeeded",
        result={
            "output_version": "digits:1-int8",
            "size_bytes": 3000,
            "size_ratio": 0.26,
            "benchmark_job": 4242,
            "notes": ["a long note " * 40],
            "trials": [
                {
                    "number": 1,
                    "settings": "per-channel, minmax",
                    "size_bytes": 3000,
                    "p50_ms": 0.008,
                    "accuracy": 0.97,
                    "accuracy_drop": 0.002,
                    "within_budget": True,
                    "error": None,
                }
            ],
        },
    )
    html = browser(engineer).get(f"/jobs/{compress.id}/").content.decode()
    assert '<a href="/jobs/4242/" class="follow-up">#4242</a>' in html
    assert "8.0 µs" in html and "Autotune trials" in html and "within" in html
    assert '<details class="raw-json"><summary>JSON</summary>' in html
    benchmark = Job.objects.create(
        kind="benchmark",
        version=digits_version,
        status="succeeded",
        result={
            "results": [
                {
                    "batch_size": 8,
                    "threads": None,
                    "p50_ms": 0.5,
                    "p95_ms": 1.25,
                    "p99_ms": 2.0,
                    "throughput": 16000.0,
                    "stable": True,
                }
            ],
            "quality": {"accuracy": 0.975, "accuracy_delta": -0.0012},
        },
    )
    html = browser(engineer).get(f"/jobs/{benchmark.id}/").content.decode()
    assert "<td>500 µs</td><td>1.250 ms</td><td>2.000 ms</td><td>16,000</td>" in html
    assert "97.50 %" in html and "-0.12 pt" in html
    assert "Cancel job" not in html  # finished: nothing to cancel


def test_viewers_cannot_start_jobs_from_the_page(digits_version, viewer):
    response = browser(viewer).post("/models/digits/versions/1/run/benchmark/", {"benchmark-targets": ["cpu"]})
    assert response.status_code == 403
    assert not Job.objects.exclude(kind="validate").exists()


def test_the_workers_page_lists_hosts_and_unserved_targets(viewer):
    from django.utils import timezone

    from jobs.models import WorkerHost
    from registry.models import HardwareTarget

    HardwareTarget.objects.create(slug="cpu", name="CPU")
    HardwareTarget.objects.create(
        slug="gpu-a100", name="A100", device="cuda", execution_provider="CUDAExecutionProvider"
    )
    now = timezone.now()
    WorkerHost.objects.create(
        hostname="celery@cpu-box",
        queues=["default", "target.cpu"],
        cpu_model="AMD EPYC",
        cpu_count=2,
        providers=["CPUExecutionProvider"],
        started=now,
        last_seen=now,
    )
    html = browser(viewer).get("/workers/").content.decode()
    assert "celery@cpu-box" in html and "AMD EPYC" in html and "CPUExecutionProvider" in html
    assert "its jobs wait for a worker on target.gpu-a100" in html
    assert "its jobs wait for a worker on target.cpu" not in html


def test_the_workers_page_counts_waiting_jobs_in_queries_that_do_not_grow_with_the_targets(viewer, digits_version):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from registry.models import HardwareTarget

    def page():
        with CaptureQueriesContext(connection) as queries:
            html = browser(viewer).get("/workers/").content.decode()
        return html, len(queries)

    HardwareTarget.objects.create(slug="t0", name="t0")
    _, one_target = page()
    for i in range(1, 6):
        target = HardwareTarget.objects.create(slug=f"t{i}", name=f"t{i}")
        for _ in range(i):
            Job.objects.create(kind="benchmark", version=digits_version, target=target, queue=target.queue)
    html, six_targets = page()
    assert six_targets == one_target
    assert "<td>5</td>" in html  # t5's five queued jobs
