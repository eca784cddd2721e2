"""What a change to an endpoint will do, in words, for the confirmation a person sees before
making it: what changes, for whom, and how to undo it. Reads only; the change itself is made by
monitoring.services / monitoring.alerts once confirmed."""

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import Alert, Deployment
from .replicas import endpoint_replicas


@dataclass
class Impact:
    title: str
    changes: list = field(default_factory=list)  # what changes
    affected: list = field(default_factory=list)  # for whom
    undo: list = field(default_factory=list)  # how to undo it
    confirm: str = "Confirm"  # the button's label


def _split_text(split):
    return ", ".join(f"v{version} {weight} %" for version, weight in split) or "nothing"


def _current_split(endpoint):
    return [
        (d.version.version, d.weight)
        for d in Deployment.objects.filter(endpoint=endpoint, state=Deployment.State.ACTIVE)
        .select_related("version")
        .order_by("-weight")
    ]


def _serving(endpoint):
    """Who sees a change of the split: the replicas serving now, and the clients behind them."""
    rows = [row for row in endpoint_replicas(endpoint) if row.state == "serving"]
    if not rows:
        return [
            f"Every client of {endpoint.name}; no berth-serve replica has reported in the last "
            f"{settings.BERTH_REPLICA_SILENT_SECONDS} s, so none is known to pick it up now."
        ]
    hosts = ", ".join(sorted({row.replica.host or row.replica.instance[:8] for row in rows}))
    return [
        f"Every client of {endpoint.name}: its {len(rows)} serving replica(s) ({hosts}) switch within a few "
        "seconds (their next spec poll); requests in flight finish on the version they started on."
    ]


def deploy_impact(endpoint, version, *, apply_serving_profile=False):
    """Deploying or promoting ``version`` to 100 % of the traffic (and applying its serving
    profile's batching)."""
    current = _current_split(endpoint)
    leaving = [(v, w) for v, w in current if v != version.version]
    changes = [f"{endpoint.name} sends 100 % of its traffic to v{version.version} (now: {_split_text(current)})."]
    if leaving:
        changes.append("Stop serving: " + ", ".join(f"v{v} (now {w} %)" for v, w in leaving) + ".")
    if apply_serving_profile:
        changes.append(
            f"Dynamic batching and inference threads are set from v{version.version}'s newest serving profile on "
            f"{endpoint.target.slug} (now: {batching_text(endpoint)})."
        )
    undo = [f"Roll back on this page: it restores the current split ({_split_text(current)}) as a new generation."]
    if apply_serving_profile:
        undo.append(
            f"Rolling back leaves batching as it is: set it back to {_batching_undo(endpoint)} under Dynamic batching."
        )
    if not current:
        undo = ["Nothing serves now, so there is nothing to roll back to; deploy another version to replace it."]
    return Impact(
        title=f"Send all of {endpoint.name}'s traffic to v{version.version}?",
        changes=changes,
        affected=_serving(endpoint),
        undo=undo,
        confirm=f"Yes, send 100 % to v{version.version}",
    )


def rollback_impact(endpoint):
    """Rolling back to the previous generation's split (None when there is none)."""
    current = _current_split(endpoint)
    current_generation = (
        Deployment.objects.filter(endpoint=endpoint, state=Deployment.State.ACTIVE)
        .values_list("generation", flat=True)
        .first()
    )
    previous = (
        Deployment.objects.filter(endpoint=endpoint, generation__lt=current_generation or 0)
        .order_by("-generation")
        .values_list("generation", flat=True)
        .first()
    )
    if previous is None:
        return None
    split = [
        (d.version.version, d.weight)
        for d in Deployment.objects.filter(endpoint=endpoint, generation=previous)
        .select_related("version")
        .order_by("-weight")
    ]
    return Impact(
        title=f"Roll {endpoint.name} back to generation {previous}?",
        changes=[
            f"The traffic split goes from {_split_text(current)} back to {_split_text(split)} "
            f"(generation {previous}), written as a new generation."
        ],
        affected=_serving(endpoint),
        undo=[f"Roll back again: that returns to the current split ({_split_text(current)})."],
        confirm="Yes, roll back",
    )


def token_impact(endpoint):
    """Making a new endpoint token."""
    grace = settings.BERTH_TOKEN_GRACE_MINUTES
    rows = endpoint_replicas(endpoint)
    live = [row for row in rows if row.state != "refused"]
    names = ", ".join(f"{row.replica.host or '?'} ({row.replica.instance[:8]})" for row in live) or "none reported"
    changes = [f"A new token replaces {endpoint.token_prefix}…; it is shown once, on the next page."]
    if grace:
        until = timezone.now() + timedelta(minutes=grace)
        changes.append(
            f"The current token keeps working for {grace} minutes (until {until:%H:%M} UTC), then every "
            "request with it is refused (401)."
        )
    else:
        changes.append("The current token stops working at once (BERTH_TOKEN_GRACE_MINUTES is 0).")
    if endpoint.old_token_expires and endpoint.old_token_expires > timezone.now():
        changes.append(
            f"The token before it ({endpoint.old_token_prefix}…), still in its grace period, stops working at once."
        )
    return Impact(
        title=f"Make a new token for {endpoint.name}?",
        changes=changes,
        affected=[
            f"Every berth-serve replica of {endpoint.name} ({len(live)} reporting: {names}) and any external "
            "server posting telemetry with the current token. Restart each with the new token "
            "(--token-file or BERTH_ENDPOINT_TOKEN) before the grace period ends, or it keeps serving its last "
            "spec but its telemetry and spec updates are refused."
        ],
        undo=[
            "A token cannot be brought back (Berth keeps only hashes). Within the grace period nothing is lost: "
            "restart the replicas with the new token. If the new token is lost, make another."
        ],
        confirm="Yes, make a new token",
    )


def rule_delete_impact(rule):
    """Deleting an alert rule (its alerts and notifications go with it)."""
    firing = Alert.objects.filter(rule=rule, state=Alert.State.FIRING).count()
    total = Alert.objects.filter(rule=rule).count()
    recipients = [x for x in [rule.webhook_url] + [e.strip() for e in rule.emails.split(",")] if x]
    changes = [f'The rule "{rule.describe()}" on {rule.endpoint.name} is no longer evaluated.']
    changes.append(
        f"Its {total} alert(s) ({firing} firing now) and their notification history are deleted with it."
        if total
        else "It has no alerts yet; nothing else is deleted."
    )
    return Impact(
        title=f"Delete this alert rule of {rule.endpoint.name}?",
        changes=changes,
        affected=[
            (
                "Its recipients (" + ", ".join(recipients) + ") get no further notification, not even a "
                "resolution for a firing alert."
            )
            if recipients
            else "It notifies no one; on-call loses its alerts on the Alerts page."
        ],
        undo=[
            "Create the rule again with the same settings (metric "
            f"{rule.get_metric_display()}, threshold {rule.threshold if rule.threshold is not None else 'none'}, "
            f"window {rule.window_minutes} min, at least {rule.min_requests} requests); its past alerts are not "
            "restored. To stop notifications for a while instead, silence it."
        ],
        confirm="Yes, delete the rule",
    )


def batching_text(endpoint):
    """The endpoint's batching and threads in words (for its confirmations and messages)."""
    return _batching_text(endpoint.max_batch_size, endpoint.max_queue_delay_us, endpoint.inference_threads)


def _batching_text(max_batch_size, max_queue_delay_us, threads):
    if max_batch_size > 1:
        text = f"batches of up to {max_batch_size} rows, waiting at most {max_queue_delay_us} µs"
    else:
        text = "off (every request runs on its own)"
    return text + (
        f", {threads} inference thread{'s' if threads != 1 else ''}"
        if threads
        else ", berth-serve's own number of inference threads (--threads)"
    )


def _batching_undo(endpoint):
    threads = endpoint.inference_threads
    return f"max batch size {endpoint.max_batch_size}, max queue delay {endpoint.max_queue_delay_us} µs, " + (
        f"inference threads {threads}" if threads else "inference threads empty"
    )


def serving_profile_impact(endpoint, profile):
    """Applying a serving profile's recommended batching (monitoring.selectors.serving_profile_for)."""
    best, version = profile["recommended"], profile["version"]
    becomes = _batching_text(best["max_batch_size"], best["max_queue_delay_us"], best["threads"])
    changes = [
        f"Dynamic batching on {endpoint.name} becomes {becomes} (now: {batching_text(endpoint)}).",
        f"As the serving profile of v{version.version} on {profile['target'].slug} (job {profile['job'].pk}) measured it: "
        f"{best['throughput']:,.0f} req/s at concurrency {best['concurrency']}, p99 {best['p99_ms']:.2f} ms "
        f"(budget {profile['budget_ms']:g} ms).",
        "Each berth-serve worker process resizes its inference thread pool when it picks up the spec "
        "(start it with --intra-op-threads 1, the default, as the profile measured).",
    ]
    affected = _serving(endpoint)
    if not profile.get("serving"):
        affected.append(
            f"v{version.version} does not serve on {endpoint.name} now: the versions serving get these settings too."
        )
    return Impact(
        title=f"Apply the serving profile of v{version.version} to {endpoint.name}?",
        changes=changes,
        affected=affected,
        undo=[f"Set Dynamic batching back on this page: {_batching_undo(endpoint)}."],
        confirm="Yes, apply",
    )
