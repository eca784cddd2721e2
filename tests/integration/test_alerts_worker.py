"""Alerts end to end: a real ``celery worker -B`` process whose beat evaluates the rules every
second, a local webhook receiver and file-based e-mail. Time moves by shifting the endpoint's
windows into the past; nothing sleeps."""

import os
import subprocess
import uuid
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from monitoring import alerts, services
from monitoring.models import Alert, MetricWindow, Notification
from registry.models import ModelVersion
from tests.conftest import celery_worker_command, database_url, purge_queues, stop_process, wait_for
from tests.monitoring.test_alerts import Receiver, digits_prod, sketch

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WINDOW_MINUTES = 2


@pytest.fixture
def endpoint(engineer):
    return digits_prod(engineer, ("1",))


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def beat_worker(transactional_db, settings, tmp_path):
    """A ``celery -A dashboard worker -B`` process on the test database and broker, its beat
    evaluating alert rules every second and its e-mail written as files to ``mail_dir``."""
    from dashboard.celery import app
    from jobs.models import WorkerHost

    purge_queues(app, ["default"])
    name = f"test-beat-{uuid.uuid4().hex[:8]}@{os.uname().nodename}"
    mail_dir = tmp_path / "mail"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "BERTH_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "BERTH_ALERT_EVALUATE_SECONDS": "1",
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(mail_dir),
    }
    log = tmp_path / "worker.log"
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            celery_worker_command(["default"], name, "-B", "--schedule", str(tmp_path / "celerybeat-schedule")),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    process.log, process.mail_dir = log, mail_dir

    def reported():
        if process.poll() is not None:
            raise AssertionError(f"the worker exited: {log.read_text()[-3000:]}")
        return WorkerHost.objects.filter(hostname=name).exists()

    try:
        wait_for(reported, timeout=60, message="the worker to report itself")
        yield process
    finally:
        stop_process(process)


def mails(folder, text):
    return [p for p in folder.glob("*") if text in p.read_text(errors="replace")] if folder.is_dir() else []


def test_alerts_fire_notify_and_resolve_through_the_worker_and_beat(endpoint, beat_worker, receiver):
    rule = alerts.rule_create(
        endpoint=endpoint,
        metric="error_rate",
        threshold=5,
        window_minutes=WINDOW_MINUTES,
        min_requests=10,
        webhook_url=receiver.url + "/hook",
        emails="ops@example.com",
    )
    quiet = alerts.rule_create(
        endpoint=endpoint,
        metric="p95_latency",
        threshold=1,
        window_minutes=WINDOW_MINUTES,
        min_requests=10,
        webhook_url=receiver.url + "/silenced",
    )
    alerts.rule_silence(rule=quiet, minutes=60)

    with transaction.atomic():
        services.window_add(
            endpoint=endpoint,
            version=ModelVersion.objects.get(version="1"),
            start=timezone.now(),
            requests=200,
            errors=40,
            latency=sketch(20.0, 200),
        )

    # Beat evaluates within a second: the alert fires and the receiver gets its JSON.
    alert = wait_for(
        lambda: Alert.objects.filter(rule=rule, state="firing").first(),
        timeout=30,
        message="the error-rate alert to fire",
    )
    assert alert.message == ("digits-prod v1: error rate 20 % > 5 % over the last 2 min (40 of 200 requests failed)")
    (fired,) = wait_for(lambda: receiver.posts("/hook"), timeout=30, message="the firing webhook")
    assert fired["state"] == "firing" and fired["alert"] == alert.pk and fired["value"] == 20
    assert fired["endpoint"] == "digits-prod" and fired["version"] == "1"
    assert fired["rule"] == "error rate above 5 % over 2 min" and fired["url"] == "/alerts/?endpoint=digits-prod"
    (mail,) = wait_for(lambda: mails(beat_worker.mail_dir, "[Berth] FIRING"), timeout=30, message="the e-mail")
    assert "To: ops@example.com" in mail.read_text()
    wait_for(
        lambda: Notification.objects.filter(alert=alert, status="sent").count() == 2,
        timeout=30,
        message="both notifications to be marked sent",
    )

    # The silenced rule fires too, and its notification is recorded as silenced, never sent.
    silenced = wait_for(
        lambda: Alert.objects.filter(rule=quiet, state="firing").first(),
        timeout=30,
        message="the silenced rule's alert",
    )
    assert list(silenced.notifications.values_list("status", flat=True)) == ["silenced"]

    # Time moves on: the windows slide out of the rules' window, so both alerts resolve.
    MetricWindow.objects.filter(endpoint=endpoint).update(start=F("start") - timedelta(minutes=2 * WINDOW_MINUTES))
    wait_for(lambda: Alert.objects.get(pk=alert.pk).state == "resolved", timeout=30, message="the alert to resolve")
    resolved = wait_for(lambda: receiver.posts("/hook")[1:], timeout=30, message="the resolved webhook")[0]
    assert resolved["state"] == "resolved" and resolved["alert"] == alert.pk and resolved["resolved"]
    assert resolved["message"] == "digits-prod v1: no traffic in the last 2 min"
    wait_for(lambda: mails(beat_worker.mail_dir, "[Berth] RESOLVED"), timeout=30, message="the resolved e-mail")
    wait_for(
        lambda: Alert.objects.get(pk=silenced.pk).state == "resolved",
        timeout=30,
        message="the silenced alert to resolve",
    )
    assert set(silenced.notifications.values_list("status", flat=True)) == {"silenced"}
    assert receiver.posts("/silenced") == []
    assert Alert.objects.count() == 2  # evaluated every second, and never a second alert
