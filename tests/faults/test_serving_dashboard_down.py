"""berth-serve with its dashboard killed: it keeps answering, and once the dashboard is back every
request it served is counted, once, in the dashboard's windows.

tests/serving/test_telemetry.py (test_it_keeps_answering_while_the_dashboard_is_down_and_delivers_
every_window_afterwards) rides out an outage of a stand-in dashboard and checks every window's
delivery; this one runs the real dashboard under gunicorn, killed with SIGKILL while flushes come
in, and counts what its database ingested (flush ids make a retried flush count once)."""

import time

import numpy as np
import pytest

from monitoring import services
from registry.models import HardwareTarget
from tests.conftest import wait_for
from tests.integration.test_serving import call, infer_body, reported

pytestmark = pytest.mark.django_db(transaction=True)


def test_serving_goes_on_without_the_dashboard_and_every_request_is_counted_when_it_is_back(
    processes, ready_version, engineer
):
    dashboard = processes.dashboard(BERTH_TELEMETRY_FLUSH_SECONDS=1)
    endpoint, token = services.endpoint_create(
        name="digits-prod", model=ready_version.model, target=HardwareTarget.objects.get(slug="cpu")
    )
    services.deploy(endpoint=endpoint, version=ready_version, weight=100, user=engineer)
    runtime = processes.serve(dashboard, "digits-prod", token)
    rows = np.random.default_rng(0).standard_normal((1, 4)).astype(np.float32)
    url = runtime.url + "/v2/models/digits/infer"

    def serve_for(seconds):
        served, deadline = 0, time.monotonic() + seconds
        while time.monotonic() < deadline:
            status, body = call(url, infer_body(rows))
            assert status == 200 and body["model_version"] == "1", body
            served += 1
        return served

    sent = serve_for(1)
    wait_for(lambda: reported(endpoint) == sent, timeout=30, message=f"{sent} requests reported before the outage")

    dashboard.kill()
    sent += serve_for(5)  # five flush intervals without a dashboard
    assert "still serving digits generation 1" in runtime.log()
    assert "telemetry: the dashboard is unreachable" in runtime.log()
    dashboard.start()
    wait_for(
        lambda: reported(endpoint) == sent,
        timeout=60,
        interval=0.5,
        message=f"{sent} requests to be reported, got {reported(endpoint)}",
    )
    assert "endpoint digits-prod answers again" in runtime.log()

    sent += serve_for(1)  # and it goes on as before
    wait_for(lambda: reported(endpoint) == sent, timeout=30, message=f"{sent} requests reported after the outage")
    assert reported(endpoint, "errors") == 0
