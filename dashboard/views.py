from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from jobs.models import Job
from registry.models import Model, ModelVersion

from common import audit
from common.access import access_required


# The overview's "best variant": the fastest p95 at batch 1 that loses at most this much accuracy.
BEST_VARIANT_MAX_DROP = 0.005
BEST_VARIANT_MODELS = 20
ENDPOINTS_ON_OVERVIEW = 20


@access_required("model")
def home(request):
    from jobs.comparison import best_variants
    from jobs.gates import failing_gates
    from monitoring import alerts, series
    from monitoring.selectors import endpoint_list

    return render(
        request,
        "dashboard/home.html",
        {
            "model_count": Model.objects.count(),
            "recent_versions": ModelVersion.objects.select_related("model", "created_by").order_by("-created")[:10],
            "recent_jobs": Job.objects.select_related("version__model", "target").order_by("-created")[:10],
            "active_jobs": Job.objects.filter(status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).count(),
            "best_variants": best_variants(max_drop=BEST_VARIANT_MAX_DROP, limit=BEST_VARIANT_MODELS),
            "best_variant_max_drop": BEST_VARIANT_MAX_DROP,
            "failing_gates": failing_gates(),
            "endpoint_health": series.endpoints_health(endpoint_list()[:ENDPOINTS_ON_OVERVIEW], minutes=60),
            "firing_alerts": alerts.firing_alerts(limit=20),
        },
    )


def favicon(request):
    """Browsers ask for /favicon.ico on pages that name no icon (the admin's, the API docs')."""
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.http import HttpResponseRedirect

    return HttpResponseRedirect(staticfiles_storage.url("favicon.svg"))


def healthz(request):
    """For load balancers: 200 when this web process can reach its database, 503 otherwise."""
    from django.db import DatabaseError, connection
    from django.http import JsonResponse

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        return JsonResponse({"status": "unavailable", "database": str(exc).splitlines()[0][:200]}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


@access_required("token")
@require_http_methods(["GET", "POST"])
def api_tokens(request):
    """The user's API tokens for CI and scripts: create (the key is shown once, on this answer),
    list and revoke. Admins also see and may revoke everyone's active tokens."""
    from common import tokens
    from common.access import OTHERS, permits
    from common.errors import BerthError
    from .forms import ApiTokenForm

    see_all = permits(request.user, "token", OTHERS)
    form, created = ApiTokenForm(), None
    if request.method == "POST" and "revoke" in request.POST:
        try:
            token = tokens.token_get(request.POST["revoke"], user=request.user, all_users=see_all)
        except (BerthError, ValueError):
            messages.error(request, "There is no such token (or it is not yours).")
        else:
            tokens.revoke(token, actor=request.user)
            messages.success(request, f"Token {token.name!r} ({token.prefix}…) was revoked; it no longer works.")
        return redirect("tokens")
    if request.method == "POST":
        form = ApiTokenForm(request.POST)
        if form.is_valid():
            try:
                token, key = tokens.issue(request.user, **form.cleaned_data)
            except BerthError as exc:
                form.add_error(exc.field, exc.message)
            else:
                created, form = (token, key), ApiTokenForm()
    return render(
        request,
        "dashboard/tokens.html",
        {
            "form": form,
            "created": created,
            "tokens": tokens.tokens_for(request.user),
            "now": timezone.now(),
            "others": tokens.active(tokens.tokens_for(request.user, all_users=True)).exclude(user=request.user)
            if see_all
            else None,
        },
    )


@access_required("worker")
def workers(request):
    """Worker hosts with their hardware and queues, and the targets no live worker serves."""
    from jobs.selectors import workers_overview

    hosts, targets, served = workers_overview()
    return render(
        request, "dashboard/workers.html", {"hosts": hosts, "targets": targets, "default_served": "default" in served}
    )


AUDIT_PAGE_SIZE = 200


@access_required("audit")
def audit_log(request):
    """The audit log for admins, filtered by action, user or target; ?format=csv exports it."""
    params = {key: request.GET.get(key, "").strip() for key in ("action", "actor", "target")}
    found = audit.events(**params)
    if request.GET.get("format") == "csv":
        return _audit_csv(found)
    return render(
        request,
        "dashboard/audit.html",
        {
            "events": found.select_related("actor")[:AUDIT_PAGE_SIZE],
            "total": found.count(),
            "params": params,
            "actions": audit.Action.choices,
            "page_size": AUDIT_PAGE_SIZE,
            "query": request.GET.urlencode(),
        },
    )


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
            yield writer.writerow(
                [
                    event.at.isoformat(),
                    event.actor_name,
                    event.action,
                    event.target,
                    json.dumps(event.details, sort_keys=True),
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="berth-audit.csv"'
    return response
