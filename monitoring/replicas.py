"""The berth-serve replicas of an endpoint: which token a runtime's request carries (the current
one, or the previous one within its grace period after a rotation), what each replica last
reported about itself, and which ones were refused.

A runtime names itself on every request to the dashboard (``X-Berth-Instance: <instance id>``)
and describes itself in every telemetry flush (``replica``: instance, host, pid, runtime,
generation, versions, spec_polled, started); see README "Telemetry".
"""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from common.errors import BerthError

from . import services
from .telemetry_serializers import parse_time
from .models import Endpoint, Replica

INSTANCE_HEADER = "X-Berth-Instance"
REPLICA_FIELDS = {"instance", "host", "pid", "runtime", "generation", "versions", "spec_polled", "started"}
MAX_VERSIONS = 200
SHOWN_FOR = timedelta(days=1)  # replicas not heard from for longer are not listed


class TokenRefused(Exception):
    """A runtime's token is not (or no longer) valid; the message says why and what to do."""


def runtime_authenticate(*, token, instance="", now=None):
    """``(endpoint, "current" | "old")`` for a runtime's bearer token (bytes or str); the old
    token counts only within its grace period. Raises TokenRefused otherwise; where the request
    names a replica that was using this very token, its refusal is recorded (the endpoint page
    shows it as refused)."""
    now = now or timezone.now()
    token = token.decode("latin-1") if isinstance(token, bytes) else token
    digest = hashlib.sha256(token.encode("latin-1", "replace")).hexdigest()
    endpoint = (
        Endpoint.objects.select_related("model", "target")
        .filter(Q(token_hash=digest) | Q(old_token_hash=digest))
        .first()
    )
    if endpoint is not None and hmac.compare_digest(endpoint.token_hash, digest):
        return endpoint, Replica.Token.CURRENT
    if endpoint is not None and endpoint.old_token_expires and now < endpoint.old_token_expires:
        return endpoint, Replica.Token.OLD
    if endpoint is not None:
        reason = (
            f"its token {token[:8]}… was replaced on {endpoint.token_rotated:%Y-%m-%d %H:%M:%S} UTC and its "
            f"grace period ended {endpoint.old_token_expires:%H:%M:%S} UTC"
        )
    else:
        reason = f"its token {token[:8]}… is not this endpoint's (it was regenerated)"
    _record_refusal(instance, token[:8], reason, now)
    if endpoint is not None:
        raise TokenRefused(
            f"This endpoint token was replaced on {endpoint.token_rotated:%Y-%m-%d %H:%M} UTC and its "
            "grace period is over; restart berth-serve with the new token."
        )
    raise TokenRefused("This endpoint token is not valid (it may have been regenerated).")


def _record_refusal(instance, prefix, reason, now):
    """Mark the replica refused, only where the refused token is the one it was seen with (so a
    stranger knowing an instance id cannot mark it)."""
    if not instance or not prefix:
        return
    Replica.objects.filter(instance=str(instance)[:64], token_prefix=prefix).update(
        refused=now, refused_reason=reason[:300]
    )


def check_report(report, field="replica"):
    """The ``replica`` object of a telemetry flush, checked (None when absent); BerthError
    naming the field otherwise. Nothing is written here."""
    if report is None:
        return None
    if (
        not isinstance(report, dict)
        or not isinstance(report.get("instance"), str)
        or not 8 <= len(report["instance"]) <= 64
    ):
        raise BerthError("replica must be an object with an instance id (8 to 64 characters).", field=field)
    unknown = set(report) - REPLICA_FIELDS
    if unknown:
        raise BerthError(f"replica has unknown fields: {', '.join(sorted(unknown))}.", field=field)
    checked = {"instance": report["instance"]}
    for name, limit in (("host", 255), ("runtime", 40)):
        value = report.get(name, "")
        if not isinstance(value, str) or len(value) > limit:
            raise BerthError(f"{name} must be text of at most {limit} characters.", field=f"{field}.{name}")
        checked[name] = value
    for name in ("pid", "generation"):
        value = report.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise BerthError(f"{name} must be a whole number ≥ 0.", field=f"{field}.{name}")
        checked[name] = value
    versions = report.get("versions", [])
    if (
        not isinstance(versions, list)
        or len(versions) > MAX_VERSIONS
        or not all(isinstance(v, str) and len(v) <= 128 for v in versions)
    ):
        raise BerthError("versions must be a list of version names.", field=f"{field}.versions")
    checked["versions"] = versions
    for name in ("spec_polled", "started"):
        value = report.get(name)
        checked[name] = parse_time(value, f"{field}.{name}") if value is not None else None
    return checked


def telemetry_receive(*, endpoint, payload, body=None, token=Replica.Token.CURRENT, token_prefix=""):
    """A runtime's telemetry POST: the flush counted (services.telemetry_ingest) and the replica
    it describes recorded as seen. Returns ``(accepted, duplicate)``; BerthError (400) for
    anything malformed, before writing anything."""
    report = check_report(payload.get("replica")) if isinstance(payload, dict) else None
    accepted, duplicate = services.telemetry_ingest(endpoint=endpoint, payload=payload, body=body)
    if report is not None:
        replica_seen(endpoint=endpoint, report=report, token=token, token_prefix=token_prefix)
    return accepted, duplicate


def replica_seen(*, endpoint, report, token, token_prefix, now=None):
    """Record what a replica reported (``report`` from check_report) and which token it used."""
    now = now or timezone.now()
    values = {
        "host": report["host"],
        "pid": report["pid"],
        "runtime_version": report["runtime"],
        "generation": report["generation"],
        "versions": report["versions"],
        "spec_polled": report["spec_polled"],
        "started": report["started"],
        "token": token,
        "token_prefix": token_prefix,
        "last_seen": now,
    }
    replica, _ = Replica.objects.update_or_create(endpoint=endpoint, instance=report["instance"], defaults=values)
    return replica


@dataclass
class ReplicaRow:
    replica: Replica
    state: str  # "serving", "silent" or "refused"
    silent_seconds: float
    old_token: bool  # still uses the previous token (in its grace period)


def endpoint_replicas(endpoint, *, now=None):
    """The replicas heard from in the last day, newest first, each with its state: refused (the
    dashboard refused its token since it last reported), silent (no report for
    BERTH_REPLICA_SILENT_SECONDS) or serving."""
    now = now or timezone.now()
    rows = []
    grace = bool(endpoint.old_token_expires and now < endpoint.old_token_expires)
    for replica in Replica.objects.filter(endpoint=endpoint, last_seen__gte=now - SHOWN_FOR).order_by("-last_seen"):
        silent = (now - replica.last_seen).total_seconds()
        if replica.refused and replica.refused >= replica.last_seen:
            state = "refused"
        elif silent > settings.BERTH_REPLICA_SILENT_SECONDS:
            state = "silent"
        else:
            state = "serving"
        old = replica.token == Replica.Token.OLD and replica.token_prefix == endpoint.old_token_prefix
        rows.append(ReplicaRow(replica, state, silent, old and grace and state != "refused"))
    return rows


def token_grace(endpoint, *, now=None):
    """While the previous token is in its grace period: {"prefix", "expires", "seconds_left"}."""
    now = now or timezone.now()
    if not endpoint.old_token_expires or now >= endpoint.old_token_expires:
        return None
    return {
        "prefix": endpoint.old_token_prefix,
        "expires": endpoint.old_token_expires,
        "seconds_left": (endpoint.old_token_expires - now).total_seconds(),
    }
