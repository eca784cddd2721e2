"""Replicas and token rotation in real Chromium, with a real berth-serve process: the replica is
listed, keeps serving and reporting with the old token through the grace period (the page says
it still uses it, with the countdown), and is shown as refused once the grace period is over."""

from datetime import timedelta

import numpy as np
import pytest
from django.db.models import Sum
from django.utils import timezone
from playwright.sync_api import expect

from monitoring import services
from monitoring.models import Endpoint, MetricWindow
from registry.models import HardwareTarget
from tests.conftest import wait_for
from tests.integration.test_serving import call, infer_body
from tests.serving.conftest import Serve, serve_args

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def reported(endpoint):
    return MetricWindow.objects.filter(endpoint=endpoint).aggregate(total=Sum("requests"))["total"] or 0


@pytest.fixture
def replica(live_server, digits_version, engineer, settings, tmp_path):
    """digits-prod served by one berth-serve process that reads its token from a file and
    flushes telemetry every second."""
    settings.BERTH_TELEMETRY_FLUSH_SECONDS = 1
    endpoint, token = services.endpoint_create(
        name="digits-prod", model=digits_version.model, target=HardwareTarget.objects.get(slug="cpu")
    )
    services.deploy(endpoint=endpoint, version=digits_version, weight=100, user=engineer)
    (tmp_path / "token").write_text(token + "\n")
    process = Serve(
        serve_args(
            live_server.url, tmp_path / "cache", "--token-file", tmp_path / "token", "--poll-seconds", "0.3", token=None
        ),
        tmp_path / "berth-serve.log",
    ).wait_ready()
    yield endpoint, f"http://127.0.0.1:{process.port}"
    process.stop()


def test_a_replica_serves_through_the_grace_period_and_then_shows_refused(logged_in_page, engineer, replica):
    endpoint, url = replica
    rows = np.zeros((1, 64), dtype=np.float32)
    page = logged_in_page(engineer)
    page.goto("/endpoints/digits-prod/")
    row = page.locator("table.replicas tbody tr[data-instance]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("serving")
    expect(row).to_contain_text("generation 1: 1")

    page.get_by_role("button", name="New token").click()
    expect(page.locator("#confirm")).to_contain_text("keeps working for 10 minutes")
    expect(page.locator("#confirm")).to_contain_text("(1 reporting:")  # who is affected: the replica
    page.get_by_role("button", name="Yes, make a new token").click()
    expect(page.locator("#token-grace-note")).to_contain_text("keeps working until")
    page.goto("/endpoints/digits-prod/")
    expect(page.locator("#token-grace")).to_contain_text("still works for")
    expect(page.locator("#token-grace")).to_contain_text("Still on the old token")
    expect(row).to_contain_text("old token")

    # Within the grace period it keeps serving, and its telemetry keeps being counted.
    before = reported(endpoint)
    for _ in range(20):
        assert call(url + "/v2/models/digits/infer", infer_body(rows))[0] == 200
    wait_for(lambda: reported(endpoint) >= before + 20, timeout=20, message="the requests to be reported")
    expect(row).to_contain_text("serving")

    # The grace period ends (as if ten minutes had passed): its next request is refused, and the
    # page says so; the replica itself goes on serving its last spec.
    Endpoint.objects.filter(pk=endpoint.pk).update(old_token_expires=timezone.now() - timedelta(seconds=1))
    expect(row).to_contain_text("refused", timeout=20_000)
    expect(row).to_contain_text("grace period ended")
    expect(page.locator("#token-grace")).to_have_count(0)
    assert call(url + "/v2/models/digits/infer", infer_body(rows))[0] == 200
