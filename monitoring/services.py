"""Endpoints, deployments and telemetry: every write goes through a function here.

A deployment change writes a whole new generation of Deployment rows (the new traffic split)
and retires the previous one, in one transaction with the endpoint row locked, so the active
weights always sum to 100 and a rollback is "make the previous generation current again".
"""

import hashlib
import math
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from berth.core.stats import merge_sketches
from common import audit
from common.api import validated
from common.errors import BerthError, Conflict, NotFound
from common.serializer_fields import holds_nul
from jobs import selectors as job_selectors
from jobs import services as job_services
from registry.models import ModelVersion

from . import events
from .models import Deployment, Endpoint, MetricWindow, TelemetryFlush
from .telemetry_serializers import TelemetryFlushSerializer, telemetry_time


def _hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def token_hash(token):
    """What Berth stores of an endpoint token (Endpoint.token_hash)."""
    return _hash(token)


def _new_token():
    """A fresh token (its hash and prefix). Never one starting with "-": a command line such as
    ``berth-serve --token <token>`` would read it as an option."""
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):
        token = secrets.token_urlsafe(32)
    return token, _hash(token), token[:8]


# --- endpoints ---------------------------------------------------------------------------------


def endpoint_create(*, name, model, target, description="", scrape_url="", created_by=None):
    """Create an endpoint; returns ``(endpoint, token)``. The token is shown this once: only its
    hash is stored. ``scrape_url``: the Prometheus /metrics URL of an external Triton or MLServer
    server to read instead of receiving telemetry (see monitoring/scrape.py)."""
    from registry.services.base import full_clean

    if Endpoint.objects.filter(name=name).exists():
        raise Conflict(f"An endpoint named {name!r} already exists.", field="name")
    token, token_hash, prefix = _new_token()
    endpoint = Endpoint(
        name=name,
        model=model,
        target=target,
        description=description,
        scrape_url=scrape_url,
        token_hash=token_hash,
        token_prefix=prefix,
        token_rotated=timezone.now(),
        created_by=created_by,
    )
    full_clean(endpoint, exclude=["created_by"])
    if scrape_url and urlsplit(scrape_url).scheme not in ("http", "https"):
        raise BerthError(
            "scrape_url must be an http:// or https:// URL, e.g. http://triton:8002/metrics.", field="scrape_url"
        )
    try:
        with transaction.atomic():
            endpoint.save()
            audit.record(
                audit.Action.ENDPOINT_CREATE,
                endpoint.name,
                user=created_by,
                details={"model": model.name, "target": target.slug, "scrape_url": endpoint.scrape_url},
            )
    except IntegrityError as exc:
        raise Conflict(f"An endpoint named {name!r} already exists.", field="name") from exc
    return endpoint, token


UNCHANGED = object()


def endpoint_set_batching(
    *,
    endpoint,
    max_batch_size,
    max_queue_delay_us,
    inference_threads=UNCHANGED,
    user=None,
    serving_profile_job=None,
):
    """Dynamic batching for the endpoint's runtimes (they pick it up with the spec): requests wait
    at most ``max_queue_delay_us`` to run in batches of up to ``max_batch_size`` rows (1: off),
    on ``inference_threads`` threads per worker process (None: berth-serve's --threads; left as
    it is when not given). ``serving_profile_job``: the serve_profile job whose recommendation
    this is (kept in the audit)."""
    from registry.services.base import full_clean

    fields = {"max_batch_size": max_batch_size, "max_queue_delay_us": max_queue_delay_us}
    if inference_threads is not UNCHANGED:
        fields["inference_threads"] = inference_threads
    for name, value in fields.items():
        setattr(endpoint, name, value)
    full_clean(endpoint, exclude=["created_by"])
    with transaction.atomic():
        Endpoint.objects.filter(pk=endpoint.pk).update(**fields)
        audit.record(
            audit.Action.ENDPOINT_BATCHING,
            endpoint.name,
            user=user,
            details={
                **fields,
                **({"serving_profile_job": serving_profile_job.pk} if serving_profile_job else {}),
            },
        )
    return endpoint


def endpoint_apply_serving_profile(*, endpoint, profile, user=None):
    """Set the endpoint's batching and inference threads to what ``profile`` (a serving profile
    summary with a recommendation) measured best."""
    best = profile["recommended"]
    return endpoint_set_batching(
        endpoint=endpoint,
        max_batch_size=best["max_batch_size"],
        max_queue_delay_us=best["max_queue_delay_us"],
        inference_threads=best["threads"],
        user=user,
        serving_profile_job=profile["job"],
    )


def endpoint_rotate_token(*, endpoint, user=None, grace_minutes=None):
    """A new token for the endpoint's runtimes; returns it (shown once). The old token keeps
    working for ``grace_minutes`` (default BERTH_TOKEN_GRACE_MINUTES; 0: it stops at once), so
    running replicas can be restarted with the new one. A token older than that (the one before
    a previous rotation) stops at once."""
    grace = settings.BERTH_TOKEN_GRACE_MINUTES if grace_minutes is None else grace_minutes
    if not isinstance(grace, int) or isinstance(grace, bool) or not 0 <= grace <= 7 * 24 * 60:
        raise BerthError(
            "grace_minutes must be a whole number of minutes from 0 to 10080 (7 days).", field="grace_minutes"
        )
    token, token_hash, prefix = _new_token()
    now = timezone.now()
    with transaction.atomic():
        current = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        old = (
            {
                "old_token_hash": current.token_hash,
                "old_token_prefix": current.token_prefix,
                "old_token_expires": now + timedelta(minutes=grace),
            }
            if grace
            else {"old_token_hash": "", "old_token_prefix": "", "old_token_expires": None}
        )
        Endpoint.objects.filter(pk=endpoint.pk).update(
            token_hash=token_hash, token_prefix=prefix, token_rotated=now, **old
        )
        audit.record(
            audit.Action.ENDPOINT_TOKEN,
            endpoint.name,
            user=user,
            details={"prefix": prefix, "old_prefix": current.token_prefix, "grace_minutes": grace},
        )
    endpoint.token_hash, endpoint.token_prefix, endpoint.token_rotated = token_hash, prefix, now
    for name, value in old.items():
        setattr(endpoint, name, value)
    return token


# --- deployments -------------------------------------------------------------------------------


def current_generation(endpoint):
    return list(
        Deployment.objects.filter(endpoint=endpoint, state=Deployment.State.ACTIVE)
        .select_related("version")
        .order_by("-weight", "version_id")
    )


def deploy(*, endpoint, version, weight=100, user=None, apply_serving_profile=False):
    """Send ``weight`` % of the endpoint's traffic to ``version``; the versions already serving
    share the rest in their current proportions. 100 replaces them all (a promotion).
    ``apply_serving_profile``: also set the endpoint's batching and inference threads to what the
    newest serving profile of ``version`` on the endpoint's target recommends, in the same
    transaction; refused (400, nothing changed) when there is none."""
    if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 100:
        raise BerthError("weight is a whole percentage from 1 to 100.", field="weight")
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        _check_deployable(endpoint, version)
        profile = _serving_profile_to_apply(endpoint, version) if apply_serving_profile else None
        others = [d for d in current_generation(endpoint) if d.version_id != version.pk]
        if weight < 100 and not others:
            raise BerthError(
                f"Nothing else is deployed on {endpoint.name}: the first version takes 100 % of the "
                "traffic. Deploy it with weight 100, then add a canary.",
                field="weight",
            )
        shares = _split(100 - weight, [d.weight for d in others])
        split = [(version, weight)] + [(d.version, share) for d, share in zip(others, shares) if share > 0]
        action = Deployment.Action.PROMOTE if weight == 100 and others else Deployment.Action.DEPLOY
        generation = _new_generation(endpoint, split, action, user)
        if profile is not None:
            endpoint_apply_serving_profile(endpoint=endpoint, profile=profile, user=user)
        return generation


def _serving_profile_to_apply(endpoint, version):
    """The newest serving profile of ``version`` on the endpoint's target that recommends a
    configuration, or a BerthError saying there is none."""
    profile = job_selectors.serving_profiles(versions=[version], targets=[endpoint.target]).get(
        (version.pk, endpoint.target_id)
    )
    if profile is None or profile["recommended"] is None:
        raise BerthError(
            f"{version.version} has no serving profile on {endpoint.target.slug} that recommends a configuration"
            + (" (none kept p99 within its budget)" if profile else "")
            + ": run one from its version page, or deploy without applying one.",
            field="apply_serving_profile",
        )
    return profile


def set_weights(*, endpoint, weights, user=None):
    """Set the whole split at once: ``weights`` is [(version, weight)], summing to 100; a
    version left out (or at 0) stops serving."""
    split = [(version, weight) for version, weight in weights if weight]
    if any(isinstance(w, bool) or not isinstance(w, int) or not 0 <= w <= 100 for _, w in weights):
        raise BerthError("Weights are whole percentages from 0 to 100.", field="weights")
    if sum(w for _, w in split) != 100:
        raise BerthError(f"The weights add up to {sum(w for _, w in split)}; they must add up to 100.", field="weights")
    if len({v.pk for v, _ in split}) != len(split):
        raise BerthError("A version appears twice in the weights.", field="weights")
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        for version, _ in split:
            _check_deployable(endpoint, version)
        return _new_generation(endpoint, split, Deployment.Action.WEIGHTS, user)


def rollback(*, endpoint, user=None):
    """Make the split before the current one current again (as a new generation)."""
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        current = current_generation(endpoint)
        if not current:
            raise Conflict(f"Nothing is deployed on {endpoint.name}; there is nothing to roll back.")
        previous = (
            Deployment.objects.filter(endpoint=endpoint, generation__lt=current[0].generation)
            .order_by("-generation")
            .values_list("generation", flat=True)
            .first()
        )
        if previous is None:
            raise Conflict(f"{endpoint.name} has had only one deployment; there is no earlier one to roll back to.")
        rows = Deployment.objects.filter(endpoint=endpoint, generation=previous).select_related("version")
        return _new_generation(endpoint, [(d.version, d.weight) for d in rows], Deployment.Action.ROLLBACK, user)


def _check_deployable(endpoint, version):
    if version.model_id != endpoint.model_id:
        raise BerthError(
            f"{endpoint.name} serves {endpoint.model.name}; {version.ref} is another model's version.", field="version"
        )
    if version.status != ModelVersion.Status.READY:
        raise Conflict(f"{version.ref} is {version.status}; only ready versions can be deployed.", field="version")
    if version.format != ModelVersion.Format.ONNX:
        raise Conflict(
            f"{version.ref} is {version.get_format_display()}; the serving runtime runs ONNX. Convert it first.",
            field="version",
        )


def _split(total, weights):
    """``total`` shared in proportion to ``weights``, in whole numbers (largest remainder)."""
    if not weights:
        return []
    base = sum(weights)
    exact = [total * w / base for w in weights]
    shares = [math.floor(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - shares[i], reverse=True)[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _new_generation(endpoint, split, action, user):
    now = timezone.now()
    generation = (Deployment.objects.filter(endpoint=endpoint).aggregate(top=Max("generation"))["top"] or 0) + 1
    Deployment.objects.filter(endpoint=endpoint, state=Deployment.State.ACTIVE).update(
        state=Deployment.State.RETIRED, retired=now
    )
    rows = Deployment.objects.bulk_create(
        [
            Deployment(
                endpoint=endpoint,
                version=version,
                weight=weight,
                generation=generation,
                action=action,
                deployed_by=user,
            )
            for version, weight in split
        ]
    )
    audit.record(
        audit.Action.ROLLBACK if action == Deployment.Action.ROLLBACK else audit.Action.DEPLOY,
        endpoint.name,
        user=user,
        details={"generation": generation, "change": action, "split": {v.version: w for v, w in split}},
    )
    job_services.profiles_queue_missing(versions=[version for version, _ in split], user=user)
    return rows


# --- telemetry ---------------------------------------------------------------------------------


def telemetry_ingest(*, endpoint, payload, body=None):
    """Count one telemetry flush (a runtime's series, or an external server's raw events) into
    the endpoint's minute windows. Returns ``(accepted, duplicate)``; a flush_id already counted
    is not counted again. Raises BerthError (400) or, for a runtime's flush, the 400
    ValidationError of TelemetryFlushSerializer for anything malformed, before writing anything."""
    # JSON can only carry a NUL as \u0000, so the raw body (when there is one) answers quickly.
    if (b"\\u0000" in body) if body is not None else holds_nul(payload):
        raise BerthError("Telemetry must not hold NUL characters (\\u0000): PostgreSQL cannot store them.")
    _check_endpoint_name(endpoint, payload)
    if isinstance(payload, dict) and "events" in payload:
        flush = events.flush_from_events(endpoint, payload, check_time=telemetry_time, body=body)
        flush.update(dropped=0, source=MetricWindow.Source.EVENTS)
    else:
        flush = validated(TelemetryFlushSerializer, payload, context={"endpoint": endpoint})
        flush["source"] = MetricWindow.Source.RUNTIME
    minute = flush["start"].replace(second=0, microsecond=0)
    with transaction.atomic():
        try:
            with transaction.atomic():
                TelemetryFlush.objects.create(
                    endpoint=endpoint, flush_id=flush["flush_id"], start=flush["start"], dropped=flush["dropped"]
                )
        except IntegrityError:
            return False, True
        rolled = lock_rollups(endpoint)
        for series in flush["series"]:
            window_add(
                endpoint=endpoint,
                version=series["version"],
                start=series.get("start", minute),
                rolled=rolled,
                requests=series["requests"],
                errors=series["errors"],
                error_kinds=series["error_kinds"],
                latency=series["latency"],
                features=series["features"],
                source=flush["source"],
                batch_sizes=series.get("batch_sizes"),
                inference_latency=series.get("inference_latency"),
                request_latency=series.get("request_latency"),
            )
    return True, False


def integrity_report(*, endpoint, version, expected_sha256, actual_sha256, where, detail="", host=""):
    """A serving runtime found an artifact whose bytes do not match its sha256 (and refused to load
    it): write it to the audit log, where admins see it beside the workers' integrity failures."""
    from .selectors import deployed_version

    found = deployed_version(endpoint, version)
    return audit.record(
        audit.Action.INTEGRITY,
        found.ref,
        details={
            "endpoint": endpoint.name,
            "host": host,
            "where": where,
            "expected_sha256": expected_sha256,
            "actual_sha256": actual_sha256,
            "registry_sha256": found.sha256,
            "error": detail,
        },
    )


def lock_rollups(endpoint):
    """Lock the endpoint row (the roll-up takes the same lock) and return how far each
    resolution is rolled up. Call inside a transaction."""
    return Endpoint.objects.select_for_update().values_list("rollups", flat=True).get(pk=endpoint.pk)


def window_add(
    *,
    endpoint,
    version,
    start,
    requests,
    errors=0,
    error_kinds=None,
    latency=None,
    features=None,
    source=MetricWindow.Source.RUNTIME,
    coarse=False,
    latency_sum_ms=0.0,
    rolled=None,
    batch_sizes=None,
    inference_latency=None,
    request_latency=None,
):
    """Count into the minute window of ``version`` that holds ``start`` and into every coarser
    window already rolled up over that minute (a late flush); minutes past their retention are
    counted in the coarser windows only. Call inside a transaction. ``rolled`` is what
    lock_rollups answered for the endpoint in this transaction (taken here when not given), so
    no count falls between a roll-up and its minutes."""
    if rolled is None:
        rolled = lock_rollups(endpoint)
    minute = start.replace(second=0, microsecond=0)
    counts = {
        "requests": requests,
        "errors": errors,
        "error_kinds": error_kinds,
        "latency": latency,
        "features": features,
        "source": source,
        "coarse": coarse,
        "latency_sum_ms": latency_sum_ms,
        "batch_sizes": batch_sizes,
        "inference_latency": inference_latency,
        "request_latency": request_latency,
    }
    targets = []
    if minute >= timezone.now() - timedelta(hours=settings.BERTH_MINUTE_WINDOWS_HOURS):
        targets.append((MetricWindow.Resolution.MINUTE, minute))
    for resolution, seconds in MetricWindow.LEVELS:
        period = MetricWindow.period_start(minute, seconds)
        until = rolled.get(resolution)
        if until and period < datetime.fromisoformat(until):
            targets.append((resolution, period))
    for resolution, period in targets:
        add_to_window(endpoint=endpoint, version=version, start=period, resolution=resolution, **counts)


def add_to_window(
    *,
    endpoint,
    start,
    resolution,
    requests,
    version=None,
    version_id=None,
    errors=0,
    error_kinds=None,
    latency=None,
    features=None,
    source=MetricWindow.Source.RUNTIME,
    coarse=False,
    latency_sum_ms=0.0,
    flushes=1,
    batch_sizes=None,
    inference_latency=None,
    request_latency=None,
):
    """Add counts to one window row (made if missing)."""
    window, _ = MetricWindow.objects.select_for_update().get_or_create(
        endpoint=endpoint,
        version_id=version.pk if version is not None else version_id,
        start=start,
        resolution=resolution,
        defaults={"source": source},
    )
    window.requests += requests
    window.errors += errors
    for kind, count in (error_kinds or {}).items():
        window.error_kinds[kind] = window.error_kinds.get(kind, 0) + count
    for rows, runs in (batch_sizes or {}).items():
        window.batch_sizes[rows] = window.batch_sizes.get(rows, 0) + runs
    if latency:
        window.latency = merge_sketches(window.latency, latency)
    for rows, sketch in (inference_latency or {}).items():
        window.inference_latency[rows] = merge_sketches(window.inference_latency.get(rows), sketch)
    for encoding, by_rows in (request_latency or {}).items():
        known = window.request_latency.setdefault(encoding, {})
        for rows, sketch in by_rows.items():
            known[rows] = merge_sketches(known.get(rows), sketch)
    for name, counts in (features or {}).items():
        known = window.features.get(name)
        window.features[name] = (
            [a + b for a, b in zip(known, counts)] if known and len(known) == len(counts) else counts
        )
    window.coarse = window.coarse or coarse
    window.latency_sum_ms += latency_sum_ms
    window.flushes += flushes
    window.save()
    return window


def _check_endpoint_name(endpoint, payload):
    named = payload.get("endpoint") if isinstance(payload, dict) else None
    if named in (None, endpoint.name):
        return
    if not Endpoint.objects.filter(name=str(named)).exists():
        raise NotFound(f"There is no endpoint named {named!r}.", field="endpoint")
    raise BerthError(f"This token belongs to {endpoint.name}, not {named!r}.", field="endpoint", status=403)
