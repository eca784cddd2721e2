from django.contrib import messages
from django.db import transaction
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from rest_framework.authtoken.models import Token

from jobs.models import Job, WorkerHost
from registry.models import HardwareTarget, Model, ModelVersion

from . import audit
from .access import ADMIN, VIEWER, role_required


# The overview's "best variant": the fastest p95 at batch 1 that loses at most this much accuracy.
BEST_VARIANT_MAX_DROP = 0.005
BEST_VARIANT_MODELS = 20
ENDPOINTS_ON_OVERVIEW = 20


@role_required(VIEWER)
def home(request):
    from jobs.comparison import best_variants
    from monitoring import alerts, series
    from monitoring.selectors import endpoint_list
    from registry.selectors import failing_gates

    return render(request, "dashboard/home.html", {
        "model_count": Model.objects.count(),
        "recent_versions": ModelVersion.objects.select_related("model", "created_by").order_by("-created")[:10],
        "recent_jobs": Job.objects.select_related("version__model", "target").order_by("-created")[:10],
        "active_jobs": Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).count(),
        "best_variants": best_variants(max_drop=BEST_VARIANT_MAX_DROP, limit=BEST_VARIANT_MODELS),
        "best_variant_max_drop": BEST_VARIANT_MAX_DROP,
        "failing_gates": failing_gates(),
        "endpoint_health": series.endpoints_health(endpoint_list()[:ENDPOINTS_ON_OVERVIEW], minutes=60),
        "firing_alerts": alerts.firing_alerts(limit=20),
    })


@role_required(VIEWER)
@require_http_methods(["GET", "POST"])
def token(request):
    """The user's API token for CI and scripts; POST replaces it."""
    if request.method == "POST":
        with transaction.atomic():
            Token.objects.filter(user=request.user).delete()
            created = Token.objects.create(user=request.user)
            audit.record(audit.Action.API_TOKEN, request.user.get_username(), user=request.user,
                         details={"prefix": created.key[:8]})
        messages.success(request, "A new token was created; the old one no longer works.")
        return redirect("token")
    current = Token.objects.filter(user=request.user).first()
    return render(request, "dashboard/token.html", {"token": current})


@role_required(VIEWER)
def workers(request):
    """Worker hosts with their hardware and queues, and the targets no live worker serves."""
    from jobs.selectors import live_workers

    live_ids = set(live_workers().values_list("id", flat=True))
    hosts = list(WorkerHost.objects.all())
    for host in hosts:
        host.live = host.id in live_ids
    served = {queue for host in hosts if host.live for queue in host.queues}
    targets = list(HardwareTarget.objects.filter(active=True))
    for target in targets:
        target.served = target.queue in served
        target.waiting = Job.objects.filter(queue=target.queue, status=Job.Status.QUEUED).count()
    return render(request, "dashboard/workers.html", {"hosts": hosts, "targets": targets,
                                                      "default_served": "default" in served})


AUDIT_PAGE_SIZE = 200


@role_required(ADMIN)
def audit_log(request):
    """The audit log for admins, filtered by action, user or target; ?format=csv exports it."""
    params = {key: request.GET.get(key, "").strip() for key in ("action", "actor", "target")}
    found = audit.events(**params)
    if request.GET.get("format") == "csv":
        return _audit_csv(found)
    return render(request, "dashboard/audit.html", {
        "events": found.select_related("actor")[:AUDIT_PAGE_SIZE], "total": found.count(), "params": params,
        "actions": audit.Action.choices, "page_size": AUDIT_PAGE_SIZE, "query": request.GET.urlencode()})


def _audit_csv(found):
    import csv
    import json

    from django.http import StreamingHttpResponse

    class Echo:
        def write(self, value):
            return value

    writer = csv.writer(Echo())

    def rows():
        yield writer.writerow(["at", "actor", "action", "target", "details"])
        for event in found.iterator():
            yield writer.writerow([event.at.isoformat(), event.actor_name, event.action, event.target,
                                   json.dumps(event.details, sort_keys=True)])

    response = StreamingHttpResponse(rows(), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="berth-audit.csv"'
    return response
