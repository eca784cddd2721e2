"""From 1024 px up, no page scrolls sideways and the top bar spans the page."""

import pytest

from .test_security_headers import PAGES, site  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

WIDEST = """() => [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right
  > document.documentElement.clientWidth + 1).slice(0, 5).map((e) => e.tagName + "." + e.className + "#" + e.id)"""


@pytest.mark.parametrize("width", [1440, 1024])
def test_no_page_scrolls_sideways(logged_in_page, site, width):  # noqa: F811
    from tests.conftest import ADMIN, make_user

    root = site.model.versions.get(version="1")
    for name in (
        "1-int8-static-per-channel-entropy-calibrated-on-digits-calibration",
        "1-fp16-optimized-graph-level-extended-with-a-rather-long-name",
    ):
        site.result(site.version(name, parent=root), site.cpu, p95=0.5, accuracy=0.979)
    page = logged_in_page(make_user("root", ADMIN, is_staff=True, is_superuser=True))
    page.set_viewport_size({"width": width, "height": 900})
    for path in PAGES:
        if path.startswith("/admin/"):
            continue
        page.goto(path)
        page.wait_for_load_state("load")
        assert page.evaluate("document.documentElement.scrollWidth") <= width, (path, page.evaluate(WIDEST))
        bar = page.locator("header.topbar").bounding_box()
        assert bar["x"] == 0 and bar["width"] >= width - 20, (path, bar)  # minus a vertical scroll bar


def test_the_endpoint_actions_line_up(logged_in_page, engineer, site):  # noqa: F811
    from monitoring import services
    from monitoring.models import Endpoint

    # Roll back is offered once there is an earlier split to go back to.
    services.deploy(endpoint=Endpoint.objects.get(name="digits-prod"), version=site.version("2"), weight=10)
    page = logged_in_page(engineer)
    page.set_viewport_size({"width": 1024, "height": 900})
    page.goto("/endpoints/digits-prod/")
    bottoms = {
        name: page.get_by_role("button", name=name, exact=True).bounding_box()
        for name in ("Deploy", "Roll back", "New token")
    }
    assert (
        max(b["y"] + b["height"] for b in bottoms.values()) - min(b["y"] + b["height"] for b in bottoms.values()) <= 2
    ), bottoms
