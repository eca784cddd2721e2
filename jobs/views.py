from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from dashboard.access import ENGINEER, VIEWER, role_required
from dashboard.errors import BerthError

from registry.selectors import version_get

from . import selectors, services
from .forms import BenchmarkForm, CompressForm, ConvertForm
from .models import Job


@role_required(VIEWER)
def job_list(request):
    filters = {key: request.GET.get(key, "") for key in ("kind", "status", "target")}
    page = Paginator(selectors.job_list(**filters), 50).get_page(request.GET.get("page"))
    return render(request, "jobs/job_list.html", {
        "page": page, "filters": filters, "kinds": Job.Kind.choices, "statuses": Job.Status.choices,
    })


def _job_context(job_id):
    job = selectors.job_get(job_id)
    return {"job": job, "waiting_for": selectors.waiting_reason(job, selectors.served_queues())}


@role_required(VIEWER)
def job_detail(request, job_id):
    return render(request, "jobs/job_detail.html", _job_context(job_id))


@role_required(VIEWER)
def job_status(request, job_id):
    """The live part of the job page; htmx polls it until the job finishes."""
    return render(request, "jobs/_job_status.html", _job_context(job_id))


@role_required(ENGINEER)
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


FORMS = {"convert": ConvertForm, "compress": CompressForm, "benchmark": BenchmarkForm}


@role_required(ENGINEER)
@require_POST
def version_run(request, name, version, kind):
    """Start a convert, compress or benchmark job (one per target) from the version page."""
    found = version_get(name, version)
    if kind not in FORMS:
        raise Http404("No such job kind.")
    form = FORMS[kind](request.POST, prefix=kind)
    if not form.is_valid():
        messages.error(request, "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()))
        return redirect(found)
    targets = form.cleaned_data["targets"] if kind == "benchmark" else [form.cleaned_data["target"]]
    started = []
    try:
        with transaction.atomic():
            for target in targets:
                started.append(services.job_create(kind=kind, version=found, target=target, params=form.params(),
                                                   created_by=request.user))
    except BerthError as exc:
        messages.error(request, exc.message)
        return redirect(found)
    if len(started) == 1:
        return redirect(started[0])
    messages.success(request, f"Started {len(started)} {kind} jobs: " + ", ".join(f"#{j.id}" for j in started))
    return redirect(found)

