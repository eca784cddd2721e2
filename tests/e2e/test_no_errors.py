"""No page logs a console error or loads anything that answers 4xx or 5xx: every page of the
site, a job page, and the monitoring pages with drift and a firing drift alert, through a live
refresh of the endpoint page."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from jobs.models import Job
from monitoring import alerts
from monitoring.models import Endpoint
from registry.models import Dataset, ReferenceProfile
from tests.monitoring.test_alerts import traffic

from .test_security_headers import PAGES, site  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def drifting_site(site):  # noqa: F811
    """The site with a profiled version 1 whose inputs drifted, and its drift alert firing."""
    version = site.model.versions.get(version="1")
    dataset = Dataset.objects.create(
        model=site.model, name="ref", kind="reference", file="x.npz", sha256="0" * 64, size_bytes=1, rows=1000
    )
    for name, kind, counts in (("x.mean", "mean", [250, 250, 250, 250]), ("prediction", "class", [300, 300, 400])):
        ReferenceProfile.objects.create(
            version=version,
            dataset=dataset,
            name=name,
            kind=kind,
            tensor="x",
            edges=[0.2, 0.4, 0.6] if kind == "mean" else [],
            classes=3 if kind == "class" else None,
            counts=counts,
        )
    endpoint = Endpoint.objects.get(name="digits-prod")
    now = timezone.now().replace(second=30, microsecond=0)
    alerts.rule_create(endpoint=endpoint, metric="drift", window_minutes=5, min_requests=20)
    drifted = {"x.mean": [0, 0, 40, 360], "prediction": [400, 0, 0]}
    traffic(endpoint, now, minutes_ago=6, requests=400, features=drifted)
    alerts.evaluate_rules(now=now - timedelta(minutes=5))
    traffic(endpoint, now, minutes_ago=1, requests=400, features=drifted)
    alerts.evaluate_rules(now=now)
    assert endpoint.alerts.filter(state="firing", rule__metric="drift").exists()
    return site


def test_no_page_logs_an_error_or_loads_a_missing_resource(logged_in_page, drifting_site):
    from tests.conftest import ADMIN, make_user

    page = logged_in_page(make_user("root", ADMIN, is_staff=True, is_superuser=True))
    errors, failed = [], []
    page.on("console", lambda message: message.type == "error" and errors.append(f"{page.url}: {message.text}"))
    page.on("response", lambda response: response.status >= 400 and failed.append(f"{response.status} {response.url}"))
    job = Job.objects.order_by("id").first()
    for path in [*PAGES, f"/jobs/{job.pk}/", "/alerts/?endpoint=digits-prod", "/endpoints/digits-prod/?range=15m"]:
        response = page.goto(path)
        assert response.status == 200, path
        page.wait_for_load_state("load")
    # On the endpoint page, through a live refresh (every 5 s) that swaps the charts' data and
    # the actions in: the drift charts are drawn and the refresh loads nothing missing.
    expect(page.locator('[data-chart="drift_now"] svg.main-svg').first).to_be_attached()
    updated = page.locator("#live").get_attribute("data-updated")
    expect(page.locator("#live")).not_to_have_attribute("data-updated", updated, timeout=15_000)
    expect(page.locator(".endpoint-alerts .alert-now")).to_contain_text("p-value")
    assert not errors, errors
    assert not failed, failed
