from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from common.access import access_required
from common.errors import BerthError

from registry.selectors import version_get
from registry.views import version_page

from . import selectors, services
from .forms import BenchmarkForm, CompressForm, ConvertForm, ServeProfileForm
from .models import Job


@access_required("job")
def job_list(request):
    filters = {key: request.GET.get(key, "") for key in ("kind", "status", "target")}
    page = Paginator(selectors.job_list(**filters), 50).get_page(request.GET.get("page"))
    return render(
        request,
        "jobs/job_list.html",
        {
            "page": page,
            "filters": filters,
            "kinds": Job.Kind.choices,
            "statuses": Job.Status.choices,
        },
    )


def _job_context(job_id):
    from . import charts

    job = selectors.job_get(job_id)
    figure = charts.loss_curve(job.result)
    return {
        "job": job,
        "waiting_for": selectors.waiting_reason(job, selectors.served_queues()),
        "loss_chart": charts.to_json(figure) if figure else None,
    }


@access_required("job")
def job_detail(request, job_id):
    return render(request, "jobs/job_detail.html", _job_context(job_id))


@access_required("job")
def job_status(request, job_id):
    """The live part of the job page; htmx polls it until the job finishes."""
    return render(request, "jobs/_job_status.html", _job_context(job_id))


@access_required("job", "write")
@require_POST
def job_cancel(request, job_id):
    job = selectors.job_get(job_id)
    try:
        services.job_cancel(job=job, user=request.user)
    except BerthError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Job {job.id} cancelled.")
    return redirect(job)


def _form_field(form, name):
    """The form field a service error names (params are the fields' names, ``budget.x`` → ``x``),
    or None for the form as a whole."""
    for candidate in filter(None, (name, (name or "").rsplit(".", 1)[-1])):
        if candidate in form.fields:
            return candidate
    return None


FORMS = {
    "convert": ConvertForm,
    "compress": CompressForm,
    "benchmark": BenchmarkForm,
    "serve_profile": ServeProfileForm,
}


@access_required("job", "write")
@require_POST
def version_run(request, name, version, kind):
    """Start a convert, compress, benchmark (one per target) or serving profile job from the
    version page."""
    found = version_get(name, version)
    if kind not in FORMS:
        raise Http404("No such job kind.")
    form = FORMS[kind](request.POST, prefix=kind)
    if not form.is_valid():
        return version_page(request, found, bound_form=form, kind=kind)
    targets = form.cleaned_data["targets"] if kind == "benchmark" else [form.cleaned_data["target"]]
    started = []
    try:
        with transaction.atomic():
            for target in targets:
                started.append(
                    services.job_create(
                        kind=kind, version=found, target=target, params=form.params(), created_by=request.user
                    )
                )
    except BerthError as exc:
        form.add_error(_form_field(form, exc.field), exc.message)
        return version_page(request, found, bound_form=form, kind=kind)
    if len(started) == 1:
        return redirect(started[0])
    messages.success(request, f"Started {len(started)} {kind} jobs: " + ", ".join(f"#{j.id}" for j in started))
    return redirect(found)


def _comparison(request):
    """(query errors, comparison or None) from the page's query string."""
    from .comparison import benchmark_comparison
    from .serializers import CompareQuerySerializer

    if not request.GET.get("model"):
        return {}, None
    query = CompareQuerySerializer(data=request.GET)
    if not query.is_valid():
        return query.errors, None
    try:
        return {}, benchmark_comparison(**CompareQuerySerializer.comparison_kwargs(query.validated_data))
    except BerthError as exc:
        return {exc.field or "query": [exc.message]}, None


@access_required("job")
def compare(request):
    """Versions × targets side by side; the state is the query string, so the URL can be shared."""
    from registry.models import Model

    from .charts import all_charts
    from .comparison import METRICS
    from .engine.gpu import TIMING_MODES

    errors, comparison = _comparison(request)
    context = {
        "models": Model.objects.order_by("name").values_list("name", flat=True),
        "errors": errors,
        "comparison": comparison,
        "query": request.GET,
        "metrics": METRICS,
        "timing_modes": TIMING_MODES,
    }
    if comparison is not None:
        # GPU memory is a column only where some result measured it (GPU targets).
        metrics = [
            m
            for m in METRICS
            if m[0] != "device_memory_bytes" or any(row.figures[m[0]].value is not None for row in comparison.rows)
        ]
        context.update(
            metrics=metrics,
            charts=all_charts(comparison),
            rows=_display_rows(comparison, metrics),
            serving_rows=_serving_rows(comparison),
            selected_versions={v.pk for v in comparison.versions},
            selected_targets={t.pk for t in comparison.targets},
        )
    return render(request, "jobs/compare.html", context)


def _display_rows(comparison, metrics):
    """The table's rows with their figures formatted for people (the CSV has the raw numbers)."""
    from django.template.defaultfilters import filesizeformat

    from .engine.decision import format_ms
    from .engine.gpu import fits_on_gpu

    def show(value, unit):
        if value is None:
            return "missing"
        if unit == "bytes":
            return filesizeformat(value)
        if unit == "ms":
            return format_ms(value)
        if unit == "items/s":
            return f"{value:,.0f}"
        return f"{value * 100:.2f} %"

    gpu_memory = selectors.gpu_memory_by_queue() if any(m[0] == "device_memory_bytes" for m in metrics) else {}
    rows = []
    for row in comparison.rows:
        cells = []
        for key, _label, unit, _better in metrics:
            figure = row.figures[key]
            cell = {
                "value": show(figure.value, unit),
                "ratio": f"{figure.ratio:.2f}×" if figure.ratio is not None else "",
                "verdict": figure.verdict or "",
            }
            if key == "device_memory_bytes" and figure.value is not None:
                fits, cell["note"] = fits_on_gpu(figure.value, gpu_memory.get(row.target.queue))
                cell["fit"] = {True: "fits", False: "does not fit", None: ""}[fits]
                if fits is False:
                    cell["verdict"] = "worse"
            cells.append(cell)
        rows.append(
            {
                "row": row,
                "cells": cells,
                "delta": f"{row.accuracy_delta * 100:+.2f} pt" if row.accuracy_delta is not None else "",
            }
        )
    return rows


def _serving_rows(comparison):
    """The rows with a serving profile, each with ``fastest``: whether its recommendation serves
    the most requests per second on its target."""
    rows = [row for row in comparison.rows if row.serving_profile]
    best = {}
    for row in rows:
        throughput = (row.serving_profile["recommended"] or {}).get("throughput")
        if throughput is not None and throughput > best.get(row.target.pk, -1):
            best[row.target.pk] = throughput
    return [
        {
            "row": row,
            "profile": row.serving_profile,
            "fastest": (row.serving_profile["recommended"] or {}).get("throughput") == best.get(row.target.pk),
        }
        for row in rows
    ]


@access_required("job")
def compare_recommendations(request):
    """The recommendation alone (htmx swaps it in as the budget changes); the browser's URL
    follows, so that the shared link carries the budget."""
    errors, comparison = _comparison(request)
    response = render(request, "jobs/_recommendations.html", {"comparison": comparison, "errors": errors})
    response["HX-Replace-Url"] = f"{reverse('compare')}?{request.GET.urlencode()}"
    return response
