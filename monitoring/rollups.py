"""Compaction: minute windows older than BERTH_MINUTE_WINDOWS_HOURS become hour windows (counts
added, sketches and feature histograms merged, nothing lost); hour windows older than
BERTH_HOUR_WINDOWS_DAYS are deleted."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import MetricWindow
from .services import window_add

BATCH = 2000


def compact_windows(now=None):
    """Compact what is due; returns how many minute windows were folded into hours."""
    now = now or timezone.now()
    horizon = (now - timedelta(hours=settings.BERTH_MINUTE_WINDOWS_HOURS)).replace(minute=0, second=0,
                                                                                   microsecond=0)
    folded = 0
    while True:
        with transaction.atomic():
            due = list(MetricWindow.objects.select_for_update(skip_locked=True).filter(
                resolution=MetricWindow.Resolution.MINUTE, start__lt=horizon).order_by("start")[:BATCH])
            if not due:
                break
            for window in due:
                hour = window.start.replace(minute=0, second=0, microsecond=0)
                window_add(endpoint=window.endpoint, version=window.version, start=hour,
                           resolution=MetricWindow.Resolution.HOUR, requests=window.requests, errors=window.errors,
                           error_kinds=window.error_kinds, latency=window.latency, features=window.features,
                           source=window.source, coarse=window.coarse, latency_sum_ms=window.latency_sum_ms,
                           flushes=window.flushes)
            MetricWindow.objects.filter(id__in=[w.id for w in due]).delete()
            folded += len(due)
    MetricWindow.objects.filter(resolution=MetricWindow.Resolution.HOUR,
                                start__lt=now - timedelta(days=settings.BERTH_HOUR_WINDOWS_DAYS)).delete()
    return folded
