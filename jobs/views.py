from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from dashboard.access import ENGINEER, VIEWER, role_required
from dashboard.errors import BerthError

from . import selectors, services
from .models import Job


@role_required(VIEWER)
def job_list(request):
    filters = {key: request.GET.get(key, "") for key in ("kind", "status", "target")}
    page = Paginator(selectors.job_list(**filters), 50).get_page(request.GET.get("page"))
    return render(request, "jobs/job_list.html", {
        "page": page, "filters": filters, "kinds": Job.Kind.choices, "statuses": Job.Status.choices,
    })


@role_required(VIEWER)
def job_detail(request, job_id):
    return render(request, "jobs/job_detail.html", {"job": selectors.job_get(job_id)})


@role_required(VIEWER)
def job_status(request, job_id):
    """The live part of the job page; htmx polls it until the job finishes."""
    return render(request, "jobs/_job_status.html", {"job": selectors.job_get(job_id)})


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
