"""Delivering alert notifications: a webhook (JSON POST) or an e-mail (Django's mail backend),
one attempt at a time. The Celery task monitoring.deliver_notification retries with the
backoff ``deliver`` returns."""

import json
import logging
import smtplib
import urllib.error
import urllib.request

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import timezone

from berth.core.drift import drift_text

from .models import Alert, AlertRule, Notification

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 5


def deliver(notification):
    """One delivery attempt of a pending notification (a Notification or its id). Returns the
    seconds to wait before the next attempt, or None when done: sent, failed after
    BERTH_WEBHOOK_RETRIES attempts, or not pending (already handled, silenced)."""
    pk = getattr(notification, "pk", notification)
    row = (
        Notification.objects.select_related("alert__rule", "alert__endpoint", "alert__version")
        .filter(pk=pk, status=Notification.Status.PENDING)
        .first()
    )
    if row is None:
        return None
    try:
        if row.channel == Notification.Channel.WEBHOOK:
            _post_webhook(row)
        else:
            _send_email(row)
    except DeliveryError as exc:
        error = str(exc)
    else:
        error = None
    attempts = row.attempts + 1
    pending = Notification.objects.filter(pk=pk, status=Notification.Status.PENDING)
    if error is None:
        pending.update(status=Notification.Status.SENT, attempts=attempts, sent=timezone.now(), last_error="")
        return None
    failed = attempts >= settings.BERTH_WEBHOOK_RETRIES
    pending.update(
        status=Notification.Status.FAILED if failed else Notification.Status.PENDING,
        attempts=attempts,
        last_error=error[:2000],
    )
    logger.warning("Notification %s to %s, attempt %s: %s", pk, row.destination, attempts, error)
    return None if failed else 2**attempts


class DeliveryError(Exception):
    """A webhook or mail server that did not take the message; the text says why."""


def payload(notification):
    """The JSON a webhook receives."""
    alert = notification.alert
    resolved = notification.event == Alert.State.RESOLVED
    return {
        "alert": alert.pk,
        "state": notification.event,
        "endpoint": alert.endpoint.name,
        "version": alert.version.version if alert.version else None,
        "rule": alert.rule.describe(),
        "metric": alert.rule.metric,
        "value": alert.last_value if resolved else alert.value,
        "threshold": alert.threshold,
        "value_text": value_text(alert, latest=resolved),
        "message": _text(notification),
        "details": alert.details,
        "started": alert.started.isoformat(),
        "resolved": alert.resolved.isoformat() if resolved and alert.resolved else None,
        "url": alerts_url(alert),
    }


def _text(notification):
    alert = notification.alert
    if notification.event == Alert.State.RESOLVED:
        return alert.details.get("resolution") or f"Resolved: {alert.message}"
    return alert.message


def _post_webhook(notification):
    body = json.dumps(payload(notification)).encode()
    request = urllib.request.Request(
        notification.destination,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "Berth-alerts"},
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} from the webhook: {_snippet(exc)}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DeliveryError(f"The webhook could not be reached: {getattr(exc, 'reason', exc)}") from exc
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status} from the webhook")


def _snippet(error):
    try:
        return error.read(300).decode(errors="replace").strip() or error.reason
    except OSError:
        return error.reason


def _send_email(notification):
    alert = notification.alert
    word = "RESOLVED" if notification.event == Alert.State.RESOLVED else "FIRING"
    text = _text(notification)
    lines = [
        text,
        "",
        f"Rule: {alert.rule.describe()} on {alert.endpoint.name}",
        f"Started: {alert.started:%Y-%m-%d %H:%M:%S %Z}",
    ]
    resolved = notification.event == Alert.State.RESOLVED
    if resolved and alert.resolved:
        lines.append(f"Resolved: {alert.resolved:%Y-%m-%d %H:%M:%S %Z}")
    lines.append(f"{'Last' if resolved else 'Now'}: {value_text(alert, latest=resolved)}")
    features = alert.details.get("features", [])
    if features:
        lines.append("Drifted features:")
    lines += [f"  {drift_text(feature, feature['feature'])}" for feature in features[:20]]
    lines += ["", f"Alerts: {alerts_url(alert)}"]
    try:
        send_mail(
            " ".join(f"[Berth] {word}: {text}".split())[:250],
            "\n".join(lines),
            settings.DEFAULT_FROM_EMAIL,
            [notification.destination],
        )
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        raise DeliveryError(f"The e-mail could not be sent: {exc}") from exc


def alerts_url(alert=None):
    """The alerts page (of the alert's endpoint), prefixed with BERTH_PUBLIC_URL when set."""
    path = reverse("monitoring:alerts")
    if alert is not None:
        path += f"?endpoint={alert.endpoint.name}"
    return settings.BERTH_PUBLIC_URL + path


def value_text(alert, *, latest=True):
    """An alert's figure against its threshold, in the metric's own terms: "p95 812 ms
    (threshold 500 ms)", or for drift the worst feature's test and effect ("pixel_mean: KS
    p-value 2e-6 (threshold 0.05), Wasserstein 0.31 sd (threshold 0.1 sd)"). ``latest``: the
    last evaluation's figure, else the one it fired with."""
    metric = alert.rule.metric
    if metric == AlertRule.Metric.DRIFT:
        worst = alert.details.get("worst") if latest else None
        features = alert.details.get("features") or []
        worst = worst or (features[0] if features else None)  # the worst when it fired (drifted first)
        if worst is not None:
            return drift_text(worst, worst["feature"])
        # An alert from before the figures were kept: only how far past the thresholds it was.
        return f"{number(alert.last_value if latest else alert.value)} × its thresholds"
    value = alert.last_value if latest and alert.last_value is not None else alert.value
    if value is None:
        return "no data"
    threshold = number(alert.threshold)
    if metric == AlertRule.Metric.ERROR_RATE:
        return f"error rate {number(value)} % (threshold {threshold} %)"
    if metric == AlertRule.Metric.P95_LATENCY:
        return f"p95 {number(value)} ms (threshold {threshold} ms)"
    return f"inference p95 {number(value)} × its benchmark (threshold {threshold} ×)"


def number(value):
    """A number as people read it: 312, 12.3, 0.0412."""
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
