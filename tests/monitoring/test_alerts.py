"""Alert rules: evaluation with time moved by the test (windows written directly, evaluated at
now, now + N min …), notifications, silences, webhook retries, e-mail, the API and the pages."""

import json
import re
import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.db import transaction
from django.test import Client
from django.utils import timezone

from berth.core.drift import drift_text, feature_drift
from berth.core.stats import LogSketch
from common.errors import BerthError
from monitoring import alerts, notify, series, services
from monitoring.models import Alert, AlertRule, Notification
from monitoring.tasks import deliver_notification
from registry.models import HardwareTarget, Model, ModelVersion
from tests.conftest import BenchWorld

pytestmark = pytest.mark.django_db


# --- a local webhook receiver ------------------------------------------------------------------


class Receiver:
    """An HTTP server in a thread that records every POST and answers with the next status of
    ``statuses`` (then 200)."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.calls = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.calls.append(
                        {"path": self.path, "json": json.loads(body), "content_type": self.headers.get("Content-Type")}
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"receiver says no" if status >= 400 else b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def posts(self, path=None):
        with self.lock:
            return [c["json"] for c in self.calls if path is None or c["path"] == path]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def endpoint(engineer):
    """digits-prod on cpu, with versions 1 and 2 (rows only: alert rules read windows, not files)."""
    return digits_prod(engineer, ("1", "2"))


def digits_prod(engineer, versions):
    """The endpoint digits-prod on cpu of a new model digits with ``versions`` (ready rows, no files)."""
    model = Model.objects.create(name="digits", task="classification")
    cpu = HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})[0]
    for version in versions:
        ModelVersion.objects.create(
            model=model,
            version=version,
            format="onnx",
            artifact=f"artifacts/{version}.onnx",
            sha256="0" * 64,
            size_bytes=1000,
            status="ready",
        )
    endpoint, _ = services.endpoint_create(name="digits-prod", model=model, target=cpu, created_by=engineer)
    return endpoint


# --- windows written at times relative to a fixed now --------------------------------------------


@pytest.fixture
def now():
    return timezone.now().replace(second=30, microsecond=0)


def sketch(ms, count):
    s = LogSketch()
    s.add(ms, count)
    return s.to_dict()


def traffic(
    endpoint,
    now,
    *,
    minutes_ago=1,
    requests=100,
    errors=0,
    latency_ms=10.0,
    version="1",
    features=None,
    inference_ms=None,
    rows=1,
    request=None,
):
    """One minute window of ``version``, ``minutes_ago`` minutes before ``now`` (with an
    inference-only sketch of ``inference_ms`` for runs of ``rows`` rows when given, and
    ``request``: {encoding: {rows: ms}} of the requests by how they came)."""
    with transaction.atomic():
        services.window_add(
            endpoint=endpoint,
            version=ModelVersion.objects.get(version=version),
            start=now - timedelta(minutes=minutes_ago),
            requests=requests,
            errors=errors,
            latency=sketch(latency_ms, requests),
            features=features or {},
            inference_latency={str(rows): sketch(inference_ms, requests)} if inference_ms else None,
            request_latency={
                encoding: {size: sketch(ms, requests) for size, ms in by_rows.items()}
                for encoding, by_rows in (request or {}).items()
            },
        )


def rule(endpoint, metric, threshold=None, **extra):
    extra.setdefault("window_minutes", 5)
    extra.setdefault("min_requests", 20)
    return alerts.rule_create(endpoint=endpoint, metric=metric, threshold=threshold, **extra)


def firing():
    return list(Alert.objects.filter(state="firing"))


# --- every metric fires and resolves ----------------------------------------------------------------


def test_it_fires_and_resolves_on_p95_latency(endpoint, now):
    r = rule(endpoint, "p95_latency", 50)
    for minute in (1, 2, 3):
        traffic(endpoint, now, minutes_ago=minute, latency_ms=80)
    assert alerts.evaluate_rules(now=now) == 1
    (alert,) = firing()
    assert alert.rule == r and alert.version.version == "1" and alert.started == now
    assert alert.value == pytest.approx(80, rel=0.02) and alert.threshold == 50
    assert alert.message.startswith("digits-prod v1: p95 latency 80") and "> 50 ms over the last 5 min" in alert.message
    assert alert.details["requests"] == 300

    # Two minutes on, fast traffic: still firing (the slow minutes are in the window), then not.
    traffic(endpoint, now, minutes_ago=-2, latency_ms=5)
    assert alerts.evaluate_rules(now=now + timedelta(minutes=2)) == 0
    alert.refresh_from_db()
    assert alert.state == "firing" and alert.last_evaluated == now + timedelta(minutes=2)
    traffic(endpoint, now, minutes_ago=-6, latency_ms=5)
    traffic(endpoint, now, minutes_ago=-7, latency_ms=5)
    assert alerts.evaluate_rules(now=now + timedelta(minutes=7)) == 1
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.resolved == now + timedelta(minutes=7)
    assert alert.last_value == pytest.approx(5, rel=0.02)
    assert alert.details["resolution"].startswith("digits-prod v1: p95 latency back to 5")


def test_it_fires_and_resolves_on_the_error_rate(endpoint, now):
    rule(endpoint, "error_rate", 5)
    traffic(endpoint, now, requests=200, errors=20)
    alerts.evaluate_rules(now=now)
    (alert,) = firing()
    assert alert.value == pytest.approx(10)
    assert alert.message == ("digits-prod v1: error rate 10 % > 5 % over the last 5 min (20 of 200 requests failed)")
    traffic(endpoint, now, minutes_ago=-1, requests=2000, errors=0)  # 20 of 2,200 = 0.9 %
    alerts.evaluate_rules(now=now + timedelta(minutes=1))
    alert.refresh_from_db()
    assert alert.state == "resolved" and "error rate back to 0.909 %" in alert.details["resolution"]


def test_it_fires_and_resolves_on_the_gap_to_the_benchmark(endpoint, now):
    version = ModelVersion.objects.get(version="1")
    BenchWorld.result(None, version, endpoint.target, p95=10.0)
    rule(endpoint, "benchmark_gap", 2)
    # Requests take 100 ms, session.run 35 ms: only the latter is compared with the benchmark.
    traffic(endpoint, now, latency_ms=100, inference_ms=35)
    alerts.evaluate_rules(now=now)
    (alert,) = firing()
    assert alert.value == pytest.approx(3.5, rel=0.02) and alert.threshold == 2
    assert alert.message.startswith(
        "digits-prod v1: inference p95 34.8 ms is 3.48 × its benchmark p95 (10 ms on cpu "
        "at batch size 1; the limit is 2 ×) over the last 5 min"
    )
    assert alert.details["benchmark_p95_ms"] == 10.0 and alert.details["batch_size"] == 1
    traffic(endpoint, now, minutes_ago=-6, latency_ms=100, inference_ms=15)
    alerts.evaluate_rules(now=now + timedelta(minutes=6))
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.last_value == pytest.approx(1.5, rel=0.02)


def test_the_benchmark_gap_waits_for_a_benchmark(endpoint, now):
    rule(endpoint, "benchmark_gap", 2)
    traffic(endpoint, now, latency_ms=500, inference_ms=400)
    assert alerts.evaluate_rules(now=now) == 0 and not Alert.objects.exists()


def test_the_benchmark_gap_compares_only_like_figures(endpoint, now):
    version = ModelVersion.objects.get(version="1")
    BenchWorld.result(None, version, endpoint.target, p95=10.0, batch=8)
    rule(endpoint, "benchmark_gap", 2)
    # Old telemetry (request latency only): no verdict, however slow.
    traffic(endpoint, now, latency_ms=500)
    assert alerts.evaluate_rules(now=now) == 0
    # Runs of 1 row against a benchmark at batch size 8: no verdict either.
    traffic(endpoint, now, minutes_ago=2, latency_ms=500, inference_ms=400, rows=1)
    assert alerts.evaluate_rules(now=now) == 0 and not Alert.objects.exists()
    (summary,) = series.recent(endpoint, minutes=5, now=now).values()
    assert summary["benchmark_gap"] is None
    assert (
        "no benchmark at batch size 1, the size production ran (benchmarked at 8)"
        in summary["benchmark"]["inference"]["why"]
    )
    assert "did not report which encoding served its requests" in summary["benchmark"]["request"]["why"]


def test_a_request_gap_rule_compares_requests_with_the_end_to_end_benchmark_of_their_encoding(endpoint, now):
    version = ModelVersion.objects.get(version="1")
    BenchWorld.result(None, version, endpoint.target, p95=0.5)  # session.run: never beside requests
    rule(endpoint, "benchmark_gap", 2, latency="request")
    # gRPC requests of 1 row take 8 ms; there is only a JSON end-to-end benchmark: no verdict.
    traffic(endpoint, now, latency_ms=8, inference_ms=0.6, request={"grpc": {"1": 8}})
    assert alerts.evaluate_rules(now=now) == 0 and not Alert.objects.exists()
    BenchWorld.result(None, version, endpoint.target, p95=1.0, scope="request", encoding="json")
    assert alerts.evaluate_rules(now=now) == 0
    (summary,) = series.recent(endpoint, minutes=5, now=now).values()
    assert "no end-to-end benchmark in grpc at batch size 1" in summary["benchmark"]["request"]["why"]
    # The gRPC end-to-end benchmark: 8 ms against 2 ms is 4 × (the inference gap, 1.2 ×, stays quiet).
    BenchWorld.result(None, version, endpoint.target, p95=2.0, scope="request", encoding="grpc")
    assert alerts.evaluate_rules(now=now) == 1
    (alert,) = firing()
    assert alert.value == pytest.approx(4, rel=0.02)
    assert alert.message.startswith(
        "digits-prod v1: request p95 7.92 ms is 3.96 × its end-to-end benchmark p95 (2 ms on cpu at grpc, "
        "batch size 1; the limit is 2 ×) over the last 5 min"
    )
    assert alert.details["encoding"] == "grpc" and alert.details["request_p95_ms"] == pytest.approx(8, rel=0.02)
    assert alert.rule.describe() == (
        "request p95 above 2 × the end-to-end benchmark p95 (same encoding and batch size) over 5 min"
    )


def test_the_latency_a_gap_rule_compares_is_checked(endpoint):
    with pytest.raises(BerthError) as caught:
        rule(endpoint, "benchmark_gap", 2, latency="network")
    assert caught.value.field == "latency" and "inference, request" in caught.value.message
    with pytest.raises(BerthError) as caught:
        rule(endpoint, "p95_latency", 50, latency="request")
    assert caught.value.field == "latency" and "benchmark_gap rules only" in caught.value.message
    assert rule(endpoint, "benchmark_gap", 2).latency == "inference"  # the default


def test_when_inputs_drift_it_fires_posts_a_webhook_sends_an_email_and_resolves(profiled, now, receiver):
    rule(profiled, "drift", webhook_url=receiver.url + "/hook", emails="ops@example.com, ml@example.com")
    drifted = {"x.mean": [0, 0, 40, 360], "prediction": [120, 120, 160]}
    steady = {"x.mean": [100, 100, 100, 100], "prediction": [120, 120, 160]}
    traffic(profiled, now, requests=400, features=drifted)
    assert alerts.evaluate_rules(now=now) == 0  # one drifted window of the last three is not enough
    traffic(profiled, now, minutes_ago=-4, requests=400, features=drifted)
    alerts.evaluate_rules(now=now + timedelta(minutes=5))
    (alert,) = firing()
    assert alert.message.startswith(
        "digits-prod v1: drift on 1 of 2 features in 2 of the last 3 windows of 5 min "
        "(the rule needs 2); now x.mean higher than the reference (mean +1."
    )
    assert re.search(
        r"\(mean \+1\.21 sd\): KS 0\.65, p-value \d(\.\d)?e-\d+ on 400 rows \(Wasserstein 1\.2 ≥ 0\.1\)", alert.message
    )
    assert alert.message.endswith("≥ 0.1) over the last 5 min")
    assert alert.threshold == 1.0 and alert.value > 1  # the worst verdict relative to its thresholds
    (feature,) = alert.details["features"]
    assert feature["feature"] == "x.mean" and feature["test"] == "ks" and feature["threshold"] == 0.05
    assert feature["effect"] == "wasserstein" and feature["effect_threshold"] == 0.1
    assert alert.value == pytest.approx(feature["effect_value"] / 0.1)  # p < 1e-50: the effect decides
    assert alert.details["windows_drifted"] == 2 and alert.details["windows"] == 3

    for notification in alert.notifications.all():
        deliver_notification.apply(args=[notification.pk])
    assert set(alert.notifications.values_list("status", flat=True)) == {"sent"}
    (posted,) = receiver.posts("/hook")
    assert posted["state"] == "firing" and posted["alert"] == alert.pk and posted["endpoint"] == "digits-prod"
    assert posted["version"] == "1" and posted["message"] == alert.message
    assert posted["details"]["features"][0]["feature"] == "x.mean" and posted["resolved"] is None
    assert posted["details"]["features"][0]["explanation"].startswith("higher than the reference")
    assert posted["url"] == "/alerts/?endpoint=digits-prod"
    # The worst feature's test and effect against their thresholds, in their own terms.
    assert re.fullmatch(
        r"x\.mean: KS p-value \d(\.\d)?e-\d+ \(threshold 0\.05\), Wasserstein 1\.2\d sd \(threshold 0\.1 sd\)",
        posted["value_text"],
    ), posted["value_text"]
    assert posted["details"]["worst"]["feature"] == "x.mean"
    assert sorted(m.to[0] for m in mail.outbox) == ["ml@example.com", "ops@example.com"]
    assert mail.outbox[0].subject == f"[Berth] FIRING: {alert.message}"
    assert f"Now: {posted['value_text']}" in mail.outbox[0].body
    assert f"Drifted features:\n  {posted['value_text']}" in mail.outbox[0].body

    # Drift ends: one steady window leaves two drifted windows of the last three, two resolve it.
    traffic(profiled, now, minutes_ago=-9, requests=400, features=steady)
    assert alerts.evaluate_rules(now=now + timedelta(minutes=10)) == 0
    alert.refresh_from_db()
    assert alert.state == "firing" and alert.last_evaluated == now + timedelta(minutes=10)
    traffic(profiled, now, minutes_ago=-14, requests=400, features=steady)
    alerts.evaluate_rules(now=now + timedelta(minutes=15))
    alert.refresh_from_db()
    assert alert.state == "resolved"
    assert alert.details["resolution"].startswith("digits-prod v1: no feature drifts any more (2 scored; closest")
    assert "like the reference" in alert.details["resolution"]
    for notification in alert.notifications.filter(event="resolved"):
        deliver_notification.apply(args=[notification.pk])
    resolved = receiver.posts("/hook")[1]
    assert resolved["state"] == "resolved" and resolved["resolved"] == alert.resolved.isoformat()
    assert resolved["message"] == alert.details["resolution"]
    assert mail.outbox[-1].subject.startswith("[Berth] RESOLVED: digits-prod v1: no feature drifts")


def test_a_class_drift_is_explained_by_the_class_that_moved(profiled, now):
    rule(profiled, "drift")
    for minutes_ago in (1, 6):
        traffic(
            profiled,
            now,
            minutes_ago=minutes_ago,
            requests=400,
            features={"x.mean": [100, 100, 100, 100], "prediction": [400, 0, 0]},
        )
    alerts.evaluate_rules(now=now)
    (alert,) = firing()
    assert re.search(
        r"now prediction class 0 went from 30% to 100% of predictions: chi-square p-value \d(\.\d)?e-\d+ on 400 "
        r"rows \(total variation 0\.7 ≥ 0\.1\)",
        alert.message,
    )
    assert alert.details["features"][0]["test"] == "chi_square"


def test_a_drift_alert_states_the_worst_feature_in_its_tests_terms(profiled, now, viewer):
    rule(profiled, "drift", emails="ops@example.com")
    moved = {"x.mean": [100, 100, 100, 100], "prediction": [400, 0, 0]}
    for minutes_ago in (1, 6):
        traffic(profiled, now, minutes_ago=minutes_ago, requests=400, features=moved)
    alerts.evaluate_rules(now=now)
    (alert,) = firing()
    # What berth.core.drift says of the same counts, worded by its one formatter.
    verdict = feature_drift("class", [300, 300, 400], moved["prediction"])
    expected = drift_text(verdict, "prediction")
    assert re.fullmatch(
        r"prediction: chi-square p-value \d(\.\d)?e-\d+ \(threshold 0\.05\), "
        r"total variation 0\.7 \(threshold 0\.1\)",
        expected,
    ), expected
    assert alert.details["worst"]["statistic"] == pytest.approx(verdict["statistic"])
    assert notify.value_text(alert) == expected
    for url, part in (("/alerts/", 'id="firing-alerts"'), ("/endpoints/digits-prod/", 'class="endpoint-alerts"')):
        page = browser(viewer).get(url).content.decode().split(part)[1]
        assert expected in page and "× threshold" not in page, url
    deliver_notification.apply(args=[alert.notifications.get().pk])
    assert f"Now: {expected}" in mail.outbox[0].body

    # The next evaluation keeps the figure current: the worst feature now is x.mean.
    shifted = {"x.mean": [0, 0, 40, 360], "prediction": [400, 0, 0]}
    traffic(profiled, now, minutes_ago=-4, requests=400, features=shifted)
    alerts.evaluate_rules(now=now + timedelta(minutes=5))
    alert.refresh_from_db()
    assert alert.state == "firing" and alert.details["worst"]["feature"] == "x.mean"
    assert notify.value_text(alert).startswith("x.mean: KS p-value ")
    assert notify.value_text(alert, latest=False) == expected  # what it fired with


def test_alerts_stored_before_the_figures_still_render(profiled, now, viewer):
    drift = rule(profiled, "drift")
    version = ModelVersion.objects.get(version="1")
    old = {"features": [{"feature": "x.mean", "test": "psi", "score": 0.31, "threshold": 0.2}]}
    for details, value in ((old, 1.55), ({}, 2.0)):
        Alert.objects.create(
            rule=drift,
            endpoint=profiled,
            version=version,
            value=value,
            last_value=value,
            threshold=1.0,
            message="digits-prod v1: drift",
            details=details,
            started=now,
            last_evaluated=now,
        )
        page = browser(viewer).get("/alerts/").content.decode()
        assert "x.mean: PSI 0.31 (threshold 0.2)" in page if details else "2 × its thresholds" in page
        Alert.objects.all().delete()


def test_a_significant_but_small_change_does_not_fire(profiled, now):
    # 10,000 rows a window: chi-square p ~ 1e-5 on a 2 % shift of the predictions, below the
    # total variation floor; KS on x.mean the same.
    rule(profiled, "drift")
    for minutes_ago in (1, 6, 11):
        traffic(
            profiled,
            now,
            minutes_ago=minutes_ago,
            requests=10_000,
            features={"x.mean": [2300, 2500, 2500, 2700], "prediction": [3200, 3000, 3800]},
        )
    assert alerts.evaluate_rules(now=now) == 0 and not Alert.objects.exists()
    summary = next(iter(alerts.series.recent(profiled, minutes=5, now=now).values()))
    prediction = summary["drift"]["prediction"]
    assert prediction["significant"] and not prediction["material"] and prediction["severity"] == "slight"
    assert prediction["explanation"].startswith("a small change (class 2 went from 40% to 38% of predictions)")


def test_drift_without_enough_rows_gives_no_verdict(profiled, now):
    rule(profiled, "drift", min_requests=0)
    traffic(profiled, now, requests=50, features={"x.mean": [0, 0, 0, 50], "prediction": [50, 0, 0]})
    assert alerts.evaluate_rules(now=now) == 0 and not Alert.objects.exists()


# --- what decides ---------------------------------------------------------------------------------


def test_too_few_requests_give_no_verdict_and_keep_the_state(endpoint, now):
    rule(endpoint, "error_rate", 5, min_requests=50)
    traffic(endpoint, now, requests=10, errors=10)
    alerts.evaluate_rules(now=now)
    assert not Alert.objects.exists()
    traffic(endpoint, now, minutes_ago=2, requests=40, errors=40)
    alerts.evaluate_rules(now=now)
    (alert,) = firing()
    # Later only a trickle, all fine: too few requests to say it is over.
    traffic(endpoint, now, minutes_ago=-6, requests=5)
    alerts.evaluate_rules(now=now + timedelta(minutes=6))
    alert.refresh_from_db()
    assert alert.state == "firing"


def test_a_version_without_traffic_in_the_window_resolves(endpoint, now, receiver):
    rule(endpoint, "error_rate", 5, window_minutes=2, webhook_url=receiver.url)
    traffic(endpoint, now, requests=100, errors=50)
    alerts.evaluate_rules(now=now)
    (alert,) = firing()
    alerts.evaluate_rules(now=now + timedelta(minutes=3))
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.last_value is None
    assert alert.details["resolution"] == "digits-prod v1: no traffic in the last 2 min"
    assert list(alert.notifications.values_list("event", flat=True)) == ["firing", "resolved"]


def test_each_version_has_its_own_alert(endpoint, now):
    rule(endpoint, "error_rate", 5)
    traffic(endpoint, now, requests=100, errors=50, version="1")
    traffic(endpoint, now, requests=100, errors=1, version="2")
    alerts.evaluate_rules(now=now)
    assert [a.version.version for a in firing()] == ["1"]
    traffic(endpoint, now, minutes_ago=2, requests=100, errors=50, version="2")
    alerts.evaluate_rules(now=now)
    assert sorted(a.version.version for a in firing()) == ["1", "2"]


def test_evaluating_again_opens_no_second_alert(endpoint, now, receiver, django_capture_on_commit_callbacks):
    rule(endpoint, "error_rate", 5, webhook_url=receiver.url, emails="ops@example.com")
    traffic(endpoint, now, requests=100, errors=50)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        assert alerts.evaluate_rules(now=now) == 1
        assert alerts.evaluate_rules(now=now) == 0
        assert alerts.evaluate_rules(now=now + timedelta(seconds=60)) == 0
    assert Alert.objects.count() == 1
    assert Notification.objects.filter(event="firing", status="pending").count() == 2
    assert len(queued) == 2  # one delivery queued per notification, after commit


def test_an_evaluator_that_lost_the_race_opens_nothing(endpoint, now):
    r = rule(endpoint, "error_rate", 5, emails="ops@example.com")
    traffic(endpoint, now, requests=100, errors=50)
    alerts.evaluate_rules(now=now)
    # A second evaluator that read "nothing firing" before the first committed hits the constraint.
    verdict = alerts.judge(
        r,
        ModelVersion.objects.get(version="1"),
        next(iter(alerts.series.recent(endpoint, minutes=5, now=now).values())),
    )
    assert verdict.breached
    with transaction.atomic():
        assert alerts._open(r, ModelVersion.objects.get(version="1"), verdict, now) == 0
    assert Alert.objects.count() == 1 and Notification.objects.count() == 1


def test_a_disabled_rule_is_not_evaluated_and_disabling_resolves(endpoint, now):
    r = rule(endpoint, "error_rate", 5)
    traffic(endpoint, now, requests=100, errors=50)
    alerts.evaluate_rules(now=now)
    alerts.rule_update(rule=r, enabled=False)
    (alert,) = Alert.objects.all()
    assert alert.state == "resolved" and alert.details["resolution"] == "the rule was disabled"
    assert alerts.evaluate_rules(now=now) == 0 and not firing()


# --- silences --------------------------------------------------------------------------------------


def test_a_silenced_rule_fires_without_notifying_and_unsilencing_resumes(
    endpoint, now, receiver, django_capture_on_commit_callbacks
):
    r = rule(endpoint, "error_rate", 5, webhook_url=receiver.url, emails="ops@example.com")
    alerts.rule_silence(rule=r, minutes=60, now=now)
    traffic(endpoint, now, requests=100, errors=50)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        alerts.evaluate_rules(now=now)
    (alert,) = firing()
    assert set(alert.notifications.values_list("status", flat=True)) == {"silenced"} and not queued
    assert alert.notifications.count() == 2

    alerts.rule_unsilence(rule=r)
    r.refresh_from_db()
    assert r.silenced_until is None
    with django_capture_on_commit_callbacks(execute=False) as queued:
        alerts.evaluate_rules(now=now + timedelta(seconds=60))  # still firing: now the receivers hear of it
    pending = alert.notifications.filter(event="firing", status="pending")
    assert pending.count() == 2 and len(queued) == 2
    traffic(endpoint, now, minutes_ago=-6, requests=100)
    alerts.evaluate_rules(now=now + timedelta(minutes=6))
    assert alert.notifications.filter(event="resolved", status="pending").count() == 2


def test_a_silence_ends_by_itself(endpoint, now):
    r = rule(endpoint, "error_rate", 5, emails="ops@example.com")
    alerts.rule_silence(rule=r, minutes=15, now=now)
    traffic(endpoint, now, minutes_ago=-20, requests=100, errors=50)
    alerts.evaluate_rules(now=now + timedelta(minutes=21))
    assert Notification.objects.get().status == "pending"


def test_an_alert_that_resolves_during_its_silence_stays_quiet(endpoint, now):
    r = rule(endpoint, "error_rate", 5, emails="ops@example.com")
    alerts.rule_silence(rule=r, minutes=60, now=now)
    traffic(endpoint, now, requests=100, errors=50)
    alerts.evaluate_rules(now=now)
    alerts.evaluate_rules(now=now + timedelta(minutes=10))
    assert list(Notification.objects.values_list("event", "status")) == [
        ("firing", "silenced"),
        ("resolved", "silenced"),
    ]


# --- delivery ----------------------------------------------------------------------------------------


@pytest.fixture
def fired(endpoint, now):
    """A firing error-rate alert; its rule's destinations are set by the test."""

    def fire(**destinations):
        rule(endpoint, "error_rate", 5, **destinations)
        traffic(endpoint, now, requests=100, errors=50)
        alerts.evaluate_rules(now=now)
        return Alert.objects.get()

    return fire


def test_a_webhook_is_retried_with_backoff_until_it_answers(fired):
    receiver = Receiver(statuses=[500, 500])
    try:
        alert = fired(webhook_url=receiver.url + "/flaky")
        notification = alert.notifications.get()
        assert alerts.deliver(notification) == 2  # seconds before the next attempt
        notification.refresh_from_db()
        assert notification.status == "pending" and notification.attempts == 1
        assert notification.last_error == "HTTP 500 from the webhook: receiver says no"
        deliver_notification.apply(args=[notification.pk])  # eager: the retries run at once
        notification.refresh_from_db()
        assert notification.status == "sent" and notification.attempts == 3 and notification.sent
        assert notification.last_error == ""
        posts = receiver.posts("/flaky")
        assert len(posts) == 3 and posts[0] == posts[2]
        assert receiver.calls[0]["content_type"] == "application/json"
        assert set(posts[0]) >= {
            "alert",
            "state",
            "endpoint",
            "version",
            "rule",
            "value",
            "threshold",
            "message",
            "details",
            "started",
            "resolved",
            "url",
        }
        assert posts[0]["rule"] == "error rate above 5 % over 5 min" and posts[0]["value"] == 50
    finally:
        receiver.close()


def test_the_backoff_doubles(fired, settings):
    settings.BERTH_WEBHOOK_RETRIES = 5
    alert = fired(webhook_url=f"http://127.0.0.1:{closed_port()}/hook")
    notification = alert.notifications.get()
    assert [alerts.deliver(notification) for _ in range(5)] == [2, 4, 8, 16, None]


def test_a_webhook_that_never_answers_fails_after_the_retries(fired, settings):
    settings.BERTH_WEBHOOK_RETRIES = 5
    alert = fired(webhook_url=f"http://127.0.0.1:{closed_port()}/hook")
    notification = alert.notifications.get()
    deliver_notification.apply(args=[notification.pk])
    notification.refresh_from_db()
    assert notification.status == "failed" and notification.attempts == 5
    assert notification.last_error.startswith("The webhook could not be reached:")
    assert "refused" in notification.last_error.lower()
    assert alerts.deliver(notification) is None  # done: a re-delivered task does nothing
    assert Notification.objects.get().attempts == 5


def test_alerts_are_e_mailed(fired):
    alert = fired(emails="ops@example.com")
    deliver_notification.apply(args=[alert.notifications.get().pk])
    (message,) = mail.outbox
    assert message.to == ["ops@example.com"] and message.from_email == "berth@localhost"
    assert message.subject == (
        "[Berth] FIRING: digits-prod v1: error rate 50 % > 5 % over the last 5 min (50 of 100 requests failed)"
    )
    assert "Rule: error rate above 5 % over 5 min on digits-prod" in message.body
    assert "/alerts/?endpoint=digits-prod" in message.body
    assert Notification.objects.get().status == "sent"


def test_a_failing_mail_server_is_recorded(fired, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.BERTH_WEBHOOK_RETRIES = "127.0.0.1", closed_port(), 2
    alert = fired(emails="ops@example.com")
    deliver_notification.apply(args=[alert.notifications.get().pk])
    notification = Notification.objects.get()
    assert notification.status == "failed" and notification.attempts == 2
    assert notification.last_error.startswith("The e-mail could not be sent:")


# --- rules: validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "metric, threshold, extra, field",
    [
        ("p95_latency", None, {}, "threshold"),
        ("p95_latency", 0, {}, "threshold"),
        ("error_rate", -1, {}, "threshold"),
        ("error_rate", 150, {}, "threshold"),
        ("benchmark_gap", "fast", {}, "threshold"),
        ("cpu", 5, {}, "metric"),
        ("error_rate", 5, {"window_minutes": 0}, "window_minutes"),
        ("error_rate", 5, {"min_requests": -1}, "min_requests"),
        ("error_rate", 5, {"emails": "ops@example.com, not-an-address"}, "emails"),
        ("error_rate", 5, {"webhook_url": "ftp://example.com/hook"}, "webhook_url"),
    ],
)
def test_a_bad_rule_is_refused_naming_the_field(endpoint, metric, threshold, extra, field):
    with pytest.raises(BerthError) as refused:
        alerts.rule_create(endpoint=endpoint, metric=metric, threshold=threshold, **extra)
    assert refused.value.field == field
    assert not AlertRule.objects.exists()


def test_drift_needs_no_threshold_and_addresses_are_normalised(endpoint):
    r = alerts.rule_create(
        endpoint=endpoint, metric="drift", emails=["a@example.com", "b@example.com", "a@example.com"]
    )
    assert r.threshold is None and r.emails == "a@example.com, b@example.com"
    assert r.describe() == "drift on any feature (significant and material) in 2 of the last 3 windows of 5 min"
    share = alerts.rule_create(endpoint=endpoint, metric="drift", threshold=50)
    assert share.describe() == "drift on at least 50 % of the features in 2 of the last 3 windows of 5 min"
    for bad in (0, 101, "many"):
        with pytest.raises(BerthError) as refused:
            alerts.rule_create(endpoint=endpoint, metric="drift", threshold=bad)
        assert refused.value.field == "threshold"


def test_a_drift_rule_with_a_share_needs_that_many_features(profiled, now):
    rule(profiled, "drift", 100)
    for minutes_ago in (1, 6):
        traffic(
            profiled,
            now,
            minutes_ago=minutes_ago,
            requests=400,
            features={"x.mean": [0, 0, 40, 360], "prediction": [120, 120, 160]},
        )
    assert alerts.evaluate_rules(now=now) == 0 and not Alert.objects.exists()  # 1 of 2 features is not 100 %
    for minutes_ago in (2, 7):
        traffic(
            profiled,
            now,
            minutes_ago=minutes_ago,
            requests=400,
            features={"x.mean": [0, 0, 40, 360], "prediction": [800, 0, 0]},
        )
    alerts.evaluate_rules(now=now)
    (alert,) = firing()
    assert alert.message.startswith("digits-prod v1: drift on 2 of 2 features")
    assert alert.details["features_needed"] == 2


def test_changing_the_metric_needs_its_threshold(endpoint):
    r = rule(endpoint, "p95_latency", 200)
    with pytest.raises(BerthError) as refused:
        alerts.rule_update(rule=r, metric="error_rate")
    assert refused.value.field == "threshold"
    assert alerts.rule_update(rule=r, metric="error_rate", threshold=2).describe() == "error rate above 2 % over 5 min"


def test_the_overview_and_endpoint_helpers(endpoint, now):
    rule(endpoint, "error_rate", 5)
    traffic(endpoint, now, requests=100, errors=50)
    alerts.evaluate_rules(now=now)
    assert [a.message for a in alerts.firing_alerts()] == [Alert.objects.get().message]
    context = alerts.endpoint_alert_context(endpoint)
    assert len(context["firing"]) == 1 and context["rules"] == 1
    assert context["rules_url"] == "/endpoints/digits-prod/alerts/"


# --- API -------------------------------------------------------------------------------------------------


@pytest.fixture
def history(endpoint, now):
    """digits-prod with a resolved alert (v2) and a firing one (v1), and a second endpoint without any."""
    rule(endpoint, "error_rate", 5, webhook_url="https://hooks.example.com/T000/secret")
    traffic(endpoint, now, minutes_ago=20, requests=100, errors=50, version="2")
    alerts.evaluate_rules(now=now - timedelta(minutes=19))
    traffic(endpoint, now, requests=100, errors=50)
    alerts.evaluate_rules(now=now)
    services.endpoint_create(name="quiet", model=endpoint.model, target=endpoint.target)
    return endpoint


def test_the_api_lists_alerts_firing_first(history, viewer_api):
    response = viewer_api.get("/api/v1/alerts/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    first, second = body["results"]
    assert (first["state"], first["version"]) == ("firing", "1") and (second["state"], second["version"]) == (
        "resolved",
        "2",
    )
    assert first["rule_description"] == "error rate above 5 % over 5 min" and first["metric"] == "error_rate"
    assert first["value"] == 50 and first["threshold"] == 5 and first["resolved"] is None
    assert first["message"].startswith("digits-prod v1: error rate 50 %")
    assert first["value_text"] == "error rate 50 % (threshold 5 %)"
    assert second["resolved"] and second["details"]["resolution"] == "digits-prod v2: no traffic in the last 5 min"
    assert first["notifications"][0]["channel"] == "webhook" and first["notifications"][0]["status"] == "pending"
    assert first["notifications"][0]["destination"] == "https://hooks.example.com/…"  # a viewer sees no secret


def test_the_api_filters_alerts(history, viewer_api, engineer_api):
    assert [a["version"] for a in viewer_api.get("/api/v1/alerts/?state=resolved").json()["results"]] == ["2"]
    assert [a["version"] for a in viewer_api.get("/api/v1/alerts/?state=firing").json()["results"]] == ["1"]
    assert viewer_api.get("/api/v1/alerts/?endpoint=quiet").json()["count"] == 0
    assert viewer_api.get("/api/v1/alerts/?endpoint=digits-prod&limit=1").json()["count"] == 2
    bad = viewer_api.get("/api/v1/alerts/?state=broken")
    assert bad.status_code == 400 and "state" in bad.json()["errors"]
    assert viewer_api.get("/api/v1/alerts/?endpoint=nope").status_code == 404
    hook = engineer_api.get("/api/v1/alerts/").json()["results"][0]["notifications"][0]["destination"]
    assert hook == "https://hooks.example.com/T000/secret"


def test_reading_alerts_needs_a_viewer(history, anon_api, nobody):
    from tests.conftest import api_client

    assert anon_api.get("/api/v1/alerts/").status_code == 401
    assert api_client(nobody).get("/api/v1/alerts/").status_code == 403


def test_an_engineer_manages_rules_through_the_api(endpoint, engineer_api, viewer_api, anon_api):
    url = "/api/v1/endpoints/digits-prod/alert-rules/"
    body = {
        "metric": "p95_latency",
        "threshold": 250,
        "window_minutes": 10,
        "emails": ["ops@example.com"],
        "webhook_url": "https://hooks.example.com/x",
    }
    assert anon_api.post(url, body, format="json").status_code == 401
    assert viewer_api.post(url, body, format="json").status_code == 403
    created = engineer_api.post(url, body, format="json")
    assert created.status_code == 201, created.json()
    rule_id = created.json()["id"]
    assert created.json()["description"] == "p95 latency above 250 ms over 10 min"
    assert created.json()["emails"] == ["ops@example.com"] and created.json()["min_requests"] == 20
    listed = viewer_api.get(url).json()
    assert listed["count"] == 1 and listed["results"][0]["webhook_url"] == "https://hooks.example.com/…"
    assert viewer_api.get(f"{url}{rule_id}/").json()["threshold"] == 250

    changed = engineer_api.patch(f"{url}{rule_id}/", {"threshold": 300}, format="json")
    assert changed.status_code == 200 and changed.json()["threshold"] == 300

    assert viewer_api.post(f"{url}{rule_id}/silence/", {"minutes": 60}, format="json").status_code == 403
    silenced = engineer_api.post(f"{url}{rule_id}/silence/", {"minutes": 60}, format="json")
    assert silenced.status_code == 200 and silenced.json()["silenced_until"]
    until = AlertRule.objects.get().silenced_until
    assert timedelta(minutes=59) < until - timezone.now() <= timedelta(minutes=60)
    lifted = engineer_api.post(f"{url}{rule_id}/silence/", {"minutes": 0}, format="json")
    assert lifted.json()["silenced_until"] is None

    assert viewer_api.delete(f"{url}{rule_id}/").status_code == 403
    assert engineer_api.delete(f"{url}{rule_id}/").status_code == 204
    assert not AlertRule.objects.exists()
    assert engineer_api.delete(f"{url}{rule_id}/").status_code == 404

    gap = engineer_api.post(url, {"metric": "benchmark_gap", "threshold": 3, "latency": "request"}, format="json")
    assert gap.status_code == 201 and gap.json()["latency"] == "request"
    assert gap.json()["description"].startswith("request p95 above 3 × the end-to-end benchmark p95")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"metric": "p95_latency"}, "threshold"),
        ({"metric": "error_rate", "threshold": 0}, "threshold"),
        ({"metric": "latency", "threshold": 5}, "metric"),
        ({"metric": "error_rate", "threshold": 5, "emails": ["nope"]}, "emails"),
        ({"metric": "error_rate", "threshold": 5, "webhook_url": "not a url"}, "webhook_url"),
        ({"metric": "error_rate", "threshold": 5, "window_minutes": 0}, "window_minutes"),
        ({"metric": "benchmark_gap", "threshold": 2, "latency": "network"}, "latency"),
        ({"metric": "error_rate", "threshold": 5, "latency": "request"}, "latency"),
    ],
)
def test_bad_rule_input_is_a_400_naming_the_field(endpoint, engineer_api, body, field):
    response = engineer_api.post("/api/v1/endpoints/digits-prod/alert-rules/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"], response.json()
    assert not AlertRule.objects.exists()


def test_a_bad_silence_is_a_400(endpoint, engineer_api):
    r = rule(endpoint, "error_rate", 5)
    response = engineer_api.post(
        f"/api/v1/endpoints/digits-prod/alert-rules/{r.pk}/silence/", {"minutes": -5}, format="json"
    )
    assert response.status_code == 400 and "minutes" in response.json()["errors"]


def test_rules_of_another_endpoint_are_not_found(history, engineer_api):
    r = AlertRule.objects.get()
    assert engineer_api.get(f"/api/v1/endpoints/quiet/alert-rules/{r.pk}/").status_code == 404
    assert engineer_api.get("/api/v1/endpoints/nope/alert-rules/").status_code == 404


# --- pages ------------------------------------------------------------------------------------------------


def browser(user):
    client = Client()
    client.force_login(user)
    return client


def test_the_alerts_page_shows_firing_then_history(history, viewer):
    page = browser(viewer).get("/alerts/").content.decode()
    assert 'href="/alerts/">Alerts</a>' in page  # the nav link
    assert "1 firing" in page
    firing_part, history_part = page.split('id="firing-alerts"')[1].split('id="alert-history"')
    assert "digits-prod v1: error rate 50 %" in firing_part and 'href="/endpoints/digits-prod/"' in firing_part
    assert "no traffic in the last 5 min" in history_part
    only_resolved = browser(viewer).get("/alerts/?state=resolved&endpoint=digits-prod").content.decode()
    assert 'id="firing-alerts"' not in only_resolved and "digits-prod v2" in only_resolved
    assert "Nothing is firing." in browser(viewer).get("/alerts/?endpoint=quiet").content.decode()
    assert browser(viewer).get("/alerts/?endpoint=nope").status_code == 404


def test_the_pages_escape_what_they_show(endpoint, now, viewer):
    r = rule(endpoint, "error_rate", 5)
    Alert.objects.create(
        rule=r,
        endpoint=endpoint,
        version=ModelVersion.objects.get(version="1"),
        message="<script>alert(1)</script>",
        started=now,
        last_evaluated=now,
    )
    for url in ("/alerts/", "/endpoints/digits-prod/alerts/"):
        page = browser(viewer).get(url).content.decode()
        assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_rules_page_for_a_viewer_shows_no_forms(history, viewer):
    response = browser(viewer).get("/endpoints/digits-prod/alerts/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "error rate above 5 % over 5 min" in page and "1 firing" in page
    assert "Add rule" not in page and "Silence 1 h" not in page
    assert "https://hooks.example.com/…" in page and "secret" not in page


def test_an_engineer_adds_silences_and_deletes_a_rule_on_the_page(endpoint, engineer):
    client = browser(engineer)
    assert "Add rule" in client.get("/endpoints/digits-prod/alerts/").content.decode()
    response = client.post(
        "/endpoints/digits-prod/alerts/new/",
        {
            "metric": "error_rate",
            "threshold": "2.5",
            "window_minutes": "5",
            "min_requests": "20",
            "webhook_url": "",
            "emails": "ops@example.com",
        },
    )
    assert response.status_code == 302
    r = AlertRule.objects.get()
    assert r.threshold == 2.5 and r.emails == "ops@example.com" and r.created_by == engineer
    page = client.get("/endpoints/digits-prod/alerts/").content.decode()
    assert "Rule added: error rate above 2.5 % over 5 min" in page and "Silence 15 min" in page

    client.post(f"/endpoints/digits-prod/alerts/{r.pk}/silence/", {"minutes": "240"})
    r.refresh_from_db()
    assert timedelta(minutes=239) < r.silenced_until - timezone.now() <= timedelta(minutes=240)
    assert "Unsilence" in client.get("/endpoints/digits-prod/alerts/").content.decode()
    client.post(f"/endpoints/digits-prod/alerts/{r.pk}/silence/", {"minutes": "0"})
    r.refresh_from_db()
    assert r.silenced_until is None

    # Deleting asks first, saying what goes, who stops hearing and how to undo it.
    asked = client.post(f"/endpoints/digits-prod/alerts/{r.pk}/delete/").content.decode()
    assert "Delete this alert rule of digits-prod?" in asked and "ops@example.com" in asked
    assert "Create the rule again with the same settings" in asked and AlertRule.objects.exists()
    client.post(f"/endpoints/digits-prod/alerts/{r.pk}/delete/", {"confirmed": "yes"})
    assert not AlertRule.objects.exists()


def test_a_bad_rule_on_the_page_shows_the_error(endpoint, engineer):
    response = browser(engineer).post(
        "/endpoints/digits-prod/alerts/new/",
        {"metric": "p95_latency", "threshold": "", "window_minutes": "5", "min_requests": "20"},
    )
    assert response.status_code == 400
    assert "threshold is required for p95_latency" in response.content.decode()
    assert not AlertRule.objects.exists()


def test_viewers_cannot_change_rules(history, viewer):
    client = browser(viewer)
    r = AlertRule.objects.get()
    assert (
        client.post(
            "/endpoints/digits-prod/alerts/new/",
            {"metric": "error_rate", "threshold": "1", "window_minutes": "5", "min_requests": "1"},
        ).status_code
        == 403
    )
    assert client.post(f"/endpoints/digits-prod/alerts/{r.pk}/silence/", {"minutes": "60"}).status_code == 403
    assert client.post(f"/endpoints/digits-prod/alerts/{r.pk}/delete/").status_code == 403
    r.refresh_from_db()
    assert r.silenced_until is None and AlertRule.objects.count() == 1


def test_anonymous_visitors_are_sent_to_log_in(history):
    response = Client().get("/alerts/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
