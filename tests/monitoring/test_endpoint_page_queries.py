"""The endpoint page and its live partial (fetched every 5 s by each open tab) read in a fixed
number of queries whatever the number of versions deployed: what their parts share (the
deployments, the windows, the reference profiles and the benchmarks) is read once per request,
and nothing is read per version."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring import series, services
from monitoring.endpoint_reads import EndpointReads
from registry.models import Dataset, ReferenceProfile
from tests.conftest import BenchWorld
from tests.monitoring.test_metrics import events

pytestmark = pytest.mark.django_db

# Session, user and groups (3); the endpoint; its deployments; the serving profiles' jobs; the
# windows; reference profiles; benchmarks; firing alerts and the number of rules; replicas.
PAGE_QUERIES = 12
PATHS = ("/endpoints/digits-prod/?range=1h", "/endpoints/digits-prod/live/?range=1h")


@pytest.fixture
def world(engineer):
    """digits with versions 1, 2 and 3 (each with a reference profile and a benchmark on cpu),
    and digits-prod serving version 1 with ten minutes of its telemetry."""
    world = BenchWorld(engineer)
    dataset = Dataset.objects.create(
        model=world.model,
        name="ref",
        kind="reference",
        file="x.npz",
        sha256="0" * 64,
        size_bytes=1,
        rows=1000,
        arrays={},
    )
    world.versions = []
    for name in ("1", "2", "3"):
        version = world.version(name)
        ReferenceProfile.objects.create(
            version=version,
            dataset=dataset,
            name="x.mean",
            kind="mean",
            tensor="x",
            edges=[0.2, 0.4, 0.6],
            counts=[1] * 4,
        )
        world.result(version, world.cpu, p95=1.0)
        world.versions.append(version)
    world.endpoint, _ = services.endpoint_create(
        name="digits-prod", model=world.model, target=world.cpu, created_by=engineer
    )
    services.deploy(endpoint=world.endpoint, version=world.versions[0], weight=100, user=engineer)
    world.ingest = lambda name: services.telemetry_ingest(
        endpoint=world.endpoint,
        payload={"events": events(timezone.now() - timedelta(minutes=10), 12_000, version=name)[0][::10]},
    )
    world.ingest("1")
    return world


def queries(client, path):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


def test_it_reads_the_page_and_its_live_part_in_as_many_queries_with_one_version_as_with_three(world, engineer, viewer):
    client = Client()
    client.force_login(viewer)
    one = {path: queries(client, path) for path in PATHS}
    services.deploy(endpoint=world.endpoint, version=world.versions[1], weight=30, user=engineer)
    services.deploy(endpoint=world.endpoint, version=world.versions[2], weight=20, user=engineer)
    for name in ("2", "3"):
        world.ingest(name)
    three = {path: queries(client, path) for path in PATHS}
    live = client.get(PATHS[0]).context["live"]
    assert [v["version"] for v in live["data"]["versions"]] == ["1", "2", "3"]
    assert sorted(version.version for version in live["recent"]) == ["1", "2", "3"]
    for path in PATHS:
        assert len(three[path]) == len(one[path]), "\n".join(three[path])
        assert len(three[path]) <= PAGE_QUERIES, "\n".join(three[path])


def test_the_last_minutes_are_taken_from_the_pages_range_as_they_are_read_alone(world):
    now = timezone.now()
    reads = EndpointReads(world.endpoint)
    series.endpoint_series(world.endpoint, since=now - timedelta(hours=1), until=now, reads=reads)
    with CaptureQueriesContext(connection) as captured:
        shared = series.recent(world.endpoint, minutes=5, now=now, reads=reads)
    assert len(captured) == 0
    assert shared == series.recent(world.endpoint, minutes=5, now=now)
