"""What an endpoint's series read from the database: its windows over a range, its deployments,
and the reference profiles and benchmarks of its versions.

The endpoint page (and its live partial, every 5 s per open tab) shows the series of a range
(series.endpoint_series), the last minutes per version (series.recent), what serves now and the
deployment history. Each of those used to read the deployments, profiles and benchmarks on its
own; an EndpointReads reads each once per request and hands the same rows to all of them, and
series.recent takes its windows from the range's when the range covers them.
"""

from datetime import datetime

from django.db.models import Q

from registry.models import ReferenceProfile

from . import comparable
from .models import Deployment, MetricWindow

# What a window counts: the fields the charts and the overview read of each MetricWindow.
COUNTED_FIELDS = (
    "start",
    "requests",
    "errors",
    "error_kinds",
    "latency",
    "features",
    "coarse",
    "latency_sum_ms",
    "flushes",
    "batch_sizes",
    "inference_latency",
    "request_latency",
)
WINDOW_FIELDS = ("version__version", "version__id", "version__model__name", "resolution", *COUNTED_FIELDS, "updated")


def _covers(endpoint, since, until, step):
    """(the filter of the windows that cover [since, until) at the coarsest resolution a step of
    ``step`` seconds can use, the moment from which they are minute windows)."""
    rolled = endpoint.rollups or {}
    covers, lower = Q(), since
    for resolution, seconds in reversed(MetricWindow.LEVELS):
        if seconds > step or step % seconds or not rolled.get(resolution):
            continue
        upper = min(until, datetime.fromisoformat(rolled[resolution]))
        if upper > lower:
            covers |= Q(resolution=resolution, start__gte=lower, start__lt=upper)
            lower = upper
    covers |= Q(resolution=MetricWindow.Resolution.MINUTE, start__gte=lower, start__lt=until)
    return covers, lower


def references(versions):
    """{version id: {feature name: profile}} of the versions' reference profiles."""
    found = {}
    for profile in ReferenceProfile.objects.filter(version__in=versions).only(
        "version_id", "name", "kind", "edges", "counts", "classes"
    ):
        found.setdefault(profile.version_id, {})[profile.name] = profile
    return found


class EndpointReads:
    """One endpoint's rows, each read once however many of the page's parts ask: pass the same
    EndpointReads to series.endpoint_series, series.recent and the page's deployment tables.
    Made for one request: it never sees rows written after it read them."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self._deployments = None
        self._profiles = {}  # version id -> {feature: profile} ({} when it has none)
        self._benchmarks = {}  # version id -> comparable.benchmarks()[version id] ({} when none)
        self._range = None  # (since, until, minutes from, windows) of the last windows() read

    @property
    def deployments(self):
        """Every deployment of the endpoint (with its version, model and deployer), the newest
        generation first and within one the largest weight first."""
        if self._deployments is None:
            self._deployments = list(
                Deployment.objects.filter(endpoint=self.endpoint)
                .select_related("version__model", "deployed_by")
                .order_by("-generation", "-weight", "version_id")
            )
        return self._deployments

    def active(self):
        """The deployments serving now, the largest weight first."""
        return sorted(
            (d for d in self.deployments if d.state == Deployment.State.ACTIVE), key=lambda d: (-d.weight, d.version_id)
        )

    def windows(self, since, until, step=60):
        """The windows that cover [since, until) at the coarsest resolution a step of ``step``
        seconds can use, oldest first: rolled-up windows up to where each resolution is rolled,
        then finer ones, then minutes (never two resolutions over the same minute). Minutes
        within the last range read (series.recent's within the page's) are taken from it."""
        if self._range is not None:
            read_since, read_until, minutes_from, read = self._range
            if step == 60 and minutes_from <= since and read_since <= since and until <= read_until:
                return [w for w in read if since <= w.start < until]
        covers, minutes_from = _covers(self.endpoint, since, until, step)
        found = list(
            MetricWindow.objects.filter(covers, endpoint=self.endpoint)
            .select_related("version__model")
            .only(*WINDOW_FIELDS)
            .order_by("start")
        )
        self._range = (since, until, minutes_from, found)
        return found

    def profiles(self, version_ids):
        """references(version_ids), each version's profiles read once."""
        missing = [v for v in version_ids if v not in self._profiles]
        if missing:
            found = references(missing)
            self._profiles.update({v: found.get(v, {}) for v in missing})
        return {v: self._profiles[v] for v in version_ids if self._profiles[v]}

    def benchmarks(self, version_ids):
        """comparable.benchmarks(version_ids, the endpoint's target), each version's read once."""
        missing = [v for v in version_ids if v not in self._benchmarks]
        if missing:
            found = comparable.benchmarks(missing, self.endpoint.target_id)
            self._benchmarks.update({v: found.get(v, {}) for v in missing})
        return {v: self._benchmarks[v] for v in version_ids if self._benchmarks[v]}
