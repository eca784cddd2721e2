"""Roll-ups and retention of the monitoring windows.

Runtimes report minutes. Every minute a task rolls the closed 15-minute, hour and 6-hour
periods up from their minute windows (counts added, sketches and feature histograms merged:
nothing is lost), so that a chart over a day or a month reads a few hundred rows whatever the
traffic. ``Endpoint.rollups`` records up to when each resolution is rolled; a flush arriving
later for an earlier minute is added to the rolled windows as well (services.window_add), under
the same endpoint-row lock. Minutes are kept BERTH_MINUTE_WINDOWS_HOURS, 15-minute windows
BERTH_QUARTER_WINDOWS_DAYS, hours and 6 hours BERTH_HOUR_WINDOWS_DAYS.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from .models import Endpoint, MetricWindow, TelemetryFlush
from .series import Bucket
from .services import add_to_window

Resolution = MetricWindow.Resolution
# A period is rolled up this long after it ends, so that the runtimes' last flushes are in.
GRACE = timedelta(minutes=2)


def compact_windows(now=None):
    """Roll up what is due and drop what is past retention; returns the windows written."""
    now = now or timezone.now()
    written = sum(roll_up(endpoint_id, now) for endpoint_id in Endpoint.objects.values_list("pk", flat=True))
    expire(now)
    return written


def roll_up(endpoint_id, now):
    """Roll up the closed periods of one endpoint at every level; returns the windows written."""
    written = 0
    with transaction.atomic():
        endpoint = Endpoint.objects.select_for_update().get(pk=endpoint_id)
        rolled = dict(endpoint.rollups)
        first = None
        for resolution, seconds in MetricWindow.LEVELS:
            closed = MetricWindow.period_start(now - GRACE, seconds)
            since = datetime.fromisoformat(rolled[resolution]) if rolled.get(resolution) else None
            if since is None:
                first = (
                    first
                    or MetricWindow.objects.filter(endpoint=endpoint, resolution=Resolution.MINUTE).aggregate(
                        first=Min("start")
                    )["first"]
                )
                if first is None:
                    continue
                since = MetricWindow.period_start(first, seconds)
            if since >= closed:
                continue
            groups = {}
            for window in MetricWindow.objects.filter(
                endpoint=endpoint, resolution=Resolution.MINUTE, start__gte=since, start__lt=closed
            ).order_by("start"):
                key = (window.version_id, MetricWindow.period_start(window.start, seconds))
                groups.setdefault(key, []).append(window)
            for (version_id, period), windows in groups.items():
                add_to_window(
                    endpoint=endpoint, version_id=version_id, start=period, resolution=resolution, **merged(windows)
                )
                written += 1
            rolled[resolution] = closed.isoformat()
        if rolled != endpoint.rollups:
            endpoint.rollups = rolled
            endpoint.save(update_fields=["rollups"])
    return written


def merged(windows):
    """The counts of several windows as one (the keywords of services.add_to_window)."""
    total = Bucket()
    for window in windows:
        total.add(window)
    return {
        "requests": total.requests,
        "errors": total.errors,
        "error_kinds": total.error_kinds,
        "features": total.features,
        "latency": total.sketch(),
        "coarse": bool(total.coarse_requests),
        "latency_sum_ms": total.latency_sum_ms,
        "flushes": total.flushes,
        "source": windows[0].source,
        "batch_sizes": total.batch_sizes,
        "inference_latency": total.inference,
        "request_latency": total.request,
    }


def expire(now):
    """Delete windows past their retention (minutes only once every level has rolled them up)."""
    horizons = {}
    for rollups in Endpoint.objects.values_list("pk", "rollups"):
        endpoint_id, rolled = rollups
        marks = [datetime.fromisoformat(rolled[r]) for r, _ in MetricWindow.LEVELS if rolled.get(r)]
        horizons[endpoint_id] = min(marks) if len(marks) == len(MetricWindow.LEVELS) else None
    cutoff = now - timedelta(hours=settings.BERTH_MINUTE_WINDOWS_HOURS)
    for endpoint_id, horizon in horizons.items():
        if horizon is not None:
            MetricWindow.objects.filter(
                endpoint_id=endpoint_id, resolution=Resolution.MINUTE, start__lt=min(cutoff, horizon)
            ).delete()
    MetricWindow.objects.filter(
        resolution=Resolution.QUARTER, start__lt=now - timedelta(days=settings.BERTH_QUARTER_WINDOWS_DAYS)
    ).delete()
    MetricWindow.objects.filter(
        resolution__in=[Resolution.HOUR, Resolution.SIX_HOURS],
        start__lt=now - timedelta(days=settings.BERTH_HOUR_WINDOWS_DAYS),
    ).delete()
    # A flush older than telemetry may be is refused anyway, so its id no longer guards against a retry.
    TelemetryFlush.objects.filter(start__lt=now - timedelta(days=settings.BERTH_TELEMETRY_MAX_AGE_DAYS + 1)).delete()
