"""What the benches that drive Django share: settings for a throw-away PostgreSQL database
(DATABASE_URL overrides it), the test database made and dropped around the run, a client
logged in as a viewer, timed GETs, and synthetic benchmark rows.

    import djangobench
    djangobench.configure("berth_bench_x")   # before any Django import
"""

import os
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def configure(database_name):
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret")
    os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{database_name}")
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("collectstatic", interactive=False, verbosity=0)  # pages name the hashed files


@contextmanager
def test_database():
    """A fresh test database for the run (its name), dropped afterwards."""
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    database = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        yield database
    finally:
        connection.creation.destroy_test_db(database, verbosity=0)


def viewer_client():
    from django.contrib.auth.models import Group, User
    from django.test import Client

    viewer = User.objects.create_user("viewer")
    viewer.groups.add(Group.objects.get_or_create(name="viewer")[0])
    client = Client()
    client.force_login(viewer)
    return client


def measure(client, path, repeats):
    """(median ms, queries, response bytes) of GET ``path`` after one warm-up."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.content[:300])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    return statistics.median(times), len(queries), len(response.content)


def ready_versions(model, count, *, size_bytes=1000):
    """Versions "1" to ``count`` of ``model``, ready ONNX rows (no artifact file: the pages and the
    ingestion read rows only)."""
    from registry.models import ModelVersion

    return [
        ModelVersion.objects.create(
            model=model,
            version=str(number),
            format="onnx",
            artifact=f"artifacts/{model.name}/{number}.onnx",
            sha256=f"{number:064x}",
            size_bytes=size_bytes,
            status="ready",
        )
        for number in range(1, count + 1)
    ]


def benchmark_result(*, job, batch_size, p50_ms, accuracy):
    """An unsaved BenchmarkResult of ``job`` (its version and target) whose figures all follow
    from its median ``p50_ms`` (the spread of a steady run; ``batch_size`` rows per ``p50_ms``),
    for ``save()`` or ``bulk_create``."""
    from jobs.models import BenchmarkResult

    p50 = p50_ms
    return BenchmarkResult(
        job=job,
        version=job.version,
        target=job.target,
        batch_size=batch_size,
        iterations=1000,
        warmup=5,
        p25_ms=p50 * 0.95,
        p50_ms=p50,
        p75_ms=p50 * 1.05,
        p90_ms=p50 * 1.2,
        p95_ms=p50 * 1.3,
        p99_ms=p50 * 1.6,
        min_ms=p50 * 0.8,
        max_ms=p50 * 3,
        mean_ms=p50 * 1.05,
        std_ms=p50 * 0.1,
        throughput=batch_size * 1000 / p50,
        stable=True,
        windows=[p50, p50, p50],
        intervals={
            "p50": [p50 * 0.99, p50 * 1.01],
            "p95": [p50 * 1.28, p50 * 1.32],
            "p99": [p50 * 1.55, p50 * 1.65],
            "mean": [p50 * 1.04, p50 * 1.06],
        },
        accuracy=accuracy,
        fidelity={"samples": 360},
        samples=b"",
        environment={},
    )
