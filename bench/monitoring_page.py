"""Server time and database queries of the endpoint monitoring page, its live partial and the
metrics API over 30 days of windows, compacted as configured.

10 endpoints, every other one with two versions (a 90/10 canary split), 30 days of windows per
version stored as the default settings leave them: the last BERTH_MINUTE_WINDOWS_HOURS (24)
hours as minute windows, and the roll-ups monitoring/rollups.py keeps (15-minute windows over
BERTH_QUARTER_WINDOWS_DAYS, hour and 6-hour windows over the 30 days). Each window carries ~10 req/s of traffic (about 0.5 %
errors of two kinds), a latency sketch drawn from a lognormal (~40-150 buckets), and feature
histograms for 20 numeric features on 11 reference bins plus a 10-class prediction, with
three features drifting over the last 6 hours. Minute windows run 15 minutes past the
start of the bench, so that the "last 5 minutes" table stays filled while it runs. Rows are
bulk-created; reference profiles, deployments (through monitoring.services) and a batch-1
benchmark per version are made as the app makes them.

Requests go in-process through Django's full stack (django.test.Client: middleware, session
login as a viewer, templates, Plotly figure JSON; DRF for the API) on PostgreSQL in a
throw-away database. Each time is the median of REPEATS requests after one warm-up; queries
are counted with CaptureQueriesContext. The baseline of every time is the 300 ms budget. The
query counts are compared between 1h and 30d ranges, and between the database holding one
endpoint's data (measured first) and ten endpoints' data; the overview page (home), which
shows every endpoint, is measured both times too. If a figure misses its goal, --profile
prints the top cProfile entries of the slowest request.

    .venv/bin/python bench/monitoring_page.py [--profile]   # DATABASE_URL defaults to the local PostgreSQL
"""

import argparse
import cProfile
import io
import math
import pstats
import sys
import time
from datetime import timedelta

import djangobench
import numpy as np

djangobench.configure("berth_bench_monitoring")

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from berth.core.stats import DEFAULT_ALPHA  # noqa: E402

GOAL_MS = 300
REPEATS = 7
ENDPOINTS = 10
DAYS = 30
NUMERIC_FEATURES = 20
BINS = 11
CLASSES = 10
RPS = 10.0
SIGMA = 0.35  # of ln(latency): ~40 sketch buckets in a canary minute, ~150 in a busy hour
SEED = 20240612
LOG_GAMMA = math.log((1 + DEFAULT_ALPHA) / (1 - DEFAULT_ALPHA))
FUTURE_MINUTES = 15


def normal_cdf(x):
    return 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


class World:
    """Models, versions, profiles, endpoints and windows, built fast."""

    def __init__(self, now):
        from registry.models import HardwareTarget

        self.now = now
        self.rng = np.random.default_rng(SEED)
        self.target = HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})[0]
        self.features = [f"x{i}.mean" for i in range(NUMERIC_FEATURES)]
        self.reference = self.rng.dirichlet(np.full(BINS, 40.0), NUMERIC_FEATURES)  # per feature, 11 bin shares
        self.classes = self.rng.dirichlet(np.full(CLASSES, 40.0))
        self.horizon = (now - timedelta(hours=settings.BERTH_MINUTE_WINDOWS_HOURS)).replace(
            minute=0, second=0, microsecond=0
        )
        minute_now = now.replace(second=0, microsecond=0)
        self.minutes = [
            self.horizon + timedelta(minutes=i)
            for i in range(int((minute_now - self.horizon).total_seconds() // 60) + 1 + FUTURE_MINUTES)
        ]
        # Roll-ups as the every-minute task leaves them (monitoring/rollups.py): 6-hour and hour
        # windows over the 30 days, 15-minute ones over BERTH_QUARTER_WINDOWS_DAYS, each up to
        # the last period closed.
        from monitoring.models import MetricWindow
        from monitoring.rollups import GRACE

        LEVELS, level_start = MetricWindow.LEVELS, MetricWindow.period_start

        self.rolled = {resolution: level_start(now - GRACE, seconds) for resolution, seconds in LEVELS}
        first = now - timedelta(days=DAYS, hours=6)
        keep = {"15min": timedelta(days=settings.BERTH_QUARTER_WINDOWS_DAYS)}
        self.levels = []
        for resolution, seconds in LEVELS:
            start = level_start(max(first, now - keep.get(resolution, timedelta(days=DAYS + 1))), seconds)
            count = int((self.rolled[resolution] - start).total_seconds() // seconds)
            self.levels.append((resolution, [start + timedelta(seconds=seconds * i) for i in range(count)], seconds))
        # Latency bucket probabilities of a lognormal centred on bucket 0, over +-300 buckets.
        keys = np.arange(-300, 301)
        self.offsets = keys
        self.latency_p = np.diff(normal_cdf(np.concatenate([[keys[0] - 1], keys]) * LOG_GAMMA / SIGMA))
        self.latency_p /= self.latency_p.sum()
        self.buckets_seen = {"minute": [], "15min": [], "hour": [], "6hour": []}

    def endpoint(self, index):
        """Endpoint ep-NN on its own model, with 1 or 2 versions (profiles, benchmark, deployments)."""
        from jobs.models import Job
        from monitoring import services
        from registry.models import Dataset, Model, ReferenceProfile

        model = Model.objects.create(name=f"model-{index:02d}", task="classification")
        count = 2 if index % 2 == 0 else 1
        versions = djangobench.ready_versions(model, count, size_bytes=1_000_000)
        dataset = Dataset.objects.create(
            model=model,
            name="reference",
            kind="reference",
            file="ref.npz",
            sha256="0" * 64,
            size_bytes=1,
            rows=10_000,
            arrays={},
        )
        profiles = []
        for version in versions:
            for j, name in enumerate(self.features):
                edges = sorted(self.rng.normal(0, 1, BINS - 1).round(4).tolist())
                profiles.append(
                    ReferenceProfile(
                        version=version,
                        dataset=dataset,
                        name=name,
                        kind="mean",
                        tensor="x",
                        edges=edges,
                        counts=(self.reference[j] * 10_000).round().astype(int).tolist(),
                    )
                )
            profiles.append(
                ReferenceProfile(
                    version=version,
                    dataset=dataset,
                    name="prediction",
                    kind="class",
                    tensor="probs",
                    classes=CLASSES,
                    counts=(self.classes * 10_000).round().astype(int).tolist(),
                )
            )
            job = Job.objects.create(kind="benchmark", version=version, target=self.target, status="succeeded")
            djangobench.benchmark_result(job=job, batch_size=1, p50_ms=3.5, accuracy=0.98).save()
        ReferenceProfile.objects.bulk_create(profiles)
        endpoint, _ = services.endpoint_create(name=f"ep-{index:02d}", model=model, target=self.target)
        services.deploy(endpoint=endpoint, version=versions[0], weight=100)
        if count == 2:
            services.deploy(endpoint=endpoint, version=versions[1], weight=10)
        endpoint.rollups = {resolution: moment.isoformat() for resolution, moment in self.rolled.items()}
        endpoint.save(update_fields=["rollups"])
        shares = [0.9, 0.1] if count == 2 else [1.0]
        rows = 0
        for version, share in zip(versions, shares):
            rows += self.windows(endpoint, version, share, centre_ms=4.0 if version.version == "1" else 3.6)
        return endpoint, rows

    def windows(self, endpoint, version, share, centre_ms):
        """Bulk-create the version's hour and minute windows; returns how many."""
        from monitoring.models import MetricWindow

        total = 0
        for resolution, starts, seconds in (*self.levels, ("minute", self.minutes, 60)):
            rng = self.rng
            hours_of_day = np.array([s.hour + s.minute / 60 for s in starts])
            load = 1 + 0.5 * np.sin((hours_of_day - 8) / 24 * 2 * math.pi)  # a daily cycle
            requests = rng.poisson(RPS * share * seconds * load)
            errors = rng.binomial(requests, 0.005)
            timeouts = rng.binomial(errors, 0.3)
            # Latency: the daily cycle moves the median by up to +-10 % (a whole number of buckets).
            centre = round(math.log(centre_ms) / LOG_GAMMA)
            shifts = centre + np.round(np.log(1 + 0.1 * (load - 1)) / LOG_GAMMA).astype(int)
            latency = rng.multinomial(requests, self.latency_p)
            # Features: multinomial on the reference shares; three drift over the last 6 hours.
            drifting = np.array([s >= self.now - timedelta(hours=6) for s in starts])
            counts = rng.multinomial(
                np.broadcast_to(requests[:, None], (len(starts), NUMERIC_FEATURES)), self.reference
            )
            shifted = np.roll(self.reference[:3], 2, axis=1)
            counts[drifting, :3] = rng.multinomial(
                np.broadcast_to(requests[drifting, None], (int(drifting.sum()), 3)), shifted
            )
            predictions = rng.multinomial(requests, self.classes)
            rows = []
            for i, start in enumerate(starts):
                nonzero = np.flatnonzero(latency[i])
                keys = (self.offsets[nonzero] + shifts[i]).tolist()
                buckets = dict(zip(map(str, keys), latency[i, nonzero].tolist()))
                self.buckets_seen[resolution].append(len(buckets))
                features = dict(zip(self.features, counts[i].tolist()))
                features["prediction"] = predictions[i].tolist()
                kinds = {}
                if errors[i]:
                    kinds = {
                        k: v
                        for k, v in (("inference_error", int(errors[i] - timeouts[i])), ("timeout", int(timeouts[i])))
                        if v
                    }
                rows.append(
                    MetricWindow(
                        endpoint=endpoint,
                        version=version,
                        start=start,
                        resolution=resolution,
                        requests=int(requests[i]),
                        errors=int(errors[i]),
                        error_kinds=kinds,
                        latency={"alpha": DEFAULT_ALPHA, "buckets": buckets, "zero_count": 0},
                        features=features,
                        flushes=seconds // 10,
                        source="runtime",
                    )
                )
            MetricWindow.objects.bulk_create(rows, batch_size=1000)
            total += len(rows)
        return total


def measure(client, path, repeats=REPEATS):
    return djangobench.measure(client, path, repeats)


def queries_of(client, path):
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


def health_queries():
    """(queries, ms) of the overview's per-endpoint health (series.endpoints_health), as home calls it."""
    from dashboard.views import ENDPOINTS_ON_OVERVIEW
    from monitoring import series
    from monitoring.selectors import endpoint_list

    series.endpoints_health(endpoint_list()[:ENDPOINTS_ON_OVERVIEW], minutes=60)
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        series.endpoints_health(endpoint_list()[:ENDPOINTS_ON_OVERVIEW], minutes=60)
    return len(queries), (time.perf_counter() - started) * 1000


def profile(client, path, top=25):
    profiler = cProfile.Profile()
    profiler.enable()
    client.get(path)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


PATHS = {
    "page": "/endpoints/{name}/?range={range}",
    "live": "/endpoints/{name}/live/?range={range}",
    "api": "/api/v1/endpoints/{name}/metrics/?range={range}",
}
TIMED = [
    ("page", "30d"),
    ("page", "24h"),
    ("page", "1h"),
    ("live", "30d"),
    ("live", "24h"),
    ("live", "1h"),
    ("api", "30d"),
    ("api", "24h"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", action="store_true", help="profile the slowest request if a goal is missed")
    args = parser.parse_args()
    with djangobench.test_database() as database:
        run(database, args)


def run(database, args):
    from monitoring.models import MetricWindow

    client = djangobench.viewer_client()
    world = World(timezone.now())

    started = time.perf_counter()
    _, rows = world.endpoint(0)
    name = "ep-00"  # two versions
    per_level = " + ".join(f"{len(starts)} {resolution}" for resolution, starts, _ in world.levels)
    print(
        f"# {connection.vendor} database {database}: {name}: {rows:,} windows ({per_level} + "
        f"{len(world.minutes)} minute per version, 2 versions) in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    one = {
        (kind, span): queries_of(client, PATHS[kind].format(name=name, range=span))
        for kind in PATHS
        for span in ("1h", "30d")
    }
    one["home"] = queries_of(client, "/")
    one["health"] = health_queries()[0]

    started = time.perf_counter()
    for index in range(1, ENDPOINTS):
        rows += world.endpoint(index)[1]
    print(
        f"# {ENDPOINTS} endpoints, {MetricWindow.objects.count():,} windows in all "
        f"({rows:,} made), made in {time.perf_counter() - started:.1f} s more; sketch buckets per window: "
        f"minute {np.median(world.buckets_seen['minute']):.0f} median "
        f"({np.min(world.buckets_seen['minute'])}-{np.max(world.buckets_seen['minute'])}), "
        f"hour {np.median(world.buckets_seen['hour']):.0f} median "
        f"({np.min(world.buckets_seen['hour'])}-{np.max(world.buckets_seen['hour'])}); "
        f"{NUMERIC_FEATURES} features x {BINS} bins + {CLASSES}-class prediction",
        file=sys.stderr,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")

    times, counts, sizes = {}, {}, {}
    for kind, span in TIMED:
        path = PATHS[kind].format(name=name, range=span)
        times[kind, span], counts[kind, span], sizes[kind, span] = measure(client, path)
    met_time = True
    for kind, span in TIMED:
        ms = times[kind, span]
        met_time &= ms < GOAL_MS
        print(
            f"monitoring_page.{kind}_{span}_ms: ours={ms:.1f} baseline={GOAL_MS} ratio={ms / GOAL_MS:.2f} "
            f"({counts[kind, span]} queries, {sizes[kind, span] / 1024:.0f} KiB)"
        )

    met_queries = True
    ten = {
        (kind, span): queries_of(client, PATHS[kind].format(name=name, range=span))
        for kind in PATHS
        for span in ("1h", "30d")
    }
    for kind in PATHS:
        q1h, q30d = ten[kind, "1h"], ten[kind, "30d"]
        print(f"monitoring_page.{kind}_queries_30d_vs_1h: ours={q30d} baseline={q1h} ratio={q30d / q1h:.2f}")
        print(
            f"monitoring_page.{kind}_queries_10_vs_1_endpoints: ours={q30d} baseline={one[kind, '30d']} "
            f"ratio={q30d / one[kind, '30d']:.2f} (30d)"
        )
        met_queries &= q1h == q30d == one[kind, "30d"] == one[kind, "1h"]
    # Informational: versions (ep-01 has one, ep-00 two) and the overview of every endpoint.
    versions_same = True
    for kind in PATHS:
        single = queries_of(client, PATHS[kind].format(name="ep-01", range="30d"))
        versions_same &= single == ten[kind, "30d"]
        print(
            f"monitoring_page.{kind}_queries_2_vs_1_versions: ours={ten[kind, '30d']} baseline={single} "
            f"ratio={ten[kind, '30d'] / single:.2f} (30d, ep-00 vs ep-01)"
        )
    home_ms, home_queries, _ = measure(client, "/", repeats=3)
    health, health_ms = health_queries()
    print(
        f"monitoring_page.overview_health_queries_10_vs_1_endpoints: ours={health} baseline={one['health']} "
        f"ratio={health / one['health']:.2f} (series.endpoints_health, {health_ms:.1f} ms for {ENDPOINTS} endpoints)"
    )
    print(
        f"monitoring_page.home_queries_10_vs_1_endpoints: ours={home_queries} baseline={one['home']} "
        f"ratio={home_queries / one['home']:.2f} (whole overview page, {home_ms:.1f} ms; its best-variants panel "
        f"runs a comparison per benchmarked model, up to 20)"
    )
    print(f"check query count independent of the number of versions: {'yes' if versions_same else 'NO'}")
    print(f"goal page and API < {GOAL_MS} ms: {'met' if met_time else 'NOT met'}")
    print(f"goal query count constant: {'met' if met_queries else 'NOT met'}")

    if args.profile and not met_time:
        kind, span = max(TIMED, key=lambda key: times[key])
        print(
            f"\n# cProfile of GET {PATHS[kind].format(name=name, range=span)} ({times[kind, span]:.0f} ms)",
            file=sys.stderr,
        )
        print(profile(client, PATHS[kind].format(name=name, range=span)), file=sys.stderr)


if __name__ == "__main__":
    main()
