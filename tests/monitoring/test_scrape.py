"""Scrape mode: an endpoint reads a Triton or MLServer /metrics URL (served here by a local HTTP
server from recorded texts) and counts the counters' increases into coarse scrape windows."""

import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from berth.core.stats import LogSketch
from monitoring import scrape
from monitoring.models import Endpoint, MetricWindow

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data"
# Recorded /metrics texts, each a first read and one 15 s later (counters only grow in between).
TRITON = (DATA / "triton_metrics.txt").read_text()
TRITON_LATER = (DATA / "triton_metrics_later.txt").read_text()
MLSERVER = (DATA / "mlserver_metrics.txt").read_text()
MLSERVER_LATER = (DATA / "mlserver_metrics_later.txt").read_text()


class MetricsServer:
    """A /metrics URL on 127.0.0.1 answering whatever ``text`` (and ``status``) is set to."""

    def __init__(self):
        self.text, self.status = "", 200
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = server.text.encode() if self.path == "/metrics" else b"not found"
                self.send_response(server.status if self.path == "/metrics" else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/metrics"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def metrics_server():
    server = MetricsServer()
    yield server
    server.close()


@pytest.fixture
def scraped(endpoint, metrics_server):
    """digits-prod in scrape mode on the local server."""
    Endpoint.objects.filter(pk=endpoint.pk).update(scrape_url=metrics_server.url)
    endpoint.refresh_from_db()
    return endpoint


def moments():
    """Two scrape times 15 s apart inside one minute, a few minutes ago."""
    minute = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=5)
    return minute, minute + timedelta(seconds=10), minute + timedelta(seconds=25)


def windows(endpoint):
    return {w.version.version: w for w in MetricWindow.objects.filter(endpoint=endpoint).select_related("version")}


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- reading the texts (no server) -----------------------------------------------------------


def test_it_reads_tritons_counters_for_the_endpoints_model_only():
    sample = scrape.parse_metrics(TRITON, "digits")
    assert sample.server == "triton" and set(sample.versions) == {"1", "2"}
    v1 = sample.versions["1"]
    assert (v1.success, v1.failure, v1.buckets) == (1200, 5, {})  # failures summed over the reason label
    assert v1.latency_sum_ms == pytest.approx(3456.0)  # 3 456 000 us
    assert scrape.parse_metrics(TRITON, "resnet50").versions["1"].failure == 12


def test_it_reads_mlserver_counters_and_only_the_infer_routes_of_its_histogram():
    sample = scrape.parse_metrics(MLSERVER, "digits")
    assert sample.server == "mlserver" and set(sample.versions) == {"", scrape.WHOLE_SERVER}
    active = sample.versions[""]  # version="None": the request named no version
    assert (active.success, active.failure) == (840, 6)
    assert active.latency_sum_ms == pytest.approx(17318.409)  # the per-model summary, seconds to ms
    server_wide = sample.versions[scrape.WHOLE_SERVER].buckets  # grouped routes: every model's infer calls
    assert server_wide["5.0"] == 24 and server_wide["25.0"] == 681 and server_wide["inf"] == 846  # no /ready probes


def test_it_filters_ungrouped_routes_to_this_model_and_version():
    text = (
        "\n".join(
            [
                "# TYPE model_infer_request_success_total counter",
                'model_infer_request_success_total{model="digits",version="2"} 10.0',
                "# TYPE rest_server_request_duration_seconds histogram",
                *[
                    f'rest_server_request_duration_seconds_bucket{{le="{le}",method="POST",path="{path}"}} {count}'
                    for path, counts in (
                        ("/v2/models/digits/versions/2/infer", (4, 10)),
                        ("/v2/models/iris/infer", (7, 7)),
                    )
                    for le, count in zip(("0.01", "+Inf"), counts)
                ],
                'rest_server_request_duration_seconds_sum{method="POST",path="/v2/models/digits/versions/2/infer"} 0.2',
            ]
        )
        + "\n"
    )
    sample = scrape.parse_metrics(text, "digits")
    assert set(sample.versions) == {"2"}
    assert sample.versions["2"].buckets == {"10.0": 4, "inf": 10}
    assert sample.versions["2"].latency_sum_ms == pytest.approx(200.0)  # no summary: the route's own sum


@pytest.mark.parametrize(
    "text, message",
    [
        ("<html><body>Grafana</body></html>", "not Prometheus text"),
        ("# TYPE node_load1 gauge\nnode_load1 0.42\n", "no Triton (nv_inference_request_success) or MLServer"),
    ],
)
def test_it_refuses_a_text_that_is_not_a_servers_metrics(text, message):
    with pytest.raises(scrape.ScrapeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        scrape.parse_metrics(text, "digits")


def test_deltas_record_first_then_count_increases_and_restarts():
    first, later = scrape.parse_metrics(TRITON, "digits"), scrape.parse_metrics(TRITON_LATER, "digits")
    changes, state = scrape.deltas({}, first)
    assert changes == {} and state["server"] == "triton" and state["versions"]["1"]["success"] == 1200
    changes, state = scrape.deltas(state, later)
    assert (changes["1"].success, changes["1"].failure) == (300, 2)
    assert changes["1"].latency_sum_ms == pytest.approx(912.345)
    changes, _ = scrape.deltas(state, first)  # lower counters: the server restarted
    assert (changes["1"].success, changes["1"].failure, changes["2"].success) == (1200, 5, 300)
    del state["versions"]["2"]
    changes, _ = scrape.deltas(state, later)  # a version that appeared since the last scrape: counted from zero
    assert changes["2"].success == 420


def test_a_histogram_becomes_a_sketch_at_the_bucket_bounds():
    sketch = LogSketch.from_dict(scrape.sketch_from_buckets({"10.0": 2, "50.0": 9, "inf": 10}))
    assert sketch.count == 10 and sketch.quantile(0.5) == pytest.approx(50, rel=0.01)
    assert sketch.quantile(1.0) == pytest.approx(50, rel=0.01)  # +Inf counted at the largest finite bound
    assert scrape.sketch_from_buckets({"inf": 3}) is None and scrape.sketch_from_buckets({}) is None


# --- scraping a server -----------------------------------------------------------------------


def test_it_counts_triton_increases_into_coarse_scrape_windows(scraped, metrics_server):
    minute, first, second = moments()
    metrics_server.text = TRITON
    assert scrape.scrape_endpoint(scraped, now=first) is True
    assert not MetricWindow.objects.exists()  # the first scrape only records the counters
    scraped.refresh_from_db()
    assert scraped.scraped == first and scraped.scrape_state["versions"]["1"]["success"] == 1200

    metrics_server.text = TRITON_LATER
    assert scrape.scrape_endpoint(scraped, now=second) is True
    found = windows(scraped)
    assert set(found) == {"1", "2"}  # resnet50 on the same server is not digits
    v1, v2 = found["1"], found["2"]
    assert (v1.requests, v1.errors, v1.error_kinds) == (302, 2, {"server_error": 2})
    assert (v2.requests, v2.errors, v2.error_kinds) == (121, 1, {"server_error": 1})
    assert v1.latency_sum_ms == pytest.approx(912.345) and v2.latency_sum_ms == pytest.approx(330.0)  # us -> ms
    for window in (v1, v2):
        assert window.source == MetricWindow.Source.SCRAPE and window.coarse and window.latency == {}
        assert window.start == minute and window.resolution == MetricWindow.Resolution.MINUTE
    status = scrape.scrape_status(Endpoint.objects.get(pk=scraped.pk))
    assert status == {"url": metrics_server.url, "server": "triton", "scraped": second, "error": "", "ok": True}


def test_it_turns_mlservers_histogram_into_a_coarse_sketch(scraped, metrics_server):
    _, first, second = moments()
    metrics_server.text = MLSERVER
    scrape.scrape_endpoint(scraped, now=first)
    metrics_server.text = MLSERVER_LATER
    assert scrape.scrape_endpoint(scraped, now=second) is True
    found = windows(scraped)
    assert set(found) == {"1"}  # no version label: the active version
    window = found["1"]
    assert (window.requests, window.errors, window.coarse, window.source) == (203, 3, True, "scrape")
    assert window.latency_sum_ms == pytest.approx(4263.1)
    sketch = LogSketch.from_dict(window.latency)
    assert sketch.count == 203  # the interval's infer calls, readiness probes left out
    # Bucket deltas: <=10 ms 12, <=25 ms 150, <=50 ms 35, <=75 ms 3, <=100 ms 2, <=250 ms 1.
    assert sketch.quantile(0.5) == pytest.approx(25, rel=0.01)
    assert sketch.quantile(0.95) == pytest.approx(50, rel=0.01)
    assert sketch.quantile(0.99) == pytest.approx(75, rel=0.01)


def test_it_takes_the_new_value_after_a_counter_reset(scraped, metrics_server):
    _, first, second = moments()
    metrics_server.text = TRITON_LATER
    scrape.scrape_endpoint(scraped, now=first)
    metrics_server.text = TRITON  # lower counters: Triton restarted and has served this much since
    scrape.scrape_endpoint(scraped, now=second)
    found = windows(scraped)
    assert (found["1"].requests, found["1"].errors, found["2"].requests) == (1205, 5, 300)
    assert found["1"].latency_sum_ms == pytest.approx(3456.0)


def test_an_older_overlapping_scrape_counts_nothing(scraped, metrics_server):
    _, first, second = moments()
    metrics_server.text = TRITON
    scrape.scrape_endpoint(scraped, now=second)
    metrics_server.text = TRITON_LATER
    scrape.scrape_endpoint(scraped, now=first)  # read before the one already recorded
    assert not MetricWindow.objects.exists()
    scraped.refresh_from_db()
    assert scraped.scraped == second and scraped.scrape_state["versions"]["1"]["success"] == 1200


def test_it_notes_an_unreachable_server_and_writes_nothing(endpoint):
    url = f"http://127.0.0.1:{closed_port()}/metrics"
    Endpoint.objects.filter(pk=endpoint.pk).update(scrape_url=url)
    endpoint.refresh_from_db()
    assert scrape.scrape_endpoint(endpoint, timeout=2) is False
    endpoint.refresh_from_db()
    assert endpoint.scrape_error == f"{url}: connection refused"
    assert endpoint.scrape_state == {} and endpoint.scraped is None and not MetricWindow.objects.exists()
    assert scrape.scrape_status(endpoint)["ok"] is False


@pytest.mark.parametrize(
    "status, text, message",
    [
        (200, "<html><body>Grafana</body></html>", ": the response is not Prometheus text"),
        (500, "Internal Server Error", ": HTTP 500 Internal Server Error"),
    ],
)
def test_it_notes_a_malformed_answer_and_writes_nothing(scraped, metrics_server, status, text, message):
    _, first, second = moments()
    metrics_server.text = TRITON
    scrape.scrape_endpoint(scraped, now=first)
    metrics_server.status, metrics_server.text = status, text
    assert scrape.scrape_endpoint(scraped, now=second) is False
    scraped.refresh_from_db()
    assert scraped.scrape_error.startswith(metrics_server.url + message)
    assert scraped.scraped == first and scraped.scrape_state["versions"]["1"]["success"] == 1200
    assert not MetricWindow.objects.exists()


def test_it_skips_an_unknown_version_with_a_note(scraped, metrics_server):
    _, first, second = moments()
    metrics_server.text = TRITON.replace('version="2"', 'version="7"')
    scrape.scrape_endpoint(scraped, now=first)
    metrics_server.text = TRITON_LATER.replace('version="2"', 'version="7"')
    assert scrape.scrape_endpoint(scraped, now=second) is True
    assert set(windows(scraped)) == {"1"}
    scraped.refresh_from_db()
    assert scraped.scrape_error == (
        "121 requests for version '7' were not counted: digits has no such version in "
        "Berth. Register it to see its traffic."
    )


def test_the_celery_task_scrapes_every_endpoint_with_a_scrape_url(scraped, metrics_server):
    from monitoring.services import endpoint_create
    from monitoring.tasks import scrape as scrape_task

    endpoint_create(
        name="digits-dead",
        model=scraped.model,
        target=scraped.target,
        scrape_url=f"http://127.0.0.1:{closed_port()}/metrics",
    )
    endpoint_create(name="digits-telemetry", model=scraped.model, target=scraped.target)
    metrics_server.text = TRITON
    assert scrape_task.apply().get() == 1
    metrics_server.text = TRITON_LATER
    assert scrape_task.apply().get() == 1
    assert windows(scraped)["1"].requests == 302
    assert "connection refused" in Endpoint.objects.get(name="digits-dead").scrape_error
    assert Endpoint.objects.get(name="digits-telemetry").scrape_error == ""


# --- creating a scrape endpoint --------------------------------------------------------------


def test_it_creates_a_scrape_endpoint_through_the_api(engineer_api, world):
    response = engineer_api.post(
        "/api/v1/endpoints/",
        {
            "name": "digits-triton",
            "model": "digits",
            "target": "cpu",
            "scrape_url": "http://triton.internal:8002/metrics",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["scrape_url"] == "http://triton.internal:8002/metrics"
    assert Endpoint.objects.get(name="digits-triton").scrape_url == "http://triton.internal:8002/metrics"
    shown = engineer_api.get("/api/v1/endpoints/digits-triton/").json()
    assert (shown["scrape_url"], shown["scraped"], shown["scrape_error"]) == (
        "http://triton.internal:8002/metrics",
        None,
        "",
    )


@pytest.mark.parametrize("url", ["ftp://triton.internal/metrics", "triton metrics", "file:///etc/passwd"])
def test_it_refuses_a_scrape_url_that_is_not_http(engineer_api, world, url):
    response = engineer_api.post(
        "/api/v1/endpoints/",
        {"name": "digits-triton", "model": "digits", "target": "cpu", "scrape_url": url},
        format="json",
    )
    assert response.status_code == 400
    assert "scrape_url" in response.json()["errors"]
    assert not Endpoint.objects.filter(name="digits-triton").exists()


def test_the_create_form_takes_a_scrape_url(engineer, world):
    client = Client()
    client.force_login(engineer)
    response = client.post(
        "/new/endpoint/",
        {
            "name": "digits-mlserver",
            "model": "digits",
            "target": "cpu",
            "scrape_url": "http://mlserver.internal:8082/metrics",
        },
    )
    assert response.status_code == 200
    assert Endpoint.objects.get(name="digits-mlserver").scrape_url == "http://mlserver.internal:8082/metrics"
