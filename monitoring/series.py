"""What an endpoint's windows say over a time range: per version and per step, requests, errors,
latency quantiles from the merged sketches, and drift of every reference feature.

Everything is computed from the stored windows (counts, sketches, binned feature counts) in one
pass; the number of queries does not depend on the range, the number of windows or of versions.
The rows are read through an endpoint_reads.EndpointReads, which a page shares between its parts.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from django.utils import timezone

from berth.core.drift import DEFAULT_TESTS, dataset_drift, features_drift
from berth.core.stats import DEFAULT_ALPHA, add_sketch, empty_sketch, sketch_quantiles

from . import comparable
from .endpoint_reads import COUNTED_FIELDS, EndpointReads, references
from .models import MetricWindow
from .telemetry_serializers import parse_time

RANGES = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}
DEFAULT_RANGE = "1h"
STEPS = (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 24 * 3600)
MAX_POINTS = 200
QUANTILES = (0.5, 0.95, 0.99)


def choose_step(since, until):
    """The smallest step (seconds) that keeps the series within MAX_POINTS points."""
    span = (until - since).total_seconds()
    return next((step for step in STEPS if span / step <= MAX_POINTS), STEPS[-1])


def align(moment, step):
    seconds = int(moment.timestamp())
    return moment.fromtimestamp(seconds - seconds % step, tz=moment.tzinfo or timezone.UTC)


@dataclass
class Bucket:
    """Counts of one version over one step (or over a whole window of time): windows added up,
    latency sketches merged by their wire-format bucket keys (stats.add_sketch)."""

    requests: int = 0
    errors: int = 0
    error_kinds: dict = field(default_factory=dict)
    latency: dict = field(default_factory=empty_sketch)  # the merged sketch, wire format
    latency_sum_ms: float = 0.0
    coarse_requests: int = 0
    features: dict = field(default_factory=dict)  # feature -> counts
    flushes: int = 0
    batch_sizes: dict = field(default_factory=dict)  # "<rows>" -> model runs
    inference: dict = field(default_factory=dict)  # "<rows>" -> merged session.run sketch (wire format)
    # "<encoding>" -> "<rows>" -> merged sketch of the successful requests that came so (wire format)
    request: dict = field(default_factory=dict)

    def add(self, window):
        self._add(
            window.requests,
            window.errors,
            window.error_kinds,
            window.latency,
            window.features,
            window.requests if window.coarse else 0,
            window.latency_sum_ms if window.coarse else 0.0,
            window.flushes,
            window.batch_sizes or {},
            window.inference_latency or {},
            window.request_latency or {},
        )

    def merge(self, other):
        self._add(
            other.requests,
            other.errors,
            other.error_kinds,
            other.latency,
            other.features,
            other.coarse_requests,
            other.latency_sum_ms,
            other.flushes,
            other.batch_sizes,
            other.inference,
            other.request,
        )

    def _add(
        self,
        requests,
        errors,
        error_kinds,
        latency,
        features,
        coarse_requests,
        latency_sum_ms,
        flushes,
        batch_sizes,
        inference=None,
        request=None,
    ):
        for rows, runs in batch_sizes.items():
            self.batch_sizes[rows] = self.batch_sizes.get(rows, 0) + runs
        for rows, sketch in (inference or {}).items():
            add_sketch(self.inference.setdefault(rows, empty_sketch()), sketch)
        for encoding, by_rows in (request or {}).items():
            merged = self.request.setdefault(encoding, {})
            for rows, sketch in by_rows.items():
                add_sketch(merged.setdefault(rows, empty_sketch()), sketch)
        self.requests += requests
        self.errors += errors
        for kind, count in error_kinds.items():
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + count
        add_sketch(self.latency, latency)
        self.coarse_requests += coarse_requests
        self.latency_sum_ms += latency_sum_ms
        self.flushes += flushes
        for name, counts in features.items():
            known = self.features.get(name)
            if known is None or len(known) != len(counts):
                self.features[name] = list(counts)
            else:
                self.features[name] = [a + b for a, b in zip(known, counts)]

    def sketch(self):
        """The merged latency sketch in the wire format, or None when there is none."""
        if not self.latency["buckets"] and not self.latency["zero_count"]:
            return None
        return {
            "alpha": self.latency["alpha"] or DEFAULT_ALPHA,
            "buckets": dict(self.latency["buckets"]),
            "zero_count": self.latency["zero_count"],
        }

    def quantiles(self, qs=QUANTILES):
        """Quantiles of the merged sketch (None where there is none), in ms."""
        return sketch_quantiles([self.sketch()], qs)

    def summary(self, seconds):
        p50, p95, p99 = self.quantiles()
        mean = None
        if self.coarse_requests and self.latency_sum_ms:
            mean = self.latency_sum_ms / self.coarse_requests
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.errors / self.requests if self.requests else None,
            "error_percent": 100 * self.errors / self.requests if self.requests else None,
            "rps": self.requests / seconds if seconds else None,
            "error_kinds": dict(self.error_kinds),
            "p50_ms": p50,
            "p95_ms": p95,
            "p99_ms": p99,
            "mean_ms": mean,
            "coarse": bool(self.coarse_requests),
            "batch_sizes": sorted(((int(rows), runs) for rows, runs in self.batch_sizes.items())),
            "inference": self.inference_summary(),
            "request": self.request_summary(),
        }

    def inference_summary(self):
        """{rows: {runs, p50_ms, p95_ms, p99_ms}} of the session.run sketches, by batch size."""
        return _by_rows(self.inference, "runs")

    def request_summary(self):
        """{encoding: {rows: {requests, p50_ms, p95_ms, p99_ms}}} of the successful requests by how
        they came (json, binary, grpc) and their rows; {} when the runtime did not say (older
        berth-serve, raw events, scraped servers)."""
        found = {}
        for encoding, by_rows in sorted(self.request.items()):
            summary = _by_rows(by_rows, "requests")
            if summary:
                found[encoding] = summary
        return found


def _by_rows(sketches, counted):
    """{rows: {<counted>, p50_ms, p95_ms, p99_ms}} of {"<rows>": sketch}, empty sketches left out."""
    found = {}
    for rows, sketch in sorted(sketches.items(), key=lambda item: int(item[0])):
        count = sum(sketch["buckets"].values()) + sketch["zero_count"]
        if count:
            p50, p95, p99 = sketch_quantiles([sketch], QUANTILES)
            found[int(rows)] = {counted: count, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99}
    return found


def drift_of(bucket, profiles, with_js=True):
    """{feature: verdict or None} and the dataset verdict for one bucket's feature counts."""
    return drift_of_buckets([bucket], profiles, with_js=with_js)[0]


def drift_of_buckets(buckets, profiles, with_js=True):
    """drift_of for each of ``buckets`` (e.g. the steps of a series), each feature's verdicts
    computed for all buckets at once."""
    verdicts = [{} for _ in buckets]
    for name, profile in profiles.items():
        scored = [i for i, bucket in enumerate(buckets) if len(bucket.features.get(name) or ()) == len(profile.counts)]
        found = (
            features_drift(
                profile.kind,
                profile.counts,
                [buckets[i].features[name] for i in scored],
                profile.edges or None,
                with_js=with_js,
            )
            if scored
            else []
        )
        for i in range(len(buckets)):
            verdicts[i][name] = None
        for i, verdict in zip(scored, found):
            verdicts[i][name] = verdict
    return [(v, dataset_drift(v)) for v in verdicts]


MERGE_GAP = timedelta(seconds=1)  # serving periods this close are one (a new generation retires the old one)
# A rate needs this many seconds served (a step's last few seconds are too short to rate: one
# request more or less would swing it); shorter, the rate is left out.
MIN_RATE_SECONDS = 10.0


class ServedTime:
    """When each version actually served in [since, until): its periods with a share of the
    traffic (from the deployment generations), cut at the last report the endpoint's windows
    received (``reported``: no rate is claimed for time no telemetry has covered yet). A version
    with windows but no such period (pinned traffic, raw events, a scraped server) served from
    its first window on. Rates divide requests by these seconds, not by the whole range.
    ``deployments``: the endpoint's (EndpointReads.deployments)."""

    def __init__(self, deployments, since, until, windows):
        self.since, self.until = since, until
        reported = max((w.updated for w in windows), default=None)
        self.reported = min(until, reported) if reported is not None else None
        first = {}
        for window in windows:
            first.setdefault(window.version_id, window.start)
        periods = {}
        shares = (
            d for d in deployments if d.weight > 0 and d.deployed < until and (d.retired is None or d.retired > since)
        )
        for row in sorted(shares, key=lambda d: d.deployed):
            start, end = max(row.deployed, since), min(row.retired or until, until)
            if end <= start:
                continue
            merged = periods.setdefault(row.version_id, [])
            if merged and start - merged[-1][1] <= MERGE_GAP:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        for version_id, start in first.items():
            if version_id not in periods:
                periods[version_id] = [(max(start, since), until)]
        self.periods = periods

    def seconds(self, version_id, start=None, end=None):
        """Seconds ``version_id`` served within [start, end) (default: the whole range) up to the
        last report."""
        if self.reported is None:
            return 0.0
        start = start or self.since
        end = min(end or self.until, self.reported)
        return sum(max(0.0, (min(b, end) - max(a, start)).total_seconds()) for a, b in self.periods.get(version_id, ()))

    def span(self, version_id):
        """(served_from, served_until) within the range up to the last report, or (None, None)."""
        periods = [
            (a, min(b, self.reported))
            for a, b in self.periods.get(version_id, ())
            if self.reported is not None and a < self.reported
        ]
        if not periods:
            return None, None
        return periods[0][0], periods[-1][1]


def endpoint_series(endpoint, *, since, until, step=None, reads=None):
    """The monitored series of every version seen in [since, until): the metrics API's answer.
    ``reads``: an EndpointReads of ``endpoint`` to share with the page's other parts."""
    reads = reads or EndpointReads(endpoint)
    step = step or choose_step(since, until)
    since = align(since, step)
    count = max(1, int(-(-(until - since).total_seconds() // step)))
    times = [since + timedelta(seconds=step * i) for i in range(count)]
    by_version, versions = {}, {}
    windows = reads.windows(since, until, step)
    served = ServedTime(reads.deployments, since, until, windows)
    for window in windows:
        index = min(int((window.start - since).total_seconds() // step), count - 1)
        versions[window.version_id] = window.version
        by_version.setdefault(window.version_id, {}).setdefault(index, Bucket()).add(window)
    deployed = {d.version_id: d for d in reads.active()}
    for version_id, deployment in deployed.items():
        versions.setdefault(version_id, deployment.version)
        by_version.setdefault(version_id, {})
    profiles = reads.profiles(list(versions))
    measured = reads.benchmarks(list(versions))
    series = []
    for version_id, buckets in sorted(by_version.items(), key=lambda item: _natural(versions[item[0]].version)):
        points, total = [], Bucket()
        features = profiles.get(version_id, {})
        steps = [buckets.get(i) for i in range(len(times))]
        for bucket, moment in zip(steps, times):
            seconds = served.seconds(version_id, moment, moment + timedelta(seconds=step))
            if bucket is None:  # no data: a gap, not a zero
                points.append(
                    {"t": moment.isoformat(), **Bucket().summary(None), "served_seconds": seconds, "partial": False}
                )
                continue
            points.append(
                {
                    "t": moment.isoformat(),
                    **bucket.summary(seconds if seconds >= MIN_RATE_SECONDS else None),
                    "served_seconds": seconds,
                    "partial": seconds < step,
                }
            )
        drift_points = drift_of_buckets([b or Bucket() for b in steps], features, with_js=False)
        for bucket in buckets.values():
            total.merge(bucket)
        served_from, served_until = served.span(version_id)
        seconds = served.seconds(version_id)
        versus = comparable.compare(
            version=versions[version_id].version,
            target=endpoint.target.slug,
            inference=total.inference_summary(),
            request=total.request_summary(),
            measured=measured.get(version_id, {}),
        )
        rows = versus["inference"].get("batch_size")
        encoding, request_rows = versus["request"].get("encoding"), versus["request"].get("batch_size")
        for point in points:  # the p95s of what is compared, for the latency chart
            point["inference_p95_ms"] = point["inference"].get(rows, {}).get("p95_ms") if rows else None
            point["request_p95_ms"] = (
                point["request"].get(encoding, {}).get(request_rows, {}).get("p95_ms") if encoding else None
            )
        series.append(
            {
                "version": versions[version_id].version,
                "served_from": served_from and served_from.isoformat(),
                "served_until": served_until and served_until.isoformat(),
                "served_seconds": seconds,
                "requests": total.requests,
                "rps": total.requests / seconds if seconds >= MIN_RATE_SECONDS else None,
                "weight": deployed[version_id].weight if version_id in deployed else 0,
                "benchmark": versus,
                # Only a like figure: the benchmark p95 at the batch size production ran, or None.
                "benchmark_p95_ms": versus["inference"].get("benchmark_p95_ms")
                if versus["inference"]["comparable"]
                else None,
                # The end-to-end benchmark p95 in the encoding and at the rows production served most, or None.
                "request_benchmark_p95_ms": versus["request"].get("benchmark_p95_ms")
                if versus["request"]["comparable"]
                else None,
                "points": points,
                "drift": _drift_series(features, drift_points),
                "histograms": _histograms(features, total),
            }
        )
    return {
        "endpoint": endpoint.name,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "step": step,
        "reported_until": served.reported and served.reported.isoformat(),
        "versions": series,
        "deployments": deployment_events(endpoint, since, until, reads=reads),
    }


def _drift_series(profiles, drift_points):
    features = []
    for name, profile in profiles.items():
        scores = []
        for verdicts, _ in drift_points:
            verdict = verdicts.get(name)
            scores.append(
                None
                if verdict is None
                else {
                    "score": verdict["score"],
                    "effect_value": verdict["effect_value"],
                    "relative": verdict["relative"],
                    "drifted": verdict["drifted"],
                    "warn": verdict["warn"],
                }
            )
        rule = DEFAULT_TESTS[profile.kind]
        features.append(
            {
                "name": name,
                "kind": profile.kind,
                "test": rule.test,
                "threshold": rule.p_threshold,
                "effect": rule.effect,
                "effect_threshold": rule.effect_threshold,
                "points": scores,
            }
        )
    dataset = [
        None if d["share"] is None else {"share": d["share"], "drifted": d["drifted_dataset"]} for _, d in drift_points
    ]
    return {"features": features, "dataset": dataset}


def _histograms(profiles, total):
    """Reference vs current counts over the whole range, per feature."""
    return {
        name: {
            "kind": profile.kind,
            "edges": profile.edges,
            "reference": profile.counts,
            "current": total.features.get(name),
        }
        for name, profile in profiles.items()
    }


def deployment_events(endpoint, since, until, reads=None):
    """Every change of the traffic split in the range, to mark on the charts."""
    reads = reads or EndpointReads(endpoint)
    events = {}
    in_range = (d for d in reads.deployments if since <= d.deployed < until)
    for row in sorted(in_range, key=lambda d: (d.generation, -d.weight, d.version_id)):
        event = events.setdefault(
            row.generation,
            {"t": row.deployed.isoformat(), "action": row.action, "generation": row.generation, "split": {}},
        )
        event["split"][row.version.version] = row.weight
    return list(events.values())


def recent(endpoint, *, minutes, now=None, reads=None):
    """Per version over the last ``minutes``: the summary, drift verdicts and the benchmark p95.
    What alert rules and the overview look at. ``reads``: an EndpointReads of ``endpoint`` to
    share with the page's other parts (its windows too, when the page's range ends at ``now``)."""
    reads = reads or EndpointReads(endpoint)
    now = now or timezone.now()
    since = (now - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    buckets, versions = {}, {}
    windows = reads.windows(since, now)
    served = ServedTime(reads.deployments, since, now, windows)
    for window in windows:
        versions[window.version_id] = window.version
        buckets.setdefault(window.version_id, Bucket()).add(window)
    profiles = reads.profiles(list(versions))
    measured = reads.benchmarks(list(versions))
    found = {}
    for version_id, bucket in buckets.items():
        verdicts, dataset = drift_of(bucket, profiles.get(version_id, {}))
        seconds = served.seconds(version_id)
        served_from, served_until = served.span(version_id)
        summary = bucket.summary(seconds if seconds >= MIN_RATE_SECONDS else None)
        versus = comparable.compare(
            version=versions[version_id].version,
            target=endpoint.target.slug,
            inference=summary["inference"],
            request=summary["request"],
            measured=measured.get(version_id, {}),
        )
        like = versus["inference"]
        found[versions[version_id]] = {
            **summary,
            "served_seconds": seconds,
            "served_from": served_from,
            "served_until": served_until,
            "drift": verdicts,
            "dataset_drift": dataset,
            "benchmark": versus,
            "benchmark_p95_ms": like.get("benchmark_p95_ms") if like["comparable"] else None,
            "benchmark_gap": like.get("ratio") if like["comparable"] else None,
        }
    return found


def _natural(version):
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def default_range(endpoint, now=None):
    """The range a page opens on, fitted to the data there is: 15m while the endpoint's data of
    the last hour is all younger than 15 minutes, else 1h; with nothing in the last hour, the
    smallest range that reaches its latest window (or 1h when it has none)."""
    from django.db.models import Max, Min

    now = now or timezone.now()
    recent_first = MetricWindow.objects.filter(endpoint=endpoint, start__gte=now - RANGES["1h"]).aggregate(
        first=Min("start")
    )["first"]
    if recent_first is not None:
        return "15m" if recent_first >= now - RANGES["15m"] else "1h"
    latest = MetricWindow.objects.filter(endpoint=endpoint).aggregate(last=Max("start"))["last"]
    if latest is None:
        return DEFAULT_RANGE
    return next((name for name, span in RANGES.items() if latest >= now - span), DEFAULT_RANGE)


def parse_range(params, now=None, default=DEFAULT_RANGE):
    """(since, until, step) from query parameters: ``range`` (15m … 30d, ``default`` when absent)
    or ``since``/``until`` (ISO 8601), and an optional ``step`` in seconds. Raises BerthError
    naming the parameter."""
    from common.errors import BerthError

    now = now or timezone.now()
    until = parse_time(params.get("until"), "until") if params.get("until") else now
    if params.get("since"):
        since = parse_time(params.get("since"), "since")
    else:
        name = params.get("range") or default
        if name not in RANGES:
            raise BerthError(f"range must be one of {', '.join(RANGES)}.", field="range")
        since = until - RANGES[name]
    if since >= until:
        raise BerthError("since must be before until.", field="since")
    if until - since > RANGES["30d"] + timedelta(days=1):
        raise BerthError("A range may span at most 30 days.", field="since")
    step = params.get("step")
    if step in (None, ""):
        return since, until, choose_step(since, until)
    try:
        step = int(step)
    except ValueError:
        raise BerthError("step is a whole number of seconds.", field="step") from None
    if step < 60 or step % 60:
        raise BerthError("step is a multiple of 60 seconds (windows are minutes).", field="step")
    if (until - since).total_seconds() / step > 1000:
        raise BerthError("That step gives more than 1,000 points; choose a larger step.", field="step")
    return since, until, step


def endpoints_health(endpoints, *, minutes=60, now=None, drift_minutes=5):
    """For the overview: per endpoint, minute by minute over the last ``minutes`` (all versions
    together; the current, partial minute left out), p95 latency, error rate and the share of
    drifted features; and ``drift_now``: the drift verdict over the last ``drift_minutes`` per
    version, computed as the alert rules compute it (recent's window and tests), with the drift
    alerts firing. In a fixed number of queries whatever the number of endpoints."""
    from .models import Alert, AlertRule

    now = now or timezone.now()
    since = align(now - timedelta(minutes=minutes), 60)
    drift_since = (now - timedelta(minutes=drift_minutes)).replace(second=0, microsecond=0)
    current = int((now.replace(second=0, microsecond=0) - since).total_seconds() // 60)
    endpoints = list(endpoints)
    buckets, recent_buckets = {}, {}
    windows = MetricWindow.objects.filter(
        endpoint__in=endpoints, resolution=MetricWindow.Resolution.MINUTE, start__gte=since, start__lt=now
    ).only("endpoint_id", "version_id", *COUNTED_FIELDS)
    versions = set()
    for window in windows:
        index = int((window.start - since).total_seconds() // 60)
        versions.add(window.version_id)
        per_minute = buckets.setdefault(window.endpoint_id, {}).setdefault(index, {})
        per_minute.setdefault(window.version_id, Bucket()).add(window)
        if window.start >= drift_since:
            recent_buckets.setdefault(window.endpoint_id, {}).setdefault(window.version_id, Bucket()).add(window)
    profiles = references(list(versions))
    firing = {}
    for alert in Alert.objects.filter(
        endpoint__in=endpoints, state=Alert.State.FIRING, rule__metric=AlertRule.Metric.DRIFT
    ).select_related("version", "rule"):  # the rule: the overview words the alert's figure
        firing.setdefault(alert.endpoint_id, []).append(alert)
    health = {}
    for endpoint in endpoints:
        p95, error_rate, drift = [], [], []
        for index in range(current):
            per_version = buckets.get(endpoint.id, {}).get(index, {})
            merged, shares = Bucket(), []
            for version_id, bucket in per_version.items():
                merged.merge(bucket)
                _, dataset = drift_of(bucket, profiles.get(version_id, {}), with_js=False)
                if dataset["share"] is not None:
                    shares.append(dataset["share"])
            p95.append(merged.quantiles((0.95,))[0])
            error_rate.append(100 * merged.errors / merged.requests if merged.requests else None)
            drift.append(max(shares) if shares else None)
        verdicts = [
            drift_of(bucket, profiles.get(version_id, {}))[1]
            for version_id, bucket in recent_buckets.get(endpoint.id, {}).items()
        ]
        scored = [d for d in verdicts if d["share"] is not None]
        worst = max(scored, key=lambda d: d["share"], default=None)
        health[endpoint] = {
            "p95_ms": p95,
            "error_percent": error_rate,
            "drift_share": drift,
            "drift_now": worst,
            "drift_minutes": drift_minutes,
            "drift_alerts": firing.get(endpoint.id, []),
            "requests": sum(b.requests for m in buckets.get(endpoint.id, {}).values() for b in m.values()),
        }
    return health
