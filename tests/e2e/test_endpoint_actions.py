"""The endpoint page's actions follow the state without a reload: the live refresh (every 5 s)
brings Promote for a new canary and Roll back once there is an earlier split, takes them away
when they no longer apply, and leaves a deploy form that someone is filling in alone."""

import pytest
from playwright.sync_api import expect

from monitoring import services

from .test_endpoint_page import monitored  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

REFRESH_MS = 15_000  # three refreshes


def test_actions_appear_and_disappear_with_the_state(logged_in_page, engineer, world):
    v1, v2 = world.version("1"), world.version("2")
    endpoint, _ = services.endpoint_create(name="digits-prod", model=world.model, target=world.cpu)
    services.deploy(endpoint=endpoint, version=v1, weight=100)
    page = logged_in_page(engineer)
    page.goto("/endpoints/digits-prod/")
    serving = page.locator("#serving-now")
    promote = serving.get_by_role("button", name="Promote to 100 %")
    roll_back = serving.get_by_role("button", name="Roll back")
    expect(serving.get_by_role("button", name="New token")).to_be_visible()
    expect(roll_back).to_have_count(0)  # one split only: nothing to roll back to
    expect(promote).to_have_count(0)
    page.evaluate("document.body.dataset.marker = 'kept'")

    # Someone else starts a canary: Promote and Roll back appear, the history and the split follow.
    services.deploy(endpoint=endpoint, version=v2, weight=10)
    canary = serving.locator('tr[data-version="2"]')
    expect(canary.get_by_role("button", name="Promote to 100 %")).to_be_visible(timeout=REFRESH_MS)
    expect(canary).to_contain_text("10 %")
    expect(roll_back).to_be_visible()
    expect(page.locator("#deployment-history tbody tr")).to_have_count(2)

    # ... and promotes it: Promote goes, v1 stops serving.
    services.deploy(endpoint=endpoint, version=v2, weight=100)
    expect(promote).to_have_count(0, timeout=REFRESH_MS)
    expect(serving.locator('tr[data-version="1"]')).to_have_count(0)
    expect(page.locator("#deployment-history tbody tr")).to_have_count(3)

    # A deploy form being filled in is left alone by the refreshes, then works as typed.
    weight = page.get_by_label("with")
    weight.fill("25")
    page.locator("#deploy-form select").select_option("1")
    services.deploy(endpoint=endpoint, version=v1, weight=50)  # a change that would redraw the region
    expect(page.locator("#deployment-history tbody tr")).to_have_count(4, timeout=REFRESH_MS)
    expect(weight).to_have_value("25")
    assert page.evaluate("document.body.dataset.marker") == "kept"  # never reloaded
    expect(promote).to_have_count(0)  # the held region still shows v2 alone, as before the edit
    page.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.locator("#serving-now tr[data-version='1']")).to_contain_text("25 %")
    # The charts still draw after the refreshes swapped the regions around them.
    expect(page.locator('[data-chart="requests"] svg.main-svg').first).to_be_attached()


def test_a_chart_whose_figure_goes_away_is_cleared(logged_in_page, viewer, monitored):  # noqa: F811
    from monitoring.models import MetricWindow

    page = logged_in_page(viewer)
    page.goto("/endpoints/digits-prod/?range=15m")
    drift_now = page.locator('[data-chart="drift_now"]')
    expect(drift_now.locator("svg.main-svg").first).to_be_attached()
    MetricWindow.objects.filter(endpoint=monitored).delete()  # no verdict in the window any more
    expect(page.locator("#chart-drift_now")).to_have_count(0, timeout=REFRESH_MS)
    expect(drift_now.locator("svg.main-svg")).to_have_count(0)
    expect(page.locator('[data-chart="requests"] svg.main-svg').first).to_be_attached()
