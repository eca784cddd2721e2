"""Raw-event ingestion rate through the telemetry API, against one ORM insert per event.

An external server that cannot aggregate POSTs raw events (DESIGN §4) to
``/api/v1/telemetry/`` with its endpoint's Bearer token, 1,000 events per request. The
requests go in-process through Django's full stack (django.test.Client: middleware, DRF
authentication, JSON parsing, validation, binning on the reference edges, the latency sketch,
the idempotency row and the minute windows, on PostgreSQL in a throw-away database). The
events are realistic: two versions (90/10 canary split), lognormal latency, ~5 % errors of
three kinds, five numeric features binned on 10 reference edges plus a 10-class prediction,
timestamps 15 ms apart (a few minutes in all), no flush_id (the content is hashed instead).

The baseline is the naive design: a table of raw events, one ``RawEvent.objects.create(...)``
(one INSERT, autocommit) per event, fed the same events already parsed (no HTTP, no JSON).
PostgreSQL runs as configured (synchronous_commit on by default), so each autocommitted
INSERT waits for its WAL flush; an informational second baseline does the same INSERTs in
one transaction per batch, to show how much of the ratio is commit latency. All sides take
the same batches alternately, batch by batch, in the same run; each side warms up on a
separate endpoint first. Afterwards the stored windows must hold exactly as
many requests (and errors) as events were sent.

    .venv/bin/python bench/ingest.py [--events 20000]   # DATABASE_URL defaults to the local PostgreSQL
"""

import argparse
import json
import sys
import time
from contextlib import nullcontext
from datetime import datetime, timedelta, timezone as dt_timezone

import djangobench
import numpy as np

djangobench.configure("berth_bench_ingest")

from django.db import connection, models, transaction  # noqa: E402
from django.test import Client  # noqa: E402

GOAL_RATIO = 20
BATCH = 1000
SEED = 20240611
NUMERIC_FEATURES = [f"f{i}" for i in range(5)]
CLASSES = 10
ERROR_KINDS = ("inference_error", "invalid_input", "timeout")


class RawEvent(models.Model):
    """The naive design's table: one row per event."""

    endpoint = models.ForeignKey("monitoring.Endpoint", on_delete=models.CASCADE, db_constraint=False)
    version = models.ForeignKey("registry.ModelVersion", on_delete=models.CASCADE, db_constraint=False)
    ts = models.DateTimeField()
    latency_ms = models.FloatField()
    ok = models.BooleanField()
    error_kind = models.CharField(max_length=50, blank=True)
    features = models.JSONField(default=dict)

    class Meta:
        app_label = "monitoring"
        db_table = "bench_rawevent"
        indexes = [models.Index(fields=["endpoint", "ts"])]


def setup_endpoints():
    """Model ``bench`` with versions 1 and 2 (reference profiles for every feature), the
    endpoint ``bench-prod`` (90/10) and ``bench-warmup``; returns their tokens and versions."""
    from monitoring import services
    from registry.models import Dataset, HardwareTarget, Model, ReferenceProfile

    rng = np.random.default_rng(SEED)
    model = Model.objects.create(name="bench", task="classification")
    target = HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})[0]
    versions = djangobench.ready_versions(model, 2)
    dataset = Dataset.objects.create(
        model=model, name="ref", kind="reference", file="ref.npz", sha256="0" * 64, size_bytes=1, rows=10_000, arrays={}
    )
    for version in versions:
        for name in NUMERIC_FEATURES:
            edges = np.quantile(rng.normal(0, 1, 10_000), np.linspace(0.1, 0.9, 9))
            edges = sorted(set(np.round(np.concatenate([edges, [2.5]]), 6).tolist()))
            ReferenceProfile.objects.create(
                version=version,
                dataset=dataset,
                name=name,
                kind="column",
                tensor="x",
                column=int(name[1:]),
                edges=edges,
                counts=[1000] * (len(edges) + 1),
            )
        ReferenceProfile.objects.create(
            version=version,
            dataset=dataset,
            name="prediction",
            kind="class",
            tensor="probs",
            classes=CLASSES,
            counts=[1000] * CLASSES,
        )
    tokens = {}
    for name in ("bench-prod", "bench-warmup"):
        endpoint, tokens[name] = services.endpoint_create(name=name, model=model, target=target)
        services.deploy(endpoint=endpoint, version=versions[0], weight=100)
        services.deploy(endpoint=endpoint, version=versions[1], weight=10)
    return tokens, {v.version: v for v in versions}


def make_events(count, start, seed):
    """``count`` realistic raw events, 15 ms apart from ``start``."""
    rng = np.random.default_rng(seed)
    latency = rng.lognormal(mean=np.log(4.0), sigma=0.5, size=count)
    failed = rng.random(count) < 0.05
    kinds = rng.integers(0, len(ERROR_KINDS), count)
    canary = rng.random(count) < 0.10
    values = rng.normal(0, 1, (count, len(NUMERIC_FEATURES)))
    predictions = rng.integers(0, CLASSES, count)
    events = []
    for i in range(count):
        moment = start + timedelta(milliseconds=15 * i)
        features = {name: round(float(values[i, j]), 5) for j, name in enumerate(NUMERIC_FEATURES)}
        features["prediction"] = int(predictions[i])
        events.append(
            {
                "ts": moment.isoformat().replace("+00:00", "Z"),
                "version": "2" if canary[i] else "1",
                "latency_ms": round(float(latency[i]), 4),
                "ok": not failed[i],
                "error_kind": ERROR_KINDS[kinds[i]] if failed[i] else None,
                "features": features,
            }
        )
    return events


def post_batch(client, token, events):
    """Server-side seconds of one POST (the body is encoded beforehand)."""
    body = json.dumps({"events": events})
    started = time.perf_counter()
    response = client.post(
        "/api/v1/telemetry/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 202, (response.status_code, response.content[:500])
    return elapsed


def insert_naive(endpoint_id, versions, events, *, one_transaction=False):
    """Seconds to store each event with its own ORM insert (the events arrive parsed); each
    INSERT commits on its own (autocommit) unless ``one_transaction``."""
    parsed = [(versions[e["version"]], datetime.fromisoformat(e["ts"].replace("Z", "+00:00")), e) for e in events]
    started = time.perf_counter()
    with transaction.atomic() if one_transaction else nullcontext():
        for version, moment, event in parsed:
            RawEvent.objects.create(
                endpoint_id=endpoint_id,
                version=version,
                ts=moment,
                latency_ms=event["latency_ms"],
                ok=event["ok"],
                error_kind=event["error_kind"] or "",
                features=event["features"],
            )
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="events per side (a multiple of 1,000)")
    args = parser.parse_args()
    total = args.events - args.events % BATCH
    with djangobench.test_database() as database:
        with connection.schema_editor() as editor:
            editor.create_model(RawEvent)
        try:
            run(total, database)
        finally:
            with connection.schema_editor() as editor:
                editor.delete_model(RawEvent)


def run(total, database):
    from monitoring.models import Endpoint, MetricWindow, TelemetryFlush

    tokens, versions = setup_endpoints()
    prod = Endpoint.objects.get(name="bench-prod")
    warmup = Endpoint.objects.get(name="bench-warmup")
    now = datetime.now(dt_timezone.utc).replace(microsecond=0)
    start = now - timedelta(milliseconds=15 * total) - timedelta(minutes=1)
    events = make_events(total, start, SEED)
    batches = [events[i : i + BATCH] for i in range(0, total, BATCH)]
    print(
        f"# {connection.vendor} database {database}: {total:,} events in {len(batches)} batches of {BATCH:,}, "
        f"{events[0]['ts']} .. {events[-1]['ts']}; in-process django.test.Client",
        file=sys.stderr,
    )

    client = Client()
    for seed in (1, 2):  # warm-up, on another endpoint, not counted
        warm = make_events(BATCH, start - timedelta(minutes=30 * seed), SEED + seed)
        post_batch(client, tokens["bench-warmup"], warm)
        insert_naive(warmup.id, versions, warm)

    ours, naive, batched = [], [], []
    for batch in batches:  # alternately, so all sides see the same machine
        ours.append(post_batch(client, tokens["bench-prod"], batch))
        naive.append(insert_naive(prod.id, versions, batch))
        batched.append(insert_naive(warmup.id, versions, batch, one_transaction=True))

    ours_rate, naive_rate = total / sum(ours), total / sum(naive)
    print(
        f"ingest.events_per_second: ours={ours_rate:,.0f} baseline={naive_rate:,.0f} ratio={ours_rate / naive_rate:.1f}"
    )
    batched_rate = total / sum(batched)
    print(
        f"ingest.events_per_second_vs_one_transaction_per_batch: ours={ours_rate:,.0f} "
        f"baseline={batched_rate:,.0f} ratio={ours_rate / batched_rate:.1f} (informational: the same "
        f"{BATCH:,} INSERTs per batch, committed once, so per-commit fsync is not counted)"
    )
    ours_ms, naive_ms = 1000 * float(np.median(ours)), 1000 * float(np.median(naive))
    print(
        f"ingest.batch_ms: ours={ours_ms:.1f} baseline={naive_ms:.1f} ratio={ours_ms / naive_ms:.3f} "
        f"(median per {BATCH:,}-event batch; ours = one POST, baseline = {BATCH:,} INSERTs)"
    )

    windows = MetricWindow.objects.filter(endpoint=prod)
    stored = sum(w.requests for w in windows)
    errors = sum(w.errors for w in windows)
    sent_errors = sum(1 for e in events if not e["ok"])
    per_feature = {
        name: sum(sum(w.features.get(name, [])) for w in windows) for name in NUMERIC_FEATURES + ["prediction"]
    }
    flushes = TelemetryFlush.objects.filter(endpoint=prod).count()
    rows = RawEvent.objects.filter(endpoint=prod).count()
    counted = (
        stored == total
        and errors == sent_errors
        and set(per_feature.values()) == {total}
        and flushes == len(batches)
        and rows == total
    )
    print(
        f"ingest.stored_requests: ours={stored:,} baseline={rows:,} sent={total:,} "
        f"({windows.count()} minute windows, {flushes} flushes; errors {errors:,} of {sent_errors:,} sent; "
        f"binned per feature {min(per_feature.values()):,}..{max(per_feature.values()):,}) "
        f"{'equal' if counted else 'MISMATCH'}"
    )
    met = ours_rate / naive_rate >= GOAL_RATIO
    print(f"goal events/s >= {GOAL_RATIO} x one insert per event: {'met' if met else 'NOT met'}")
    print(f"goal stored window requests == events sent: {'met' if counted else 'NOT met'}")


if __name__ == "__main__":
    main()
