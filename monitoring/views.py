from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from common.access import access_required
from common.errors import BerthError
from registry.selectors import version_get

from . import alerts, bundle, charts, impact, replicas, selectors, series, services
from .endpoint_reads import EndpointReads
from .forms import BatchingForm, DeployForm, EndpointCreateForm

RECENT_MINUTES = 5
CHART_NAMES = ("requests", "latency", "errors", "drift_now", "drift", "histogram")


def _render_list(request, form):
    return render(request, "monitoring/endpoint_list.html", {"endpoints": selectors.endpoint_list(), "form": form})


@access_required("endpoint")
def endpoint_list(request):
    return _render_list(request, EndpointCreateForm())


@access_required("endpoint", "write")
@require_POST
def endpoint_create(request):
    form = EndpointCreateForm(request.POST)
    if form.is_valid():
        try:
            endpoint, token = services.endpoint_create(created_by=request.user, **form.cleaned_data)
        except BerthError as exc:
            form.add_error("name" if exc.field == "name" else None, exc.message)
        else:
            return _render_token(request, endpoint, token)
    return _render_list(request, form)


def _render_token(request, endpoint, token, rotated=False):
    """The token, shown this once (it is not stored), with the command that uses it."""
    return render(
        request,
        "monitoring/endpoint_token.html",
        {
            "endpoint": endpoint,
            "token": token,
            "dashboard_url": request.build_absolute_uri("/").rstrip("/"),
            "rotated": rotated,
            "grace_minutes": settings.BERTH_TOKEN_GRACE_MINUTES,
        },
    )


def _serving_context(endpoint, reads, deploy_form=None):
    """What serves now, its history, the serving profiles and the actions that fit (refreshed with
    the live part)."""
    deployments = reads.active()
    history = selectors.deployment_history(endpoint, reads=reads)
    return {
        "deployments": deployments,
        "history": history,
        # services.rollback needs a split before the current one
        "can_roll_back": bool(deployments) and len(history) > 1,
        "deploy_form": deploy_form or DeployForm(endpoint=endpoint),
        "serving_profiles": selectors.serving_profiles(endpoint, deployments),
    }


def _render_detail(request, endpoint, deploy_form=None, batching_form=None, status=200):
    reads = EndpointReads(endpoint)  # what the serving part and the live part both read, read once
    serving = _serving_context(endpoint, reads, deploy_form)
    return render(
        request,
        "monitoring/endpoint_detail.html",
        {
            "endpoint": endpoint,
            **serving,
            "batching_form": batching_form
            or BatchingForm(
                initial={
                    "max_batch_size": endpoint.max_batch_size,
                    "max_queue_delay_us": endpoint.max_queue_delay_us,
                    "inference_threads": endpoint.inference_threads,
                }
            ),
            "demo_serving": _demo_serving(endpoint),
            **_live_context(request, endpoint, reads),
        },
        status=status,
    )


def _demo_serving(endpoint):
    """For the demo's endpoint under `make run`: whether its serving runtime runs, and if not why."""
    from . import runtime_status

    return runtime_status.read(settings.VAR_DIR, endpoint.name)


def _live_context(request, endpoint, reads):
    """The monitoring part of the endpoint page (refreshed every few seconds on its own)."""
    params = request.GET.copy()
    # One now for the range and the last minutes: a range that ends now holds their windows.
    now = timezone.now()
    if not params.get("range") and not params.get("since"):  # open on a range that fits the data there is
        params["range"] = series.default_range(endpoint, now=now)
    try:
        since, until, step = series.parse_range(params, now=now)
        error = None
    except BerthError as exc:
        since, until, step = series.parse_range({}, now=now)
        error = exc.message
    data = series.endpoint_series(endpoint, since=since, until=until, step=step, reads=reads)
    recent = series.recent(endpoint, minutes=RECENT_MINUTES, now=now, reads=reads)
    figures, primary, feature = charts.page_figures(
        data, recent, feature=params.get("feature"), recent_minutes=RECENT_MINUTES
    )
    return {
        "endpoint_alerts": alerts.endpoint_alert_context(endpoint),
        **_replica_context(endpoint),
        "live": {
            "data": data,
            "recent": recent,
            "figures": figures,
            "primary": primary,
            "feature": feature,
            "range": params.get("range") if params.get("range") in series.RANGES else series.DEFAULT_RANGE,
            "ranges": list(series.RANGES),
            "error": error,
            "chart_names": CHART_NAMES,
            "recent_minutes": RECENT_MINUTES,
            "recent_seconds": RECENT_MINUTES * 60 - 1,
            "query": params.urlencode(),
        },
    }


def _replica_context(endpoint):
    rows = replicas.endpoint_replicas(endpoint)
    grace = replicas.token_grace(endpoint)
    if grace is not None:
        grace["replicas"] = [row for row in rows if row.old_token]
    return {"replicas": rows, "token_grace": grace}


def confirmed(request):
    """Whether the person saw the change's impact and confirmed it (see render_confirm)."""
    return request.POST.get("confirmed") == "yes"


def render_confirm(request, endpoint, change, *, fields=()):
    """The confirmation page of a change (an impact.Impact): what changes, for whom, how to undo
    it; confirming posts the same form again with confirmed=yes."""
    return render(
        request,
        "monitoring/confirm.html",
        {
            "endpoint": endpoint,
            "impact": change,
            "action": request.path,
            "fields": list(fields),
            "cancel": endpoint.get_absolute_url(),
        },
    )


@access_required("endpoint")
def endpoint_detail(request, name):
    return _render_detail(request, selectors.endpoint_get(name))


@access_required("endpoint")
def endpoint_live(request, name):
    endpoint = selectors.endpoint_get(name)
    reads = EndpointReads(endpoint)
    return render(
        request,
        "monitoring/_endpoint_refresh.html",
        {"endpoint": endpoint, **_serving_context(endpoint, reads), **_live_context(request, endpoint, reads)},
    )


@access_required("endpoint", "write")
@require_POST
def endpoint_deploy(request, name):
    endpoint = selectors.endpoint_get(name)
    form = DeployForm(request.POST, endpoint=endpoint)
    if not form.is_valid():
        return _render_detail(request, endpoint, form, status=400)
    version, weight = form.cleaned_data["version"], form.cleaned_data["weight"]
    apply_profile = form.cleaned_data["apply_serving_profile"]
    if weight == 100 and not confirmed(request):
        return render_confirm(
            request,
            endpoint,
            impact.deploy_impact(endpoint, version, apply_serving_profile=apply_profile),
            fields=[("version", version.version), ("weight", weight)]
            + ([("apply_serving_profile", "on")] if apply_profile else []),
        )
    try:
        services.deploy(
            endpoint=endpoint, version=version, weight=weight, user=request.user, apply_serving_profile=apply_profile
        )
    except BerthError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return _render_detail(request, endpoint, form, status=400)
    endpoint.refresh_from_db()
    messages.success(
        request,
        f"{form.cleaned_data['version'].version} now takes {form.cleaned_data['weight']} % of "
        f"{endpoint.name}'s traffic"
        + (f", batched as its serving profile recommends ({impact.batching_text(endpoint)})" if apply_profile else "")
        + "; runtimes pick it up within seconds.",
    )
    return redirect(endpoint)


@access_required("endpoint", "write")
@require_POST
def endpoint_promote(request, name, version):
    endpoint = selectors.endpoint_get(name)
    found = version_get(endpoint.model.name, version)
    if not confirmed(request):
        return render_confirm(request, endpoint, impact.deploy_impact(endpoint, found))
    try:
        services.deploy(endpoint=endpoint, version=found, weight=100, user=request.user)
    except BerthError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{found.version} promoted to 100 % of {endpoint.name}.")
    return redirect(endpoint)


@access_required("endpoint", "write")
@require_POST
def endpoint_rollback(request, name):
    endpoint = selectors.endpoint_get(name)
    change = impact.rollback_impact(endpoint)
    if change is not None and not confirmed(request):
        return render_confirm(request, endpoint, change)
    try:
        services.rollback(endpoint=endpoint, user=request.user)
    except BerthError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{endpoint.name} rolled back to its previous split.")
    return redirect(endpoint)


@access_required("endpoint", "write")
@require_POST
def endpoint_batching(request, name):
    endpoint = selectors.endpoint_get(name)
    form = BatchingForm(request.POST)
    if not form.is_valid():
        return _render_detail(request, endpoint, batching_form=form, status=400)
    services.endpoint_set_batching(endpoint=endpoint, user=request.user, **form.cleaned_data)
    messages.success(
        request,
        f"Dynamic batching on {endpoint.name}: {impact.batching_text(endpoint)}; runtimes pick it up within seconds.",
    )
    return redirect(endpoint)


@access_required("endpoint", "write")
@require_POST
def endpoint_apply_profile(request, name):
    """Set the endpoint's batching to what a serving profile (its job, ``job``) recommends, once
    the person has seen what changes."""
    endpoint = selectors.endpoint_get(name)
    try:
        profile = selectors.serving_profile_for(endpoint, request.POST.get("job"))
    except BerthError as exc:
        messages.error(request, exc.message)
        return _render_detail(request, endpoint, status=400)
    profile["serving"] = any(d.version_id == profile["version"].pk for d in selectors.active_deployments(endpoint))
    if not confirmed(request):
        return render_confirm(
            request, endpoint, impact.serving_profile_impact(endpoint, profile), fields=[("job", profile["job"].pk)]
        )
    services.endpoint_apply_serving_profile(endpoint=endpoint, profile=profile, user=request.user)
    messages.success(
        request,
        f"Dynamic batching on {endpoint.name} set from the serving profile of {profile['version'].version}: "
        f"{impact.batching_text(endpoint)}; runtimes pick it up within seconds.",
    )
    return redirect(endpoint)


@access_required("endpoint", "write")
@require_POST
def endpoint_token(request, name):
    endpoint = selectors.endpoint_get(name)
    if not confirmed(request):
        return render_confirm(request, endpoint, impact.token_impact(endpoint))
    return _render_token(
        request, endpoint, services.endpoint_rotate_token(endpoint=endpoint, user=request.user), rotated=True
    )


@access_required("endpoint")
def endpoint_bundle(request, name):
    from django.http import FileResponse

    endpoint = selectors.endpoint_get(name)
    return FileResponse(
        bundle.build(endpoint),
        as_attachment=True,
        filename=f"{endpoint.name}-bundle.tar.gz",
        content_type="application/gzip",
    )
