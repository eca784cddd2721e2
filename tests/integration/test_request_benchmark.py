"""The benchmark's end-to-end option (measure=requests) end to end: queued through the API, run by
a real worker on the cpu target's queue, which starts a real berth-serve on a loopback port with the
version's artifact and times requests in each encoding from one keep-alive client; the results are
stored as request-scope rows, apart from the session.run benchmark of the same version."""

import pytest

from jobs.models import BenchmarkResult, Job
from tests.conftest import wait_for

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _benchmark(api, params):
    response = api.post(
        "/api/v1/jobs/", {"kind": "benchmark", "version": "digits:1", "target": "cpu", "params": params}, format="json"
    )
    assert response.status_code == 202, response.json()
    job = wait_for(
        lambda: Job.objects.filter(id=response.json()["id"], status__in=Job.FINISHED).first(),
        timeout=300,
        message="the benchmark job",
    )
    assert job.status == Job.Status.SUCCEEDED, job.error
    return job


def test_it_measures_requests_through_a_local_berth_serve_in_each_encoding(
    worker_process, engineer_api, digits_version
):
    # A worker process of its own, as in production: the in-process test worker shares this
    # process's protobuf registry, where tritonclient's copy of the v2 protocol (imported by
    # tests/serving) clashes with berth-serve's.
    worker_process(["default", "target.cpu"])
    quick = {"batch_sizes": [1, 4], "min_runs": 20, "min_seconds": 0.2, "max_seconds": 5, "warmup": 2}
    inference = _benchmark(engineer_api, {**quick, "measure_memory": False})
    by_encoding = {}
    for encoding in ("json", "binary", "grpc"):
        job = _benchmark(engineer_api, {**quick, "measure": "requests", "encoding": encoding})
        assert job.queue == "target.cpu"
        assert job.result["scope"] == "request" and job.result["encoding"] == encoding
        rows = list(BenchmarkResult.objects.filter(job=job).order_by("batch_size"))
        assert [r.batch_size for r in rows] == [1, 4]
        for row in rows:
            assert row.scope == BenchmarkResult.Scope.REQUEST and row.encoding == encoding
            assert row.iterations >= 20 and 0 < row.p50_ms <= row.p95_ms <= row.p99_ms
            assert row.accuracy is None and row.environment["encoding"] == encoding
            assert row.environment["berth_serve"]
        by_encoding[encoding] = {r.batch_size: r for r in rows}
    session_run = {r.batch_size: r for r in BenchmarkResult.objects.filter(job=inference)}
    assert all(r.scope == BenchmarkResult.Scope.SESSION_RUN and r.encoding == "" for r in session_run.values())
    # A request decodes, routes, runs the model and encodes over a socket: it takes longer than
    # session.run alone, in every encoding (measured, not assumed).
    for encoding, rows in by_encoding.items():
        for batch, row in rows.items():
            assert row.p50_ms > session_run[batch].p50_ms, (encoding, batch)

    listed = engineer_api.get("/api/v1/benchmarks/?model=digits&scope=request&encoding=grpc").json()
    rows = listed["results"] if isinstance(listed, dict) else listed
    assert rows and {(r["scope"], r["encoding"]) for r in rows} == {("request", "grpc")}
