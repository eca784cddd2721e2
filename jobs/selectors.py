from dashboard.errors import NotFound

from .models import Job


def job_list(*, kind="", status="", target="", version=None):
    jobs = Job.objects.select_related("version__model", "target", "output_version__model", "created_by")
    if kind:
        jobs = jobs.filter(kind=kind)
    if status:
        jobs = jobs.filter(status=status)
    if target:
        jobs = jobs.filter(target__slug=target)
    if version is not None:
        jobs = jobs.filter(version=version)
    return jobs.order_by("-created", "-id")


def job_get(job_id):
    job = Job.objects.select_related("version__model", "target", "output_version__model", "created_by").filter(
        pk=job_id).first()
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    return job
