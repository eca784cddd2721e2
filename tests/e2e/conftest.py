"""Browser fixtures: one headless Chromium per test module, driven by Playwright's sync API,
against pytest-django's live_server.

While Playwright's sync API is started, the test thread has a running event loop, so Django
refuses the tests' own (synchronous) ORM calls as "async unsafe" unless
DJANGO_ALLOW_ASYNC_UNSAFE is set. It is set only while a module's browser is open, so the
rest of the suite keeps Django's check.
"""

import json
import os

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Playwright's waits and expect()s (ms): everything is local; the validate job gets longer.
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium; skipped where it is not installed, except in CI, which must run these."""
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} is missing: the browser tests need Debian's chromium package."
        if os.environ.get("CI") == "true":
            pytest.fail(message + " CI must run them, not skip them.")
        pytest.skip(message)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield chromium
            chromium.close()


@pytest.fixture
def new_page(browser, live_server):
    """``new_page()``: a page in a fresh browser context (own cookies and storage) on the live
    server. Uncaught JavaScript errors on any of these pages, anything the
    Content-Security-Policy blocks, and a static file or icon that does not load, fail the test."""
    contexts, js_errors, missing = [], [], []

    def make():
        context = browser.new_context(base_url=live_server.url)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: js_errors.append(str(error)))
        page.on(
            "response",
            lambda response: (
                response.status >= 400
                and any(part in response.url for part in ("/static/", "/favicon"))
                and missing.append(f"{response.status} {response.url}")
            ),
        )
        page.on(
            "console",
            lambda message: (
                message.type == "error"
                and "Content Security Policy" in message.text
                and csp_violations.append(message.text)
            ),
        )
        return page

    csp_violations = []
    yield make
    for context in contexts:
        context.close()
    assert not js_errors, f"JavaScript errors on the page: {js_errors}"
    assert not csp_violations, f"The Content-Security-Policy blocked something: {csp_violations}"
    assert not missing, f"Static files or icons that did not load: {missing}"


@pytest.fixture
def logged_in_page(new_page):
    """``logged_in_page(user)``: a page logged in as ``user`` through the real login form
    (tests.conftest.make_user gives every user the password ``pw-<username>``)."""
    from playwright.sync_api import expect

    def login(user, password=None):
        page = new_page()
        page.goto("/accounts/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(password or f"pw-{user.username}")
        page.get_by_role("button", name="Log in", exact=True).click()
        expect(page.locator("header .who")).to_contain_text(user.username)
        return page

    return login


# --- watching the upload page ----------------------------------------------------------------

RECORDER_KEY = "berth-e2e-upload-ui"

# Every value the progress bar takes and every line the status shows, kept in sessionStorage
# so they can be read after the page has navigated to the version page. Playwright evaluates
# this itself, so it needs no inline script on the page.
_RECORDER = """(key) => {
  const bar = document.getElementById("upload-progress");
  const line = document.getElementById("upload-status");
  const seen = JSON.parse(sessionStorage.getItem(key) || '{"progress": [], "status": []}');
  const save = () => sessionStorage.setItem(key, JSON.stringify(seen));
  new MutationObserver(() => { seen.progress.push(Number(bar.value)); save(); })
    .observe(bar, {attributes: true, attributeFilter: ["value"]});
  new MutationObserver(() => { seen.status.push(line.textContent); save(); })
    .observe(line, {childList: true, characterData: true, subtree: true});
  save();
}"""


def record_upload_ui(page):
    """Start recording the upload page's progress values and status lines (see recorded)."""
    page.evaluate(_RECORDER, RECORDER_KEY)


def recorded(page):
    """``{"progress": [int, ...], "status": [str, ...]}`` seen since record_upload_ui, in order."""
    return json.loads(page.evaluate("(key) => sessionStorage.getItem(key)", RECORDER_KEY))


# --- a model file big enough to be sent in several chunks ------------------------------------


@pytest.fixture(scope="session")
def big_onnx_file(tmp_path_factory):
    """A real ONNX classifier (input ``x``) of about 4 MiB: one 1024×1024 float32 weight."""
    from tests.conftest import tiny_onnx_bytes

    path = tmp_path_factory.mktemp("models") / "big.onnx"
    path.write_bytes(tiny_onnx_bytes(features=1024, classes=1024, seed=7))
    return path


# --- the plotly.js the pages load ------------------------------------------------------------


def unbundled_trace_types(page):
    """Trace types of the page's figures that its plotly.js lacks: Berth's bundle has only the
    ones static_src/plotly/index.js registers, and plotly.js skips a trace of another type
    without a word (the chart is drawn, empty)."""
    return page.evaluate("""() => {
      const known = new Set(Object.keys(Plotly.PlotSchema.get().traces));
      return [...document.querySelectorAll('script[id^="chart-"]')]
        .flatMap((source) => JSON.parse(source.textContent).data.map((trace) => trace.type || "scatter"))
        .filter((type) => !known.has(type));
    }""")
