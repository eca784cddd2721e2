"""First load of the Compare and endpoint pages in real Chromium: time to the first chart, and
what the static files cost on the wire.

Two gunicorn servers on loopback, started side by side in this run on one database:

- baseline: static files as Berth served them before (plain names from the source folders,
  uncompressed, ``Cache-Control: max-age=60``, the full 4.8 MB plotly.js),
  bench/pages_baseline_settings.py;
- ours: dashboard.settings (collectstatic's hashed names with brotli/gzip copies, cached for a
  year; a plotly.js built with only the trace types the pages draw (make plotly), 1.2 MB; the
  first chart drawn first, the others one per frame).

Each load is a fresh browser context (empty cache, logged in by a session cookie); the time to
the first chart is when the first Plotly ``svg.main-svg`` appears in a ``[data-chart]`` box,
by the page's own clock (``performance.now()``, from navigation start). A second visit in the
same context shows what the cache saves. Medians of LOADS loads, interleaved. The goal (issue
14): ours under 500 ms on both pages.

The floor, loaded the same way: a page with nothing but ours' plotly.js (from ours' server, with
an empty cache) that draws the endpoint page's first figure. No page can show a chart sooner on
this machine: what is left above it is the page itself (the server's answer, the other static
files, the HTML).

    .venv/bin/python bench/pages.py        # DATABASE_URL defaults to the local PostgreSQL
"""

import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import timedelta

import djangobench

djangobench.configure("berth_bench_pages")

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

GOAL_MS = 500
LOADS = 5
CHROMIUM = "/usr/bin/chromium"
PAGES = {"compare": "/compare/?model=digits&targets=cpu&targets=gpu", "endpoint": "/endpoints/digits-prod/?range=1h"}

# Installed before any page script runs: the page's clock when the first chart appears.
FIRST_CHART = """
new MutationObserver((records, observer) => {
  if (document.querySelector("[data-chart] svg.main-svg")) {
    window.__firstChart = performance.now(); observer.disconnect();
  }
}).observe(document, {childList: true, subtree: true});
"""
FLOOR_PATH = "/bench-floor/"
FLOOR_PAGE = """<!doctype html><html><head><script src="{plotly}" defer></script></head><body>
<div data-chart="floor" style="width:800px;height:360px"></div>
<script type="application/json" id="figure">{figure}</script>
<script>document.addEventListener("DOMContentLoaded", () => {{
  const figure = JSON.parse(document.getElementById("figure").textContent);
  Plotly.react(document.querySelector("[data-chart]"), figure.data, figure.layout, {{displaylogo: false, responsive: true}});
}});</script></body></html>"""
# The first chart, the static bytes transferred, and the first byte of the page.
VISIT = """() => [window.__firstChart,
  performance.getEntriesByType("resource").filter((e) => e.name.includes("/static/")).reduce((sum, e) => sum + e.transferSize, 0),
  performance.getEntriesByType("navigation")[0].responseStart]"""


def populate():
    """A model with three versions benchmarked on two targets, and an endpoint with an hour of
    telemetry: what the two pages draw."""
    from django.contrib.auth.models import Group, User

    from jobs.models import Job
    from monitoring import services
    from registry.models import Dataset, HardwareTarget, Model, ModelVersion, ReferenceProfile

    model = Model.objects.create(name="digits", task="classification")
    cpu = HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})[0]
    gpu = HardwareTarget.objects.get_or_create(slug="gpu", defaults={"name": "GPU", "device": "cuda"})[0]
    root = None
    for index, name in enumerate(("1", "1-int8", "1-fp16")):
        version = ModelVersion.objects.create(
            model=model,
            version=name,
            parent=root,
            format="onnx",
            artifact=f"artifacts/{name}.onnx",
            sha256=f"{index:064x}",
            size_bytes=4000 - 1000 * index,
            status="ready",
        )
        root = root or version
        for target in (cpu, gpu):
            job = Job.objects.create(kind="benchmark", version=version, target=target, status="succeeded")
            for batch in (1, 8, 32):
                p50 = (1.0 + index) * batch * (0.2 if target == gpu else 1.0)
                djangobench.benchmark_result(
                    job=job, batch_size=batch, p50_ms=p50, accuracy=0.98 - 0.001 * index
                ).save()
    dataset = Dataset.objects.create(
        model=model, name="ref", kind="reference", file="x.npz", sha256="0" * 64, size_bytes=1, rows=1000, arrays={}
    )
    ReferenceProfile.objects.create(
        version=root,
        dataset=dataset,
        name="x.mean",
        kind="mean",
        tensor="x",
        edges=[0.2, 0.4, 0.6],
        counts=[250, 250, 250, 250],
    )
    endpoint, _ = services.endpoint_create(name="digits-prod", model=model, target=cpu)
    services.deploy(endpoint=endpoint, version=root, weight=100)
    now = timezone.now().replace(second=0, microsecond=0)
    for minute in range(60, 0, -1):
        start = now - timedelta(minutes=minute)
        services.telemetry_ingest(
            endpoint=endpoint,
            payload={
                "events": [
                    {
                        "ts": (start + timedelta(milliseconds=500 * i)).isoformat(),
                        "version": "1",
                        "latency_ms": 1.0 + (i % 7) * 0.3,
                        "ok": i % 50 != 0,
                        "error_kind": "timeout" if i % 50 == 0 else None,
                        "features": {"x.mean": 0.5 + (i % 10) * 0.01 + (0.3 if minute < 10 else 0)},
                    }
                    for i in range(60)
                ]
            },
        )
    viewer = User.objects.create_user("bench-viewer")
    viewer.groups.add(Group.objects.get_or_create(name="viewer")[0])
    return viewer


def session_cookie(user):
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(settings_module, database_url):
    from dashboard.webserver import gunicorn_command, gunicorn_environment

    port = free_port()
    environment = gunicorn_environment(
        {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": database_url,
            "PYTHONPATH": str(djangobench.ROOT),
        }
    )
    process = subprocess.Popen(
        gunicorn_command(bind=f"127.0.0.1:{port}", workers=2) + ["--access-logfile", "/dev/null"],
        env=environment,
        cwd=djangobench.ROOT,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the {settings_module} server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the {settings_module} server did not start")


def load(browser, base_url, path, cookie, floor=None):
    """(first-chart ms, static bytes transferred) of a cold load, first-chart ms of a warm one, and
    the cold load's time to the first byte of the page (the server's part of the first chart).
    ``floor``: the floor page's HTML, answered at FLOOR_PATH by the browser itself."""
    context = browser.new_context(base_url=base_url)
    try:
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base_url}])
        context.add_init_script(FIRST_CHART)
        if floor is not None:
            context.route(base_url + FLOOR_PATH, lambda route: route.fulfill(body=floor, content_type="text/html"))
        page = context.new_page()
        visits = []
        for _ in range(2):
            page.goto(path)
            page.wait_for_function("() => window.__firstChart !== undefined", timeout=30_000)
            visits.append(page.evaluate(VISIT))
        (first_chart, static_bytes, first_byte), warm = visits
        return first_chart, static_bytes, warm[0], first_byte
    finally:
        context.close()


def floor_page(browser, base_url, cookie):
    """FLOOR_PAGE with ours' plotly.js (its hashed name) and the endpoint page's first figure."""
    context = browser.new_context(base_url=base_url)
    try:
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base_url}])
        page = context.new_page()
        page.goto(PAGES["endpoint"])
        plotly, figure = page.evaluate("""() => [document.querySelector('script[src*="/vendor/plotly"]').src,
          document.querySelector('script[id^="chart-"]').textContent]""")
        return FLOOR_PAGE.format(plotly=plotly, figure=figure)
    finally:
        context.close()


def main():
    from playwright.sync_api import sync_playwright

    with djangobench.test_database() as database:
        cookie = session_cookie(populate())
        params = connection.settings_dict
        database_url = (
            f"postgres://{params['USER']}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}/{database}"
        )
        servers = {
            "baseline": start_server("bench.pages_baseline_settings", database_url),
            "ours": start_server("dashboard.settings", database_url),
        }
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
                )
                for _name, (_, url) in servers.items():  # each server's first request sets it up
                    load(browser, url, PAGES["compare"], cookie)
                floor = floor_page(browser, servers["ours"][1], cookie)
                figures = {(server, page): [] for server in servers for page in PAGES}
                figures["ours", "floor"] = []
                for _ in range(LOADS):
                    for page, path in PAGES.items():
                        for server, (_, url) in servers.items():
                            figures[server, page].append(load(browser, url, path, cookie))
                    figures["ours", "floor"].append(load(browser, servers["ours"][1], FLOOR_PATH, cookie, floor))
                browser.close()
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait()
    met = True
    for page in PAGES:
        row = {server: [statistics.median(column) for column in zip(*figures[server, page])] for server in servers}
        ours, base = row["ours"], row["baseline"]
        print(f"{page}.first_chart_cold: ours={ours[0]:.0f} ms baseline={base[0]:.0f} ms ratio={ours[0] / base[0]:.2f}")
        print(
            f"{page}.static_bytes_cold: ours={ours[1] / 1024:.0f} KiB baseline={base[1] / 1024:.0f} KiB "
            f"ratio={ours[1] / base[1]:.2f}"
        )
        print(f"{page}.first_chart_warm: ours={ours[2]:.0f} ms baseline={base[2]:.0f} ms ratio={ours[2] / base[2]:.2f}")
        print(
            f"{page}.first_byte_cold: ours={ours[3]:.0f} ms baseline={base[3]:.0f} ms (the server's part of the above)"
        )
        met &= ours[0] < GOAL_MS
    floor = [statistics.median(column) for column in zip(*figures["ours", "floor"])]
    print(
        f"floor.first_chart_cold: {floor[0]:.0f} ms (a page with only ours' plotly.js drawing the endpoint page's "
        f"first figure; {floor[1] / 1024:.0f} KiB)"
    )
    print(f"goal (first chart < {GOAL_MS} ms on a cold load of both pages, loopback): {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
