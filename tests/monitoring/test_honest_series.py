"""Rates over the time a version actually served, gaps for missing data, a default range that
fits the data, and an overview drift figure that agrees with the drift alerts."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import alerts, series, services
from monitoring.models import Deployment
from registry.models import ModelVersion
from tests.monitoring.conftest import reference_x_mean
from tests.monitoring.test_metrics import events, iso

pytestmark = pytest.mark.django_db


def steady(endpoint, version, *, since, until, per_second):
    """Raw events at ``per_second`` requests a second for ``version`` over [since, until)."""
    count = int((until - since).total_seconds() * per_second)
    step = 1.0 / per_second
    batch = [
        {"ts": iso(since + timedelta(seconds=step * i)), "version": version, "latency_ms": 2.0, "ok": True}
        for i in range(count)
    ]
    for chunk in range(0, len(batch), 5000):
        services.telemetry_ingest(endpoint=endpoint, payload={"events": batch[chunk : chunk + 5000]})
    return count


def backdate(endpoint, generation, moment):
    """Make ``generation`` have been deployed at ``moment`` (and the one before retired then)."""
    Deployment.objects.filter(endpoint=endpoint, generation=generation).update(deployed=moment)
    Deployment.objects.filter(endpoint=endpoint, generation=generation - 1).update(retired=moment)


@pytest.fixture
def canary(endpoint, engineer):
    """digits-prod: v1 at 100 % for an hour, then v2 deployed at 10 % 90 s ago; v1 took 9 req/s
    and v2 1 req/s since."""
    now = timezone.now()
    Deployment.objects.filter(endpoint=endpoint).update(deployed=now - timedelta(hours=1))
    services.deploy(endpoint=endpoint, version=ModelVersion.objects.get(version="2"), weight=10, user=engineer)
    deployed = now - timedelta(seconds=90)
    backdate(endpoint, 2, deployed)
    steady(endpoint, "1", since=now - timedelta(minutes=6), until=deployed, per_second=10)
    steady(endpoint, "1", since=deployed, until=now, per_second=9)
    steady(endpoint, "2", since=deployed, until=now, per_second=1)
    return endpoint


def test_a_fresh_canarys_rate_is_over_the_time_it_served(canary):
    found = {version.version: summary for version, summary in series.recent(canary, minutes=5).items()}
    assert found["2"]["rps"] == pytest.approx(1.0, rel=0.05)
    assert 85 <= found["2"]["served_seconds"] <= 95
    assert found["1"]["rps"] == pytest.approx(10 - 90 / found["1"]["served_seconds"], rel=0.05)


def test_the_metrics_api_says_when_each_version_served(canary, viewer_api):
    body = viewer_api.get("/api/v1/endpoints/digits-prod/metrics/?range=15m").json()
    by_version = {v["version"]: v for v in body["versions"]}
    canary_series = by_version["2"]
    assert canary_series["served_from"] and canary_series["served_until"]
    assert canary_series["rps"] == pytest.approx(1.0, rel=0.05)
    # Minutes before the canary was deployed are gaps (no data), not zeros.
    before = [p for p in canary_series["points"] if p["t"] < canary_series["served_from"][:16]]
    assert before and all(p["rps"] is None for p in before)
    # Its first minute was served in part: the rate is over the seconds it served.
    served = [p for p in canary_series["points"] if p["rps"] is not None]
    assert all(abs(p["requests"] - p["served_seconds"] * 1.0) <= 2 for p in served)  # 1 req/s, ± a request
    first = next(p for p in canary_series["points"] if p["served_seconds"] > 0)
    assert first["partial"] and first["served_seconds"] < 60
    assert (first["rps"] is None) == (first["served_seconds"] < 10)  # too few seconds to rate


def test_the_last_partial_minute_is_not_drawn_as_a_drop(endpoint, viewer_api):
    now = timezone.now()
    Deployment.objects.filter(endpoint=endpoint).update(deployed=now - timedelta(hours=1))
    steady(endpoint, "1", since=(now - timedelta(minutes=4)).replace(second=0, microsecond=0), until=now, per_second=5)
    points = viewer_api.get("/api/v1/endpoints/digits-prod/metrics/?range=15m").json()["versions"][0]["points"]
    drawn = [p["rps"] for p in points if p["rps"] is not None]
    assert len(drawn) >= 4 and all(rate == pytest.approx(5, rel=0.1) for rate in drawn)


def test_the_default_range_fits_the_data(endpoint):
    assert series.default_range(endpoint) == "1h"  # no data at all
    now = timezone.now()
    steady(endpoint, "1", since=now - timedelta(minutes=3), until=now, per_second=1)
    assert series.default_range(endpoint) == "15m"
    steady(endpoint, "1", since=now - timedelta(minutes=40), until=now - timedelta(minutes=39), per_second=1)
    assert series.default_range(endpoint) == "1h"


def test_the_overview_drift_figure_agrees_with_the_drift_alert(runtime, endpoint, client, viewer):
    reference_x_mean(ModelVersion.objects.get(version="1"))
    now = timezone.now()
    # Spread over the last minutes (each under the per-minute verdict's minimum), shifted far; the
    # drift rule fires when 2 of its last 3 windows drifted.
    for minute in range(12, 0, -1):
        batch, _, _ = events(now - timedelta(minutes=minute, seconds=-5), 60, shift=0.8, seed=minute)
        services.telemetry_ingest(endpoint=endpoint, payload={"events": batch})
    alerts.rule_create(endpoint=endpoint, metric="drift", window_minutes=5, min_requests=20)
    alerts.evaluate_rules(now=timezone.now())
    assert endpoint.alerts.filter(state="firing").exists()
    health = series.endpoints_health([endpoint])[endpoint]
    assert health["drift_now"]["drifted"] >= 1 and health["drift_alerts"]
    client.force_login(viewer)
    html = client.get("/").content.decode()
    assert "drift alert firing" in html and "0 of" not in html.split('class="drift-now"')[1].split("</td>")[0]
    assert "Now: " in html.split('class="drift-now"')[1] and "p-value" in html.split('class="drift-now"')[1]
