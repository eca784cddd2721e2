"""Static files as the browser gets them: hashed names, brotli-compressed, cached for a year,
plotly.js loaded once per page; an icon everywhere (bench/pages.py times the first chart)."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
YEAR = 365 * 24 * 3600


def test_static_files_are_compressed_and_cached_for_a_year(logged_in_page, viewer, world):
    page = logged_in_page(viewer)
    static = {}
    page.on("response", lambda r: "/static/" in r.url and static.setdefault(r.url.rsplit("/", 1)[-1], r))
    page.goto("/compare/?model=digits")
    page.wait_for_load_state("load")
    plotly = [name for name in static if name.startswith("plotly")]
    assert len(plotly) == 1, static.keys()  # once, under its hashed name
    for name, response in list(static.items()):
        headers = response.all_headers()
        stem = name.split(".")
        assert len(stem) >= 3 and len(stem[-2]) == 12, f"{name} has no content hash"
        assert "immutable" in headers["cache-control"], (name, headers["cache-control"])
        assert int(headers["cache-control"].split("max-age=")[1].split(",")[0]) >= YEAR, name
        if name.endswith((".js", ".css")):
            assert headers.get("content-encoding") == "br", (name, headers.get("content-encoding"))
    # The full bundle was 4.8 MB; Berth's (make plotly) travels as about 0.35 MB of brotli.
    transferred = page.evaluate("""() => performance.getEntriesByType("resource")
        .filter((e) => e.name.includes("/static/vendor/plotly")).map((e) => e.transferSize)""")
    assert len(transferred) == 1 and transferred[0] < 600_000, transferred
    assert page.evaluate("typeof Plotly.react") == "function"


def test_every_page_has_an_icon(new_page, viewer):
    page = new_page()
    page.goto("/accounts/login/")
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert page.request.get(icon).status == 200
    # Pages that name no icon (the admin's, the API docs') get it at /favicon.ico.
    response = page.request.get("/favicon.ico")
    assert response.status == 200 and response.headers["content-type"] == "image/svg+xml"
    page.goto("/admin/login/")
    expect(page.locator("#login-form")).to_be_visible()
