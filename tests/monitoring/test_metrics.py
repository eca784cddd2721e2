"""Raw events from external servers, the metrics API over minute and compacted hour windows,
drift from binned counts, and the endpoint page's live part."""

import json
import re
import math
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from berth.core.drift import ks
from berth.core.stats import LogSketch
from monitoring import rollups, series
from monitoring.models import MetricWindow, TelemetryFlush
from tests.monitoring.conftest import X_MEAN_EDGES as EDGES
from tests.monitoring.conftest import X_MEAN_REFERENCE as REFERENCE

pytestmark = pytest.mark.django_db


def iso(moment):
    return moment.isoformat().replace("+00:00", "Z")


def events(start, count, *, shift=0.0, error_every=0, version="1", seed=0):
    rng = np.random.default_rng(seed)
    latencies = rng.lognormal(0.5, 0.4, count)
    means = np.clip(rng.uniform(0, 0.8, count) + shift, 0, 1.5)  # the reference: uniform on (0, 0.8]
    return (
        [
            {
                "ts": iso(start + timedelta(milliseconds=50 * i)),
                "version": version,
                "latency_ms": float(latencies[i]),
                "ok": not (error_every and i % error_every == 0),
                "error_kind": "timeout" if error_every and i % error_every == 0 else None,
                "features": {"x.mean": float(means[i]), "prediction": int(i % 3), "unprofiled": 1.0},
            }
            for i in range(count)
        ],
        latencies,
        means,
    )


def minute_ago(minutes=1):
    return timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=minutes)


def test_raw_events_are_aggregated_into_the_same_windows(runtime, profiled):
    start = minute_ago(3)
    batch, latencies, means = events(start, 1000, error_every=50)
    response = runtime.post("/api/v1/telemetry/", {"events": batch}, format="json")
    assert response.status_code == 202, response.json()
    windows = list(MetricWindow.objects.filter(endpoint=profiled).order_by("start"))
    assert [w.start for w in windows] == [start]  # 1,000 events 50 ms apart: 50 s, one minute
    (window,) = windows
    assert window.source == "events" and window.requests == 1000 and window.errors == 20
    assert window.error_kinds == {"timeout": 20}
    sketch = LogSketch.from_dict(window.latency)
    exact = np.sort(latencies)[math.floor(0.95 * 999)]
    assert abs(sketch.quantile(0.95) - exact) <= 0.01 * exact
    assert window.features["x.mean"] == np.bincount(np.searchsorted(EDGES, means, side="left"), minlength=4).tolist()
    assert window.features["prediction"] == [334, 333, 333]
    assert "unprofiled" not in window.features

    # The same POST again (no flush_id: its content identifies it) is not counted twice.
    again = runtime.post("/api/v1/telemetry/", {"events": batch}, format="json")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert MetricWindow.objects.get().requests == 1000


@pytest.mark.parametrize(
    "change, field",
    [
        ({"version": "9"}, "events.3.version"),
        ({"latency_ms": -1}, "events.3.latency_ms"),
        ({"latency_ms": "fast"}, "events.3.latency_ms"),
        ({"ts": "yesterday"}, "events.3.ts"),
        ({"ts": "2020-01-01T00:00:00Z"}, "events.3.ts"),
        ({"ok": "yes"}, "events.3.ok"),
        ({"features": {"prediction": 7}}, "events.3.features.prediction"),
    ],
)
def test_a_bad_event_is_named_and_nothing_is_written(runtime, profiled, change, field):
    batch, _, _ = events(minute_ago(2), 10)
    batch[3].update(change)
    response = runtime.post("/api/v1/telemetry/", {"events": batch}, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()
    assert not MetricWindow.objects.exists()


def test_an_events_flush_id_must_be_a_uuid(runtime, profiled):
    batch, _, _ = events(minute_ago(), 5)
    response = runtime.post("/api/v1/telemetry/", {"events": batch, "flush_id": "retry-1"}, format="json")
    assert response.status_code == 400 and "flush_id" in response.json()["errors"], response.json()
    assert not MetricWindow.objects.exists()


def test_nan_latency_is_refused_as_json(runtime, profiled):
    body = '{"events": [{"ts": "%s", "version": "1", "latency_ms": NaN, "ok": true}]}' % iso(minute_ago())
    response = runtime.post("/api/v1/telemetry/", body, content_type="application/json")
    assert response.status_code == 400 and not MetricWindow.objects.exists()


def test_telemetry_for_another_endpoint_is_refused(runtime, profiled):
    batch, _, _ = events(minute_ago(), 5)
    assert runtime.post("/api/v1/telemetry/", {"endpoint": "nope", "events": batch}, format="json").status_code == 404
    from monitoring import services

    services.endpoint_create(name="other", model=profiled.model, target=profiled.target)
    assert runtime.post("/api/v1/telemetry/", {"endpoint": "other", "events": batch}, format="json").status_code == 403
    assert not MetricWindow.objects.exists()


def test_the_metrics_api_gives_series_per_version_with_drift(runtime, viewer_api, anon_api, profiled):
    base = minute_ago(10)
    for minute in range(6):
        shift = 0.5 if minute >= 3 else 0.0  # the last three minutes: brighter inputs
        batch, _, _ = events(base + timedelta(minutes=minute), 600, shift=shift, error_every=100, seed=minute)
        assert runtime.post("/api/v1/telemetry/", {"events": batch}, format="json").status_code == 202
    response = viewer_api.get("/api/v1/endpoints/digits-prod/metrics/?range=15m")
    assert response.status_code == 200, response.json()
    data = response.json()
    assert data["step"] == 60
    (v1,) = data["versions"]
    assert v1["version"] == "1" and v1["weight"] == 100
    assert sum(p["requests"] for p in v1["points"]) == 3600
    assert sum(p["errors"] for p in v1["points"]) == 36
    busy = [p for p in v1["points"] if p["requests"]]
    assert len(busy) == 6 and all(p["error_rate"] == pytest.approx(0.01) for p in busy)
    assert all(p["p50_ms"] <= p["p95_ms"] <= p["p99_ms"] for p in busy)
    features = {f["name"]: f for f in v1["drift"]["features"]}
    assert features["x.mean"]["test"] == "ks" and features["x.mean"]["threshold"] == 0.05
    assert features["x.mean"]["effect"] == "wasserstein" and features["x.mean"]["effect_threshold"] == 0.1
    assert features["prediction"]["test"] == "chi_square"
    scored = [p for p in features["x.mean"]["points"] if p is not None]
    assert [p["drifted"] for p in scored] == [False, False, False, True, True, True]
    # The score is the KS p-value of the binned counts, nothing else.
    window = MetricWindow.objects.filter(endpoint=profiled).order_by("start").last()
    assert scored[-1]["score"] == pytest.approx(ks(REFERENCE, window.features["x.mean"])["p_value"])
    assert scored[-1]["effect_value"] >= 0.1 and scored[-1]["relative"] >= 1 and not scored[0]["drifted"]
    histogram = v1["histograms"]["x.mean"]
    assert histogram["reference"] == REFERENCE and sum(histogram["current"]) == 3600
    assert data["deployments"] == [] or data["deployments"][0]["action"] == "deploy"

    assert anon_api.get("/api/v1/endpoints/digits-prod/metrics/").status_code == 401
    assert viewer_api.get("/api/v1/endpoints/nope/metrics/").status_code == 404
    for query, field in (
        ("range=2y", "range"),
        ("step=90", "step"),
        ("step=abc", "step"),
        ("since=2026-01-01", "since"),
        ("range=30d&step=60", "step"),
    ):
        bad = viewer_api.get(f"/api/v1/endpoints/digits-prod/metrics/?{query}")
        assert bad.status_code == 400 and field in bad.json()["errors"], (query, bad.json())


def test_roll_ups_keep_every_count_and_every_step_agrees(runtime, viewer_api, profiled, settings):
    base = minute_ago(90)
    for minute in (0, 1, 2, 61, 62):
        batch, _, _ = events(base + timedelta(minutes=minute), 200, error_every=20, seed=minute)
        assert runtime.post("/api/v1/telemetry/", {"events": batch}, format="json").status_code == 202

    def totals(step, range_="6h"):
        data = viewer_api.get(f"/api/v1/endpoints/digits-prod/metrics/?range={range_}&step={step}").json()
        (v1,) = data["versions"]
        points = v1["points"]
        return (
            sum(p["requests"] for p in points),
            sum(p["errors"] for p in points),
            sum(sum(v1["histograms"]["x.mean"]["current"] or [0]) for _ in [0]),
        )

    assert totals(60) == totals(900) == totals(3600) == (1000, 50, 1000)
    later = timezone.now() + timedelta(hours=1, minutes=5)  # every quarter and hour with data has closed
    written = rollups.compact_windows(now=later)
    assert written > 0
    by_level = {}
    for window in MetricWindow.objects.all():
        level = by_level.setdefault(window.resolution, [0, 0])
        level[0] += window.requests
        level[1] += window.errors
    closed = {r for r, _ in MetricWindow.LEVELS if profiled.__class__.objects.get(pk=profiled.pk).rollups.get(r)}
    assert by_level["minute"] == [1000, 50]
    assert by_level["15min"] == by_level["hour"] == [1000, 50]  # every minute was in a closed quarter and hour
    assert "15min" in closed and "hour" in closed
    # Reads at a coarse step use the rolled-up windows (and minutes after them), with the same sums.
    assert totals(60) == totals(900) == totals(3600) == (1000, 50, 1000)
    assert rollups.compact_windows(now=later) == 0  # nothing new to roll up

    # A late flush for a rolled-up minute counts in the minute and in its rolled-up windows.
    late, _, _ = events(base, 10, seed=99)
    assert runtime.post("/api/v1/telemetry/", {"events": late}, format="json").status_code == 202
    assert totals(60) == totals(900) == totals(3600) == (1010, 50, 1010)

    # Minutes past retention go once rolled up; quarters and hours still add up.
    settings.BERTH_MINUTE_WINDOWS_HOURS = 0
    rollups.compact_windows(now=timezone.now() + timedelta(hours=7))
    assert not MetricWindow.objects.filter(resolution="minute").exists()
    assert sum(w.requests for w in MetricWindow.objects.filter(resolution="6hour")) == 1010
    assert totals(900) == totals(3600) == (1010, 50, 1010)
    # ... and a flush that late lands in the rolled-up windows only.
    also_late, _, _ = events(base + timedelta(minutes=1), 10, seed=98)
    assert runtime.post("/api/v1/telemetry/", {"events": also_late}, format="json").status_code == 202
    assert not MetricWindow.objects.filter(resolution="minute").exists()
    assert totals(3600) == (1020, 50, 1020)

    # Rolled-up windows past their own retention go too.
    settings.BERTH_HOUR_WINDOWS_DAYS = settings.BERTH_QUARTER_WINDOWS_DAYS = 0
    rollups.compact_windows(now=timezone.now() + timedelta(hours=8))
    assert not MetricWindow.objects.exists()

    # Flush ids are kept while a retry could still be accepted, then forgotten.
    flushes = TelemetryFlush.objects.count()
    assert flushes
    rollups.compact_windows(now=timezone.now() + timedelta(days=settings.BERTH_TELEMETRY_MAX_AGE_DAYS))
    assert TelemetryFlush.objects.count() == flushes
    rollups.compact_windows(now=timezone.now() + timedelta(days=settings.BERTH_TELEMETRY_MAX_AGE_DAYS + 2))
    assert not TelemetryFlush.objects.exists()


def test_the_step_grows_with_the_range():
    now = timezone.now()
    assert [series.choose_step(now - span, now) for span in series.RANGES.values()] == [
        60,
        60,
        300,
        900,
        3600,
        6 * 3600,
    ]
    assert all(
        (span.total_seconds() / series.choose_step(now - span, now)) <= series.MAX_POINTS
        for span in series.RANGES.values()
    )


def test_the_endpoint_page_carries_live_charts(client, viewer, runtime, profiled):
    base = minute_ago(4)
    for minute in range(3):
        batch, _, _ = events(base + timedelta(minutes=minute), 300, shift=0.5, seed=minute)
        runtime.post("/api/v1/telemetry/", {"events": batch}, format="json")
    client.force_login(viewer)
    page = client.get("/endpoints/digits-prod/?range=15m")
    assert page.status_code == 200
    html = page.content.decode()
    for name in ("requests", "latency", "errors", "drift", "drift_now", "histogram"):
        assert f'data-chart="{name}"' in html and f'id="chart-{name}"' in html, name
    figure = json.loads(html.split('id="chart-drift_now">')[1].split("</script>")[0])
    assert "x.mean" in figure["data"][0]["x"]
    # Each feature's verdict in words, in the table and in the charts' hover text.
    row = html.split('<tr data-feature="x.mean">')[1].split("</tr>")[0]
    assert ">strong</span>" in row and "higher than the reference (mean +" in row and "on 900 rows" in row
    assert "run a new profile job" in row  # the fixture's profile has 4 bins, no tail edges
    assert figure["data"][0]["text"][0].startswith("DRIFT: higher than the reference")
    heatmap = json.loads(html.split('id="chart-drift">')[1].split("</script>")[0])
    # The figures in the test's own terms against their thresholds, p-values below 0.001 in
    # scientific notation (was "KS p < 0.001 (threshold 0.05), wasserstein ...").
    drifted = re.compile(
        r"DRIFT: KS p-value \d(\.\d)?e-\d+ \(threshold 0\.05\), Wasserstein [\d.]+ sd \(threshold 0\.1 sd\)$"
    )
    assert any(drifted.match(t) for row in heatmap["data"][0]["text"] for t in row), heatmap["data"][0]["text"]
    assert re.search(r"x\.mean: KS p-value \d(\.\d)?e-\d+ \(threshold 0\.05\)", figure["data"][0]["text"][0])
    figures = row.split('class="drift-figures">')[1].split("</td>")[0]
    assert re.fullmatch(
        r"KS p-value \d(\.\d)?e-\d+ \(threshold 0\.05\), Wasserstein [\d.]+ sd \(threshold 0\.1 sd\)", figures
    )
    line = figure["layout"]["annotations"][-1]["text"]
    assert line.startswith("drifts above: ") and "KS p-value < 0.05 and Wasserstein ≥ 0.1 sd" in line, line
    assert "chi-square p-value < 0.05 and total variation ≥ 0.1" in line, line  # the prediction's test
    live = client.get("/endpoints/digits-prod/live/?range=15m&feature=prediction")
    assert live.status_code == 200 and 'hx-trigger="every 5s"' in live.content.decode()
    assert "prediction: reference vs current" in live.content.decode()
    bad = client.get("/endpoints/digits-prod/?range=2y")
    assert bad.status_code == 200 and "range must be one of" in bad.content.decode()


def test_request_latency_is_compared_with_the_end_to_end_benchmark_of_its_encoding(
    client, viewer, viewer_api, runtime, endpoint
):
    from jobs.models import BenchmarkResult
    from registry.models import ModelVersion
    from tests.conftest import BenchWorld

    version = ModelVersion.objects.get(version="1")
    BenchWorld.result(None, version, endpoint.target, p95=0.05)  # session.run: never beside requests
    BenchWorld.result(None, version, endpoint.target, p95=2.0, scope="request", encoding="json")
    BenchWorld.result(None, version, endpoint.target, p95=9.0, scope="request", encoding="grpc")

    def sketch(ms, count):
        s = LogSketch()
        s.add(ms, count)
        return s.to_dict()

    body = {
        "endpoint": "digits-prod",
        "flush_id": "6f7c1d0e-8a51-4c7e-9a3b-0d2f4b6c8e10",
        "start": iso(minute_ago(2)),
        "seconds": 10,
        "series": [
            {
                "version": "1",
                "requests": 300,
                "errors": 0,
                "latency": sketch(5.0, 300),
                "features": {},
                "inference_latency": {"1": sketch(0.06, 300)},
                "request_latency": {"json": {"1": sketch(5.0, 240)}, "binary": {"1": sketch(3.0, 60)}},
            }
        ],
    }
    assert runtime.post("/api/v1/telemetry/", body, format="json").status_code == 202
    data = viewer_api.get("/api/v1/endpoints/digits-prod/metrics/?range=15m").json()
    (v1,) = [v for v in data["versions"] if v["version"] == "1"]
    request = v1["benchmark"]["request"]
    assert request["comparable"] and (request["encoding"], request["batch_size"], request["requests"]) == (
        "json",
        1,
        240,
    )
    assert request["share"] == pytest.approx(0.8) and request["benchmark_p95_ms"] == 2.0
    assert request["ratio"] == pytest.approx(request["production_p95_ms"] / 2.0)
    assert request["production_p95_ms"] == pytest.approx(5.0, rel=0.02)
    assert v1["request_benchmark_p95_ms"] == 2.0 and v1["benchmark_p95_ms"] == 0.05
    served = [p for p in v1["points"] if p["requests"]]
    assert served and all(p["request_p95_ms"] == pytest.approx(5.0, rel=0.02) for p in served)
    assert served[0]["request"]["binary"]["1"]["requests"] == 60
    assert BenchmarkResult.objects.filter(scope="request").count() == 2

    client.force_login(viewer)
    html = client.get("/endpoints/digits-prod/?range=15m").content.decode()
    versus = html.split('class="request-versus">')[1].split("</td>")[0]
    assert "vs end-to-end benchmark 2.000 ms (json, batch 1, 80 % of requests)" in versus
    assert f"×{request['ratio']:.2f}" in versus
    figure = json.loads(html.split('id="chart-latency">')[1].split("</script>")[0])
    names = [trace.get("name") for trace in figure["data"]]
    assert "v1 end-to-end benchmark p95 (json, batch 1)" in names and "v1 request p95 (json, batch 1)" in names
    line = next(t for t in figure["data"] if t.get("name") == "v1 end-to-end benchmark p95 (json, batch 1)")
    assert line["y"] == [2.0, 2.0]
