"""The serving profile job end to end: queued through the API, run by a real worker on the cpu
target's queue with berth-serve's inference core in process, its sweep and recommendation stored
with the job."""

import pytest

from jobs.models import Job
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_serving_profile_sweeps_and_recommends(celery_worker, engineer_api, digits_version):
    response = engineer_api.post(
        "/api/v1/jobs/",
        {
            "kind": "serve_profile",
            "version": "digits:1",
            "target": "cpu",
            "params": {
                "concurrency": [1, 8],
                "batch_sizes": [1, 8],
                "threads": [1],
                "seconds": 0.3,
                "p99_budget_ms": 10_000,
                "search": "full",
            },
        },
        format="json",
    )
    assert response.status_code == 202, response.json()
    job = wait_for(
        lambda: Job.objects.filter(id=response.json()["id"], status__in=Job.FINISHED).first(),
        timeout=120,
        message="the serve_profile job",
    )
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.queue == "target.cpu"
    runs = job.result["runs"]
    assert {(r["max_batch_size"], r["concurrency"]) for r in runs} == {(1, 1), (1, 8), (8, 1), (8, 8)}
    for run in runs:
        assert run["requests"] > 0 and run["throughput"] > 0 and run["p50_ms"] <= run["p99_ms"]
        formed = {int(rows): count for rows, count in run["batch_sizes"].items()}
        assert max(formed) <= run["max_batch_size"]
    assert any(
        int(rows) > 1 for r in runs if r["max_batch_size"] == 8 and r["concurrency"] == 8 for rows in r["batch_sizes"]
    ), "8 clients with batching on should share batches"
    best = job.result["recommended"]
    assert best == max(runs, key=lambda r: r["throughput"])  # every run is within this budget


def test_a_serving_profile_refuses_bad_parameters(engineer_api, digits_version):
    response = engineer_api.post(
        "/api/v1/jobs/",
        {"kind": "serve_profile", "version": "digits:1", "target": "cpu", "params": {"batch_sizes": [0]}},
        format="json",
    )
    assert response.status_code == 400 and "params.batch_sizes" in response.json()["errors"], response.json()
    response = engineer_api.post("/api/v1/jobs/", {"kind": "serve_profile", "version": "digits:1"}, format="json")
    assert response.status_code == 400 and "target" in response.json()["errors"], response.json()
    response = engineer_api.post(
        "/api/v1/jobs/",
        {"kind": "serve_profile", "version": "digits:1", "target": "cpu", "params": {"search": "exhaustive"}},
        format="json",
    )
    assert response.status_code == 400 and "quick" in response.json()["errors"]["params.search"][0], response.json()
    assert not Job.objects.filter(kind="serve_profile").exists()
