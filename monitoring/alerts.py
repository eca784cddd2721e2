"""Alert rules, their evaluation and notifications: the only writer of AlertRule, Alert and
Notification rows.

Every minute (Celery beat, BERTH_ALERT_EVALUATE_SECONDS) ``evaluate_rules`` looks at each
enabled rule's endpoint over the rule's window, per version: an alert opens (firing) when the
condition holds and resolves when it no longer does, or when the version got no traffic.
Each transition writes one Notification per webhook and e-mail address of the rule (SILENCED
instead of PENDING while the rule is silenced) and queues its delivery after commit
(monitoring/notify.py sends it).
"""

import logging
import math
import re
from dataclasses import dataclass, field
from datetime import timedelta

from celery import current_app
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils import timezone

from berth.core.drift import WINDOWS as DRIFT_WINDOWS
from berth.core.drift import WINDOWS_NEEDED as DRIFT_WINDOWS_NEEDED
from berth.core.drift import relative_drift, sustained
from common.errors import BerthError

from . import series
from .models import Alert, AlertRule, Notification
from .notify import deliver  # noqa: F401 (the delivery task's entry point, beside the rest of alerts)
from .notify import number as _num

logger = logging.getLogger(__name__)

Metric = AlertRule.Metric
MAX_WINDOW_MINUTES = 24 * 60
MAX_SILENCE_MINUTES = 30 * 24 * 60

# monitoring/tasks.py runs it (notify.deliver, retried on its schedule); named, so that the tasks
# module imports alerts and never the reverse.
DELIVER_TASK = "monitoring.deliver_notification"


# --- rules ---------------------------------------------------------------------------------------


def rule_create(
    *,
    endpoint,
    metric,
    threshold=None,
    window_minutes=5,
    min_requests=20,
    webhook_url="",
    emails="",
    enabled=True,
    user=None,
    latency=AlertRule.Latency.INFERENCE,
):
    """A new alert rule on ``endpoint``. ``threshold`` is ms (p95_latency), % (error_rate) or k
    (benchmark_gap); drift uses each feature's own test threshold and ignores it. ``latency``
    (benchmark_gap): ``inference`` compares session.run with the benchmark, ``request`` requests
    with the end-to-end benchmark. ``emails`` is a list or a comma-separated string. Raises
    BerthError naming the bad field."""
    rule = AlertRule(endpoint=endpoint, enabled=bool(enabled), created_by=user)
    _apply(
        rule,
        metric=metric,
        threshold=threshold,
        window_minutes=window_minutes,
        min_requests=min_requests,
        webhook_url=webhook_url,
        emails=emails,
        latency=latency,
    )
    with transaction.atomic():
        rule.save()
    return rule


def rule_update(*, rule, user=None, **changes):
    """Change some of a rule's settings (the same names as rule_create, plus ``enabled``).
    Disabling a rule resolves its firing alerts."""
    unknown = set(changes) - {
        "metric",
        "threshold",
        "window_minutes",
        "min_requests",
        "webhook_url",
        "emails",
        "enabled",
        "latency",
    }
    if unknown:
        raise BerthError(f"Unknown rule setting {sorted(unknown)[0]!r}.", field=sorted(unknown)[0])
    with transaction.atomic():
        rule = AlertRule.objects.select_for_update(of=("self",)).select_related("endpoint").get(pk=rule.pk)
        current = {
            "metric": rule.metric,
            "threshold": rule.threshold,
            "window_minutes": rule.window_minutes,
            "min_requests": rule.min_requests,
            "webhook_url": rule.webhook_url,
            "emails": rule.emails,
            "latency": rule.latency,
        }
        enabled = changes.pop("enabled", rule.enabled)
        if changes.get("metric", rule.metric) != rule.metric:
            current["threshold"] = None  # ms, % and k do not translate: a new metric needs its own threshold
            current["latency"] = AlertRule.Latency.INFERENCE
        _apply(rule, **{**current, **changes})
        rule.enabled = bool(enabled)
        rule.save()
        if not rule.enabled:
            now = timezone.now()
            for alert in Alert.objects.select_for_update().filter(rule=rule, state=Alert.State.FIRING):
                _resolve(alert, now, value=alert.last_value, resolution="the rule was disabled")
    return rule


def rule_delete(*, rule, user=None):
    """Delete a rule with its alert history."""
    with transaction.atomic():
        AlertRule.objects.filter(pk=rule.pk).delete()


def rule_silence(*, rule, minutes, user=None, now=None):
    """Silence the rule's notifications for ``minutes`` (0 lifts the silence). Alerts still open
    and resolve while silenced; their notifications are recorded as silenced, not sent."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 0 <= minutes <= MAX_SILENCE_MINUTES:
        raise BerthError(
            f"minutes is a whole number from 0 (lift the silence) to {MAX_SILENCE_MINUTES} (30 days).", field="minutes"
        )
    now = now or timezone.now()
    until = now + timedelta(minutes=minutes) if minutes else None
    with transaction.atomic():
        AlertRule.objects.filter(pk=rule.pk).update(silenced_until=until)
    rule.silenced_until = until
    return rule


def rule_unsilence(*, rule, user=None):
    return rule_silence(rule=rule, minutes=0, user=user)


def email_list(text):
    """The addresses of a rule's ``emails`` field."""
    return [address for address in re.split(r"[,;\s]+", text or "") if address]


def _apply(rule, *, metric, threshold, window_minutes, min_requests, webhook_url, emails, latency=None):
    if metric not in Metric.values:
        raise BerthError(f"metric must be one of {', '.join(Metric.values)}.", field="metric")
    latency = latency or AlertRule.Latency.INFERENCE
    if latency not in AlertRule.Latency.values:
        raise BerthError(
            f"latency must be one of {', '.join(AlertRule.Latency.values)} (what a benchmark_gap rule compares).",
            field="latency",
        )
    if latency != AlertRule.Latency.INFERENCE and metric != Metric.BENCHMARK_GAP:
        raise BerthError("latency applies to benchmark_gap rules only.", field="latency")
    if metric == Metric.DRIFT:
        # Each feature is judged by its own test's threshold; the rule's threshold, when given, is
        # the share of features (%) that must drift (50: dataset drift), so that one feature's
        # chance verdict (a 5 % test evaluated every minute) does not page anyone.
        if threshold not in (None, ""):
            try:
                threshold = float(threshold)
            except (TypeError, ValueError) as exc:
                raise BerthError("threshold must be a number.", field="threshold") from exc
            if not math.isfinite(threshold) or not 0 < threshold <= 100:
                raise BerthError(
                    "For drift, threshold is the share of features (%, above 0 and at most 100) "
                    "that must drift; leave it empty for any feature.",
                    field="threshold",
                )
        else:
            threshold = None
    else:
        if threshold in (None, ""):
            raise BerthError(f"threshold is required for {metric}: {_THRESHOLD_HELP[metric]}.", field="threshold")
        try:
            threshold = float(threshold)
        except (TypeError, ValueError) as exc:
            raise BerthError("threshold must be a number.", field="threshold") from exc
        if not math.isfinite(threshold) or threshold <= 0:
            raise BerthError(f"threshold must be above 0: {_THRESHOLD_HELP[metric]}.", field="threshold")
        if metric == Metric.ERROR_RATE and threshold >= 100:
            raise BerthError("threshold is a percentage of requests below 100 for error_rate.", field="threshold")
    if (
        isinstance(window_minutes, bool)
        or not isinstance(window_minutes, int)
        or not 1 <= window_minutes <= MAX_WINDOW_MINUTES
    ):
        raise BerthError(
            f"window_minutes is a whole number of minutes from 1 to {MAX_WINDOW_MINUTES}.", field="window_minutes"
        )
    if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 0:
        raise BerthError(
            "min_requests is a whole number ≥ 0: with fewer requests in the window there is no verdict.",
            field="min_requests",
        )
    webhook_url = (webhook_url or "").strip()
    if webhook_url:
        try:
            URLValidator(schemes=["http", "https"])(webhook_url)
        except ValidationError as exc:
            raise BerthError(
                "webhook_url must be an http:// or https:// URL that accepts a JSON POST.", field="webhook_url"
            ) from exc
    addresses = email_list(emails) if isinstance(emails, str) else [str(a).strip() for a in emails or [] if a]
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError as exc:
            raise BerthError(f"{address!r} is not an e-mail address.", field="emails") from exc
    joined = ", ".join(dict.fromkeys(addresses))
    if len(joined) > AlertRule._meta.get_field("emails").max_length:
        raise BerthError("Too many e-mail addresses; use a mailing list.", field="emails")
    rule.metric, rule.threshold, rule.window_minutes, rule.min_requests = (
        metric,
        threshold,
        window_minutes,
        min_requests,
    )
    rule.webhook_url, rule.emails, rule.latency = webhook_url, joined, latency


_THRESHOLD_HELP = {
    Metric.P95_LATENCY: "the p95 latency in ms above which it fires",
    Metric.ERROR_RATE: "the error rate in % above which it fires",
    Metric.BENCHMARK_GAP: "k, it fires when the production p95 is above k × the benchmark p95",
}


# --- evaluation ----------------------------------------------------------------------------------


@dataclass
class Verdict:
    breached: bool
    value: float
    threshold: float
    message: str  # what fired (when breached) or why it is fine again
    details: dict = field(default_factory=dict)


def evaluate_rules(now=None):
    """Evaluate every enabled rule at ``now`` (default: the current time), each in its own
    transaction. Returns the number of alerts opened or resolved."""
    now = now or timezone.now()
    changed = 0
    for rule_id in AlertRule.objects.filter(enabled=True).values_list("id", flat=True):
        try:
            changed += rule_evaluate(rule_id=rule_id, now=now)
        except Exception:  # one broken rule must not keep the others from being evaluated
            logger.exception("Alert rule %s could not be evaluated", rule_id)
    return changed


def rule_evaluate(*, rule_id, now):
    """Evaluate one rule per version; returns the number of alerts opened or resolved. The rule
    row is locked for the whole evaluation, so two evaluators take turns."""
    with transaction.atomic():
        rule = (
            AlertRule.objects.select_for_update(of=("self",))
            .select_related("endpoint__model", "endpoint__target")
            .filter(pk=rule_id, enabled=True)
            .first()
        )
        if rule is None:
            return 0
        heard = Notification.objects.filter(alert=OuterRef("pk"), event=Alert.State.FIRING).exclude(
            status=Notification.Status.SILENCED
        )
        firing = {
            alert.version_id: alert
            for alert in Alert.objects.filter(rule=rule, state=Alert.State.FIRING)
            .annotate(heard=Exists(heard))
            .select_related("version")
        }
        changed = 0
        earlier = _earlier_windows(rule, now) if rule.metric == Metric.DRIFT else []
        for version, summary in series.recent(rule.endpoint, minutes=rule.window_minutes, now=now).items():
            alert = firing.pop(version.pk, None)
            if not summary["requests"]:
                if alert:
                    changed += _resolve(alert, now, value=None, resolution=_no_traffic(rule, version))
                continue
            verdict = judge(rule, version, summary, earlier=[window.get(version) for window in earlier])
            if verdict is None:  # too few requests or no data for this metric: keep the state as it is
                continue
            if verdict.breached and alert is None:
                changed += _open(rule, version, verdict, now)
            elif verdict.breached:
                alert.last_value, alert.last_evaluated = verdict.value, now
                fields = ["last_value", "last_evaluated"]
                if "worst" in verdict.details:
                    alert.details = {**alert.details, "worst": verdict.details["worst"]}
                    fields.append("details")
                alert.save(update_fields=fields)
                if not alert.heard and not _silenced(rule, now):
                    _notify(alert, Alert.State.FIRING, now)  # it fired during a silence that is over now
            elif alert is not None:
                changed += _resolve(
                    alert, now, value=verdict.value, resolution=verdict.message, worst=verdict.details.get("worst")
                )
        for alert in firing.values():  # versions without a single window in the rule's window
            changed += _resolve(alert, now, value=None, resolution=_no_traffic(rule, alert.version))
    return changed


def _earlier_windows(rule, now):
    """series.recent of the DRIFT_WINDOWS - 1 windows before the rule's current one, oldest
    first."""
    step = timedelta(minutes=rule.window_minutes)
    return [
        series.recent(rule.endpoint, minutes=rule.window_minutes, now=now - k * step)
        for k in range(DRIFT_WINDOWS - 1, 0, -1)
    ]


def judge(rule, version, summary, *, earlier=()):
    """The rule's verdict on one version's summary (from series.recent), or None when there is
    none to give: fewer than min_requests requests, no latency data, no benchmark, no drift
    score. For drift, ``earlier`` holds the summaries of the windows before (oldest first, None
    where the version had no traffic): the rule fires on DRIFT_WINDOWS_NEEDED of them."""
    if summary["requests"] < rule.min_requests:
        return None
    who = f"{rule.endpoint.name} {_label(version)}"
    span = f"over the last {rule.window_minutes} min"
    counts = {"requests": summary["requests"], "errors": summary["errors"], "window_minutes": rule.window_minutes}
    if rule.metric == Metric.DRIFT:
        return _judge_drift(rule, who, span, summary, counts, earlier)
    if rule.metric == Metric.ERROR_RATE:
        if summary["error_rate"] is None:
            return None
        value = summary["error_rate"] * 100
        breached = value > rule.threshold
        text = (
            (
                f"{who}: error rate {_num(value)} % > {_num(rule.threshold)} % {span} "
                f"({summary['errors']:,} of {summary['requests']:,} requests failed)"
            )
            if breached
            else f"{who}: error rate back to {_num(value)} % (≤ {_num(rule.threshold)} %) {span}"
        )
        return Verdict(breached, value, rule.threshold, text, {**counts, "error_kinds": summary.get("error_kinds", {})})
    p95 = summary["p95_ms"]
    if p95 is None:
        return None
    latency = {**counts, "p50_ms": summary["p50_ms"], "p95_ms": p95, "p99_ms": summary["p99_ms"]}
    if rule.metric == Metric.P95_LATENCY:
        breached = p95 > rule.threshold
        text = (
            f"{who}: p95 latency {_num(p95)} ms > {_num(rule.threshold)} ms {span}"
            if breached
            else f"{who}: p95 latency back to {_num(p95)} ms (≤ {_num(rule.threshold)} ms) {span}"
        )
        return Verdict(breached, p95, rule.threshold, text, latency)
    # Like for like only (monitoring.comparable): production's session.run p95 against the benchmark of
    # the same version on this target at the batch size production ran, or (latency=request) its request
    # p95 against the end-to-end benchmark in the encoding and at the rows it served most; else no verdict.
    like = (summary.get("benchmark") or {}).get(rule.latency) or {}
    if not like.get("comparable"):
        return None
    ratio, benchmark, production = like["ratio"], like["benchmark_p95_ms"], like["production_p95_ms"]
    breached = ratio > rule.threshold
    target = rule.endpoint.target.slug
    size = f"batch size {like['batch_size']}"
    if rule.latency == AlertRule.Latency.REQUEST:
        what, against, size = "request p95", "end-to-end benchmark p95", f"{like['encoding']}, {size}"
        figures = {"request_p95_ms": production, "encoding": like["encoding"]}
    else:
        what, against = "inference p95", "benchmark p95"
        figures = {"inference_p95_ms": production}
    text = (
        (
            f"{who}: {what} {_num(production)} ms is {_num(ratio)} × its {against} ({_num(benchmark)} ms "
            f"on {target} at {size}; the limit is {_num(rule.threshold)} ×) {span}"
        )
        if breached
        else f"{who}: {what} back to {_num(ratio)} × its {against} ({_num(production)} ms vs {_num(benchmark)} "
        f"ms at {size}) {span}"
    )
    return Verdict(
        breached,
        ratio,
        rule.threshold,
        text,
        {**latency, **figures, "benchmark_p95_ms": benchmark, "batch_size": like["batch_size"]},
    )


def _judge_drift(rule, who, span, summary, counts, earlier):
    scored = {name: v for name, v in (summary.get("drift") or {}).items() if v is not None}
    if not scored:
        return None
    ranked = sorted(scored.items(), key=lambda item: -relative_drift(item[1]))
    drifted = [(name, v) for name, v in ranked if v["drifted"]]
    value = relative_drift(ranked[0][1])
    details = {
        **counts,
        "features_scored": len(scored),
        "features_drifted": len(drifted),
        "features": [_feature_figures(name, v) for name, v in drifted],
        # The feature furthest past its thresholds, drifted or not: what the alerts page and the
        # notifications state (berth.core.drift.drift_text), refreshed at every evaluation.
        "worst": _feature_figures(*ranked[0]),
    }
    needed = _features_needed(rule, len(scored))
    details["features_needed"] = needed
    now_drifted = bool(drifted) and len(drifted) >= needed
    history = [_window_drifted(rule, s) for s in earlier] + [now_drifted]
    windows_drifted = sum(1 for d in history if d)
    details.update(windows=DRIFT_WINDOWS, windows_drifted=windows_drifted, windows_needed=DRIFT_WINDOWS_NEEDED)
    windows = (
        f"in {windows_drifted} of the last {len(history)} windows of {rule.window_minutes} min "
        f"(the rule needs {DRIFT_WINDOWS_NEEDED})"
    )
    if sustained(history, needed=DRIFT_WINDOWS_NEEDED, of=DRIFT_WINDOWS):
        if now_drifted:
            name, worst = drifted[0]
            text = (
                f"{who}: drift on {len(drifted)} of {len(scored)} features {windows}; now "
                f"{_drift_text(name, worst)} {span}"
            )
        else:
            text = f"{who}: drift {windows}; not in the newest"
        return Verdict(True, value, 1.0, text, details)
    name, closest = ranked[0]
    if now_drifted:
        text = f"{who}: drift on {len(drifted)} of {len(scored)} features, but only {windows}"
    elif drifted:
        text = (
            f"{who}: drift on {len(drifted)} of {len(scored)} features, fewer than the {needed} the rule needs {span}"
        )
    else:
        text = f"{who}: no feature drifts any more ({len(scored)} scored; closest {_drift_text(name, closest)}) {span}"
    return Verdict(False, value, 1.0, text, details)


def _feature_figures(name, verdict):
    """What an alert keeps of a feature's verdict: its test and effect against their thresholds."""
    return {
        "feature": name,
        "test": verdict["test"],
        "score": verdict["score"],
        "statistic": verdict["statistic"],
        "threshold": verdict["threshold"],
        "effect": verdict["effect"],
        "effect_value": verdict["effect_value"],
        "effect_threshold": verdict["effect_threshold"],
        "drifted": verdict["drifted"],
        "explanation": verdict["explanation"],
    }


def _features_needed(rule, scored):
    return 1 if rule.threshold is None else math.ceil(rule.threshold / 100 * scored - 1e-9)


def _window_drifted(rule, summary):
    """Whether an earlier window met the drift rule's condition (False without a verdict)."""
    if summary is None or summary["requests"] < rule.min_requests:
        return False
    scored = [v for v in (summary.get("drift") or {}).values() if v is not None]
    drifted = sum(1 for v in scored if v["drifted"])
    return bool(drifted) and drifted >= _features_needed(rule, len(scored))


def _drift_text(name, verdict):
    """A feature's verdict in words, e.g. "x.mean wider than the reference: KS 0.08, p-value 2e-6 on
    2,000 rows (Wasserstein 0.24 ≥ 0.1)"."""
    return f"{name} {verdict['explanation']}"


def _open(rule, version, verdict, now):
    try:
        with transaction.atomic():  # the unique constraint: never two firing alerts per rule and version
            alert = Alert.objects.create(
                rule=rule,
                endpoint=rule.endpoint,
                version=version,
                value=verdict.value,
                last_value=verdict.value,
                threshold=verdict.threshold,
                message=verdict.message,
                details=verdict.details,
                started=now,
                last_evaluated=now,
            )
    except IntegrityError:
        return 0
    _notify(alert, Alert.State.FIRING, now)
    return 1


def _resolve(alert, now, *, value, resolution, worst=None):
    alert.state, alert.resolved, alert.last_evaluated = Alert.State.RESOLVED, now, now
    alert.last_value = value
    alert.details = {**alert.details, "resolution": resolution}
    if worst is not None:
        alert.details["worst"] = worst
    alert.save(update_fields=["state", "resolved", "last_evaluated", "last_value", "details"])
    heard = getattr(alert, "heard", None)
    if heard is None:
        heard = (
            alert.notifications.filter(event=Alert.State.FIRING).exclude(status=Notification.Status.SILENCED).exists()
        )
    # A receiver that never heard the alert fire is not told it resolved.
    _notify(alert, Alert.State.RESOLVED, now, silenced=not heard)
    return 1


def _no_traffic(rule, version):
    return f"{rule.endpoint.name} {_label(version)}: no traffic in the last {rule.window_minutes} min"


def _silenced(rule, now):
    return rule.silenced_until is not None and rule.silenced_until > now


def _notify(alert, event, now, *, silenced=False):
    """One Notification per destination of the alert's rule; pending ones are delivered after
    commit."""
    rule = alert.rule
    status = Notification.Status.SILENCED if silenced or _silenced(rule, now) else Notification.Status.PENDING
    destinations = [(Notification.Channel.WEBHOOK, rule.webhook_url)] if rule.webhook_url else []
    destinations += [(Notification.Channel.EMAIL, address) for address in email_list(rule.emails)]
    for channel, destination in destinations:
        row = Notification.objects.create(
            alert=alert, channel=channel, event=event, destination=destination, status=status
        )
        if status == Notification.Status.PENDING:
            transaction.on_commit(lambda pk=row.pk: current_app.send_task(DELIVER_TASK, args=(pk,)))


def _label(version):
    text = version.version if version is not None else "?"
    return f"v{text}" if text[:1].isdigit() else text


# --- reads for pages ------------------------------------------------------------------------------


def alert_list(*, state="", endpoint=None):
    """Alerts, firing first, newest first."""
    alerts = (
        Alert.objects.select_related("rule", "endpoint", "version")
        .prefetch_related("notifications")
        .order_by("state", "-started", "-id")
    )  # "firing" sorts before "resolved"
    if state:
        alerts = alerts.filter(state=state)
    if endpoint is not None:
        alerts = alerts.filter(endpoint=endpoint)
    return alerts


def firing_alerts(limit=20):
    """The firing alerts of every endpoint (newest first), for the overview page."""
    return list(alert_list(state=Alert.State.FIRING)[:limit])


def endpoint_alert_context(endpoint):
    """What templates/monitoring/_endpoint_alerts.html shows on an endpoint's page."""
    return {
        "endpoint": endpoint,
        "firing": list(alert_list(state=Alert.State.FIRING, endpoint=endpoint)),
        "rules": AlertRule.objects.filter(endpoint=endpoint).count(),
        "rules_url": reverse("monitoring:alert-rules", args=[endpoint.name]),
    }


def rule_list(endpoint):
    return list(
        AlertRule.objects.filter(endpoint=endpoint)
        .select_related("endpoint")
        .annotate(firing=Exists(Alert.objects.filter(rule=OuterRef("pk"), state=Alert.State.FIRING)))
    )
