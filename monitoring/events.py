"""Raw events from servers that cannot aggregate (DESIGN §4): checked, then counted into the
same per-minute series a berth-serve flush carries, so one ingestion path stores both.

An event: {"ts": ISO time, "version": "3", "latency_ms": 4.2, "ok": true, "error_kind": null,
"features": {"x.mean": 0.41, "prediction": 7}}. Feature values are binned here on the version's
reference edges exactly as the runtime bins them (numpy.searchsorted, side="left"); a class
feature takes the class index. Features without a reference profile are ignored.
"""

import hashlib
import json
import math
import uuid
from bisect import bisect_left
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from berth.core.stats import DEFAULT_ALPHA, LogSketch
from common.errors import BerthError
from registry.models import ModelVersion, ReferenceProfile

MAX_EVENTS = 10_000
EVENTS_NAMESPACE = uuid.UUID("6f1f6a52-8d1e-4c3b-9a57-4a1d4e3b2c10")


def flush_from_events(endpoint, payload, *, check_time, body=None):
    """The flush (as telemetry_ingest stores it) that a raw-events payload amounts to.
    ``check_time(text, field)`` parses and bounds a timestamp. Raises BerthError naming the
    first bad event."""
    events = payload.get("events")
    if not isinstance(events, list) or not events:
        raise BerthError("events must be a non-empty list.", field="events")
    if len(events) > MAX_EVENTS:
        raise BerthError(f"Send at most {MAX_EVENTS:,} events per request.", field="events")
    names = {e.get("version") for e in events if isinstance(e, dict)}
    versions = {
        v.version: v
        for v in ModelVersion.objects.filter(
            model_id=endpoint.model_id, version__in=[n for n in names if isinstance(n, str)]
        )
    }
    # Per version: {feature: (is_class, edges or number of classes, number of bins)}, read once.
    binning = {}
    for profile in ReferenceProfile.objects.filter(version__in=versions.values()).only(
        "version_id", "name", "kind", "edges", "classes"
    ):
        binning.setdefault(profile.version_id, {})[profile.name] = (
            (True, profile.classes or 0, profile.classes)
            if profile.kind == ReferenceProfile.Kind.CLASS
            else (False, profile.edges, len(profile.edges) + 1)
        )
    # The time bounds check_time applies, computed once; anything outside them (or unparsable)
    # goes through check_time itself for its error.
    now = timezone.now()
    earliest, latest = now - timedelta(days=settings.BERTH_TELEMETRY_MAX_AGE_DAYS), now + timedelta(minutes=5)
    groups = {}
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise BerthError("Each event must be an object.", field=f"events.{index}")
        version = versions.get(event.get("version"))
        if version is None:
            raise BerthError(
                f"{endpoint.model.name} has no version {event.get('version')!r}.", field=f"events.{index}.version"
            )
        ts = event.get("ts")
        try:
            moment = datetime.fromisoformat(ts) if isinstance(ts, str) else None  # 3.11+: reads "Z"
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None or not earliest <= moment <= latest:
            moment = check_time(ts, f"events.{index}.ts")
        latency = event.get("latency_ms")
        if (
            latency.__class__ is not float
            and (not isinstance(latency, (int, float)) or isinstance(latency, bool))
            or not math.isfinite(latency)
            or latency < 0
        ):
            raise BerthError("latency_ms must be a finite number ≥ 0.", field=f"events.{index}.latency_ms")
        ok = event.get("ok", True)
        if ok is not True and ok is not False:
            raise BerthError("ok must be true or false.", field=f"events.{index}.ok")
        kind = event.get("error_kind")
        if kind and (not isinstance(kind, str) or len(kind) > 50):
            raise BerthError("error_kind must be a short string.", field=f"events.{index}.error_kind")
        features = event.get("features") or {}
        if not isinstance(features, dict):
            raise BerthError("features must map a feature name to a number.", field=f"events.{index}.features")
        key = (moment.replace(second=0, microsecond=0), version.id)
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "version": version,
                "start": key[0],
                "requests": 0,
                "errors": 0,
                "error_kinds": {},
                "sketch": LogSketch(),
                "features": {},
            }
        group["requests"] += 1
        if not ok:
            kind = kind or "error"
            group["errors"] += 1
            group["error_kinds"][kind] = group["error_kinds"].get(kind, 0) + 1
        group["sketch"].add(latency)
        if features:
            _bin_features(group["features"], features, binning.get(version.id, {}), f"events.{index}.features")
    # Without a flush_id, the content identifies a retried POST: the raw body when the caller
    # has it (cheap), else the events in a canonical form.
    if payload.get("flush_id"):
        try:
            flush_id = uuid.UUID(str(payload["flush_id"]))
        except ValueError as exc:
            raise BerthError(
                "flush_id must be a UUID (it makes a retried flush count once).", field="flush_id"
            ) from exc
    else:
        content = body if body is not None else json.dumps(events, sort_keys=True, default=str).encode()
        flush_id = uuid.uuid5(EVENTS_NAMESPACE, hashlib.sha256(content).hexdigest())
    series = [
        {
            "version": g["version"],
            "start": g["start"],
            "requests": g["requests"],
            "errors": g["errors"],
            "error_kinds": g["error_kinds"],
            "latency": {**g["sketch"].to_dict(), "alpha": DEFAULT_ALPHA},
            "features": g["features"],
        }
        for g in groups.values()
    ]
    return {"flush_id": flush_id, "series": series, "start": min(g["start"] for g in groups.values())}


def _bin_features(counts, values, binning, field):
    for name, value in values.items():
        spec = binning.get(name)
        if spec is None:
            continue
        if value.__class__ is not float and (not isinstance(value, (int, float)) or isinstance(value, bool)):
            raise BerthError(f"Feature {name!r} must be a number.", field=f"{field}.{name}")
        is_class, edges, size = spec
        if is_class:
            if not float(value).is_integer() or not 0 <= value < edges:
                raise BerthError(
                    f"Feature {name!r} is a class index from 0 to {(edges or 1) - 1}.", field=f"{field}.{name}"
                )
            slot = int(value)
        else:
            # NaN goes to the last bin, as numpy.searchsorted puts it.
            slot = size - 1 if value != value else bisect_left(edges, value)
        bins = counts.get(name)
        if bins is None:
            bins = counts[name] = [0] * size
        bins[slot] += 1
