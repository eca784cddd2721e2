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

from dashboard.errors import BerthError
from registry.models import ModelVersion, ReferenceProfile

from .stats import DEFAULT_ALPHA, LogSketch

MAX_EVENTS = 10_000
EVENTS_NAMESPACE = uuid.UUID("6f1f6a52-8d1e-4c3b-9a57-4a1d4e3b2c10")


def flush_from_events(endpoint, payload, *, check_time):
    """The flush (as telemetry_ingest stores it) that a raw-events payload amounts to.
    ``check_time(text, field)`` parses and bounds a timestamp. Raises BerthError naming the
    first bad event."""
    events = payload.get("events")
    if not isinstance(events, list) or not events:
        raise BerthError("events must be a non-empty list.", field="events")
    if len(events) > MAX_EVENTS:
        raise BerthError(f"Send at most {MAX_EVENTS:,} events per request.", field="events")
    names = {e.get("version") for e in events if isinstance(e, dict)}
    versions = {v.version: v for v in ModelVersion.objects.filter(model_id=endpoint.model_id, version__in=[
        n for n in names if isinstance(n, str)])}
    profiles = {}
    for profile in ReferenceProfile.objects.filter(version__in=versions.values()).only(
            "version_id", "name", "kind", "edges", "classes"):
        profiles.setdefault(profile.version_id, {})[profile.name] = profile
    groups = {}
    for index, event in enumerate(events):
        field = f"events.{index}"
        if not isinstance(event, dict):
            raise BerthError("Each event must be an object.", field=field)
        version = versions.get(event.get("version"))
        if version is None:
            raise BerthError(f"{endpoint.model.name} has no version {event.get('version')!r}.",
                             field=f"{field}.version")
        moment = check_time(event.get("ts"), f"{field}.ts")
        latency = event.get("latency_ms")
        if not isinstance(latency, (int, float)) or isinstance(latency, bool) or not math.isfinite(latency) \
                or latency < 0:
            raise BerthError("latency_ms must be a finite number ≥ 0.", field=f"{field}.latency_ms")
        ok = event.get("ok", True)
        if not isinstance(ok, bool):
            raise BerthError("ok must be true or false.", field=f"{field}.ok")
        kind = event.get("error_kind") or "error"
        if not isinstance(kind, str) or len(kind) > 50:
            raise BerthError("error_kind must be a short string.", field=f"{field}.error_kind")
        features = event.get("features") or {}
        if not isinstance(features, dict):
            raise BerthError("features must map a feature name to a number.", field=f"{field}.features")
        minute = moment.replace(second=0, microsecond=0)
        group = groups.get((minute, version.id))
        if group is None:
            group = groups[(minute, version.id)] = {"version": version, "start": minute, "requests": 0,
                                                    "errors": 0, "error_kinds": {}, "sketch": LogSketch(),
                                                    "features": {}}
        group["requests"] += 1
        if not ok:
            group["errors"] += 1
            group["error_kinds"][kind] = group["error_kinds"].get(kind, 0) + 1
        group["sketch"].add(latency)
        _bin_features(group["features"], features, profiles.get(version.id, {}), f"{field}.features")
    flush_id = payload.get("flush_id") or uuid.uuid5(EVENTS_NAMESPACE, hashlib.sha256(
        json.dumps(events, sort_keys=True, default=str).encode()).hexdigest())
    series = [{"version": g["version"], "start": g["start"], "requests": g["requests"], "errors": g["errors"],
               "error_kinds": g["error_kinds"], "latency": {**g["sketch"].to_dict(), "alpha": DEFAULT_ALPHA},
               "features": g["features"]} for g in groups.values()]
    return {"flush_id": flush_id, "series": series, "start": min(g["start"] for g in groups.values())}


def _bin_features(counts, values, profiles, field):
    for name, value in values.items():
        profile = profiles.get(name)
        if profile is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise BerthError(f"Feature {name!r} must be a number.", field=f"{field}.{name}")
        if profile.kind == ReferenceProfile.Kind.CLASS:
            if not float(value).is_integer() or not 0 <= value < (profile.classes or 0):
                raise BerthError(f"Feature {name!r} is a class index from 0 to {(profile.classes or 1) - 1}.",
                                 field=f"{field}.{name}")
            slot, size = int(value), profile.classes
        else:
            # NaN goes to the last bin, as numpy.searchsorted puts it.
            slot = len(profile.edges) if math.isnan(value) else bisect_left(profile.edges, value)
            size = len(profile.edges) + 1
        bins = counts.setdefault(name, [0] * size)
        bins[slot] += 1
