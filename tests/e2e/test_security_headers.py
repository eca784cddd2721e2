"""Every page works under the Content-Security-Policy (no inline script, nothing blocked: the
new_page fixture fails a test on any violation or JavaScript error), and the headers are sent."""

import pytest
from playwright.sync_api import expect

from monitoring import alerts, services

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def site(world):
    version = world.version("1")
    world.result(version, world.cpu, p95=1.5)
    endpoint, _ = services.endpoint_create(name="digits-prod", model=world.model, target=world.cpu)
    services.deploy(endpoint=endpoint, version=version, weight=100)
    alerts.rule_create(endpoint=endpoint, metric="error_rate", threshold=5)
    return world


PAGES = [
    "/",
    "/models/",
    "/models/digits/",
    "/models/digits/versions/1/",
    "/jobs/",
    "/compare/?model=digits",
    "/targets/",
    "/upload/",
    "/endpoints/",
    "/endpoints/digits-prod/",
    "/alerts/",
    "/endpoints/digits-prod/alerts/",
    "/workers/",
    "/account/tokens/",
    "/admin/",
]


def test_every_page_works_under_the_policy(logged_in_page, site):
    from tests.conftest import ADMIN, make_user

    page = logged_in_page(make_user("root", ADMIN, is_staff=True, is_superuser=True))
    for path in PAGES:
        response = page.goto(path)
        assert response.status == 200, path
        headers = response.headers
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "same-origin", path
        assert headers["x-content-type-options"] == "nosniff", path
    # The API docs (Swagger UI, served locally) draw under the same policy.
    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Berth")
