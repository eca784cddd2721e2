"""``berth compress``, ``berth benchmark`` and ``berth serve-profile`` against a live server and
a real worker."""

import pytest

from jobs.models import BenchmarkResult, Job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

QUICK = ("--param", "min_runs=10", "--param", "min_seconds=0.05", "--param", "measure_memory=false")


def test_it_compresses_and_benchmarks_the_result(berth, celery_worker, digits_version):
    result = berth(
        "compress",
        "--version",
        "digits:1",
        "--target",
        "cpu",
        "--method",
        "dynamic_int8",
        "--then-benchmark",
        "1,4",
        "--wait",
        "--timeout",
        "180",
    )
    assert result.code == 0, result.err + result.out
    assert "created digits:1-int8-dynamic" in result.out
    assert "succeeded" in result.out and "p50 ms" in result.out
    assert BenchmarkResult.objects.filter(version__version="1-int8-dynamic").count() == 2


def test_it_benchmarks_on_a_target_and_prints_the_table(berth, celery_worker, digits_version):
    result = berth(
        "benchmark",
        "--version",
        "digits:1",
        "--target",
        "cpu",
        "--batch-sizes",
        "1,8",
        *QUICK,
        "--wait",
        "--timeout",
        "120",
    )
    assert result.code == 0, result.err + result.out
    lines = [line.split() for line in result.out.splitlines()]
    assert lines[-4][:2] == ["1", "default"] and lines[-3][:2] == ["8", "default"]
    assert lines[-2][0] == "accuracy" and lines[-1][:3] == ["quality:", "accuracy", lines[-1][2]]
    assert "top5_accuracy" in result.out  # the task's measures, as the benchmark stored them


def test_bad_parameters_are_refused_with_the_field(berth, digits_version):
    result = berth("benchmark", "--version", "digits:1", "--target", "cpu", "--batch-sizes", "0")
    assert result.code == 1
    assert "params.batch_sizes" in result.err or "batch_sizes" in result.err
    assert not Job.objects.filter(kind="benchmark").exists()


def test_a_failed_job_fails_the_command(berth, celery_worker, digits_version, settings):
    # Nothing runs on an unavailable provider: the worker fails the job with the engine's reason.
    from registry.models import HardwareTarget

    HardwareTarget.objects.filter(slug="cpu").update(execution_provider="OpenVINOExecutionProvider")
    result = berth("benchmark", "--version", "digits:1", "--target", "cpu", *QUICK, "--wait", "--timeout", "60")
    assert result.code == 1
    assert "OpenVINOExecutionProvider is not available on this host" in result.out


def test_it_measures_requests_end_to_end_in_an_encoding(berth, celery_worker, digits_version):
    result = berth(
        "benchmark",
        "--version",
        "digits:1",
        "--target",
        "cpu",
        "--measure",
        "requests",
        "--encoding",
        "binary",
        "--param",
        "min_runs=10",
        "--param",
        "min_seconds=0.05",
        "--wait",
        "--timeout",
        "180",
    )
    assert result.code == 0, result.err + result.out
    assert "requests end to end through a local berth-serve, binary encoding" in result.out
    row = BenchmarkResult.objects.get(version__version="1")
    assert (row.scope, row.encoding, row.batch_size) == ("request", "binary", 1)


def test_an_unknown_encoding_is_refused_with_the_allowed_ones(berth, digits_version):
    result = berth(
        "benchmark", "--version", "digits:1", "--target", "cpu", "--measure", "requests", "--encoding", "xml"
    )
    assert result.code == 1
    assert "encoding must be one of json, binary, grpc" in result.err
    assert not Job.objects.filter(kind="benchmark").exists()


def test_it_runs_a_serving_profile_and_prints_the_configurations_and_the_recommendation(
    berth, celery_worker, digits_version
):
    result = berth(
        "serve-profile",
        "--version",
        "digits:1",
        "--target",
        "cpu",
        "--concurrency",
        "1,4",
        "--batch-sizes",
        "1,4",
        "--threads",
        "1",
        "--budget-ms",
        "10000",
        "--param",
        "seconds=0.5",
        "--wait",
        "--timeout",
        "120",
    )
    assert result.code == 0, result.err + result.out
    job = Job.objects.get(kind="serve_profile")
    assert job.params["search"] == "quick" and job.params["p99_budget_ms"] == 10000
    runs, best = job.result["runs"], job.result["recommended"]
    assert f"quick search: {len(runs)} of the 4 configurations measured" in result.out
    assert result.out.count("  recommended\n") == 1  # its row in the table
    assert f"recommended: max batch size {best['max_batch_size']}" in result.out
    assert f"job {job.id}: " in result.err  # its progress while it ran (the sweep takes seconds)


def test_a_bad_serving_profile_is_refused_with_the_field(berth, digits_version):
    result = berth("serve-profile", "--version", "digits:1", "--target", "cpu", "--batch-sizes", "1,2000")
    assert result.code == 1 and "batch_sizes" in result.err
    assert not Job.objects.filter(kind="serve_profile").exists()
