"""The endpoint monitoring page in real Chromium: Plotly draws every chart, and new telemetry
shows up within a refresh, updating the charts in place (the page is not reloaded)."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from monitoring import services
from registry.models import Dataset
from tests.monitoring.conftest import profile_x_mean, reference_x_mean

from .conftest import unbundled_trace_types

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def send(endpoint, minute, count, *, mean=0.5, error_kind=None):
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=minute)
    events = [
        {
            "ts": (start + timedelta(milliseconds=100 * i)).isoformat(),
            "version": "1",
            "latency_ms": 1.0 + (i % 7) * 0.3,
            "ok": error_kind is None or i % 10 != 0,
            "error_kind": error_kind,
            "features": {"x.mean": mean + (i % 10) * 0.01},
        }
        for i in range(count)
    ]
    services.telemetry_ingest(endpoint=endpoint, payload={"events": events})


@pytest.fixture
def monitored(world):
    version = world.version("1")
    reference_x_mean(version)
    endpoint, _ = services.endpoint_create(name="digits-prod", model=world.model, target=world.cpu)
    services.deploy(endpoint=endpoint, version=version, weight=100)
    world.result(version, world.cpu, p95=1.5)
    for minute in (4, 3, 2):
        send(endpoint, minute, 300, mean=0.5 if minute > 2 else 0.9)
    return endpoint


def test_the_charts_render_and_follow_new_telemetry(logged_in_page, viewer, monitored):
    page = logged_in_page(viewer)
    page.goto("/endpoints/digits-prod/?range=15m")
    for name in ("requests", "latency", "errors", "drift", "drift_now", "histogram"):
        expect(page.locator(f'[data-chart="{name}"] svg.main-svg').first).to_be_attached()
    assert not unbundled_trace_types(page)
    # Raw events carry request latency only: no ratio against the session.run benchmark, and the
    # page says why; the benchmark line is not drawn beside request latency.
    expect(page.locator("#live .kpis td.versus")).to_contain_text("no comparable benchmark")
    expect(page.locator("#live .kpis td.versus")).not_to_contain_text("×")
    expect(page.locator('[data-chart="latency"] .legend')).not_to_contain_text("benchmark")
    assert "timeout" not in page.locator('[data-chart="errors"]').inner_text()

    page.evaluate("document.querySelector('[data-chart=\"errors\"]').dataset.marker = 'kept'")
    send(monitored, 1, 300, error_kind="timeout")
    # Within a refresh (every 5 s), the table and the charts show the new errors ...
    expect(page.locator("#live .kpis")).to_contain_text("timeout 30", timeout=15_000)
    expect(page.locator('[data-chart="errors"]')).to_contain_text("v1 timeout")
    # ... drawn into the same chart element: the page was not reloaded or redrawn as a whole.
    assert page.evaluate("document.querySelector('[data-chart=\"errors\"]').dataset.marker") == "kept"


def test_a_fresh_canarys_rate_is_right_and_the_overview_agrees(logged_in_page, viewer, world):
    from monitoring.models import Deployment
    from tests.monitoring.test_honest_series import backdate, steady

    endpoint, _ = services.endpoint_create(name="digits-prod", model=world.model, target=world.cpu)
    services.deploy(endpoint=endpoint, version=world.version("1"), weight=100)
    now = timezone.now()
    Deployment.objects.filter(endpoint=endpoint).update(deployed=now - timedelta(hours=1))
    services.deploy(endpoint=endpoint, version=world.version("2"), weight=10)
    deployed = now - timedelta(seconds=75)
    backdate(endpoint, 2, deployed)
    steady(endpoint, "1", since=now - timedelta(minutes=6), until=now, per_second=9)
    steady(endpoint, "2", since=deployed, until=now, per_second=1)

    page = logged_in_page(viewer)
    page.goto("/endpoints/digits-prod/")
    expect(page.locator(".range-picker .current")).to_have_text("15m")  # the range fits the data there is
    canary = page.locator("#live .kpis tbody tr", has_text="10 %").locator("td.rps")
    expect(canary).to_contain_text("over")
    rate = float(canary.inner_text().split()[0])
    assert abs(rate - 1.0) <= 0.2, rate  # not 75 requests / 300 s = 0.25
    main = float(page.locator("#live .kpis tbody tr", has_text="90 %").locator("td.rps").inner_text().split()[0])
    assert abs(main - 9.0) <= 9.0 * 0.2, main


def test_deployment_labels_never_collide_and_the_legend_leaves_the_dates_alone(
    logged_in_page, viewer, monitored, world
):
    second = world.version("2")
    profile_x_mean(second, Dataset.objects.get(name="ref"))
    services.deploy(endpoint=monitored, version=second, weight=10)  # a canary, promoted, rolled back
    services.deploy(endpoint=monitored, version=second, weight=100)
    services.rollback(endpoint=monitored)
    page = logged_in_page(viewer)
    page.goto("/endpoints/digits-prod/?range=15m")
    chart = page.locator('[data-chart="requests"]')
    expect(chart.locator("svg.main-svg").first).to_be_attached()
    labels = chart.locator(".annotation-text")
    expect(labels).to_have_count(4)
    boxes = [labels.nth(i).bounding_box() for i in range(4)]

    def overlap(a, b):
        return (
            a["x"] < b["x"] + b["width"]
            and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"]
            and b["y"] < a["y"] + a["height"]
        )

    assert not any(overlap(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]), boxes
    legend = chart.locator(".legend").bounding_box()
    ticks = [t.bounding_box() for t in chart.locator(".xtick text").all()]
    assert legend["y"] >= max(t["y"] + t["height"] for t in ticks) - 1, (legend, ticks)


def test_production_is_compared_with_the_benchmark_like_for_like(logged_in_page, viewer, world):
    from berth.core.stats import LogSketch

    v1, v2 = world.version("1"), world.version("2")
    endpoint, _ = services.endpoint_create(name="digits-prod", model=world.model, target=world.cpu)
    services.deploy(endpoint=endpoint, version=v1, weight=100)
    services.deploy(endpoint=endpoint, version=v2, weight=20)
    world.result(v1, world.cpu, p95=1.5)  # session.run at batch 1
    world.result(v2, world.cpu, p95=4.0, batch=8)  # only at batch 8
    # End to end through a local berth-serve: v1 in JSON (what its requests come in), v2 in JSON only
    # while its requests come over gRPC.
    world.result(v1, world.cpu, p95=3.0, scope="request", encoding="json")
    world.result(v2, world.cpu, p95=3.0, scope="request", encoding="json")

    def sketch(ms, count):
        s = LogSketch()
        s.add(ms, count)
        return s.to_dict()

    start = timezone.now() - timedelta(seconds=30)
    flush = {
        "flush_id": str(uuid.uuid4()),
        "start": start.isoformat(),
        "seconds": 10,
        "series": [
            {
                "version": version,
                "requests": 200,
                "errors": 0,
                "latency": sketch(6.0, 200),
                "inference_latency": {"1": sketch(inference, 200)},
                "request_latency": {encoding: {"1": sketch(6.0, 200)}},
                "batch_sizes": {"1": 200},
            }
            for version, inference, encoding in (("1", 1.8, "json"), ("2", 2.0, "grpc"))
        ],
    }
    services.telemetry_ingest(endpoint=endpoint, payload=flush)

    page = logged_in_page(viewer)
    page.goto("/endpoints/digits-prod/")
    first = page.locator("#live .kpis tbody tr", has_text="80 %").locator("td.versus")
    expect(first).to_contain_text("vs benchmark 1.500 ms at batch 1")
    ratio = float(first.locator(".ratio").nth(0).inner_text().lstrip("×"))
    assert abs(ratio - 1.8 / 1.5) <= 0.03, ratio  # session.run against session.run, not 6 / 1.5
    # Requests against the end-to-end benchmark in their encoding, not against session.run (6 / 1.5).
    expect(first).to_contain_text("vs end-to-end benchmark 3.000 ms (json, batch 1)")
    ratio = float(first.locator(".ratio").nth(1).inner_text().lstrip("×"))
    assert abs(ratio - 6.0 / 3.0) <= 0.06, ratio
    second = page.locator("#live .kpis tbody tr", has_text="20 %").locator("td.versus")
    expect(second).to_contain_text("no benchmark at batch size 1, the size production ran (benchmarked at 8)")
    expect(second).to_contain_text(
        "request p95: no comparable benchmark: v2 on cpu has no end-to-end benchmark in grpc at batch size 1"
    )
    expect(second.locator(".ratio")).to_have_count(0)
    legend = page.locator('[data-chart="latency"] .legend')
    expect(legend).to_contain_text("v1 benchmark p95 (batch 1)")
    expect(legend).to_contain_text("v1 inference p95 (batch 1)")
    expect(legend).to_contain_text("v1 end-to-end benchmark p95 (json, batch 1)")
    expect(legend).not_to_contain_text("v2 benchmark")
    expect(legend).not_to_contain_text("v2 end-to-end")
