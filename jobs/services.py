"""Job use cases: create and enqueue, claim, report progress, finish, cancel.

A job's state lives in its row. A Celery task only carries the id and calls ``job_run``,
which claims the row with a conditional UPDATE, so a re-delivered message never runs a job
twice and a cancelled job never starts.
"""

import logging
import uuid

from celery.exceptions import SoftTimeLimitExceeded
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from dashboard.errors import BerthError, Conflict

from .models import Job

logger = logging.getLogger(__name__)

# Seconds: (soft, hard). The soft limit raises inside the job so it can fail cleanly.
TIME_LIMITS = {
    Job.Kind.VALIDATE: (300, 360),
}
LOG_LIMIT_CHARS = 64 * 1024


class JobCancelled(Exception):
    pass


# --- creating ------------------------------------------------------------------------------

def job_create(*, kind, version, target=None, params=None, created_by=None):
    """Create a job row and enqueue it once the surrounding transaction commits."""
    if kind not in HANDLERS:
        available = ", ".join(sorted(HANDLERS))
        raise BerthError(f"Unknown job kind {kind!r}. Available: {available}.", field="kind")
    handler = HANDLERS[kind]
    params = handler.clean_params(params or {}, version=version, target=target)
    queue = target.queue if (target is not None and handler.runs_on_target) else "default"
    with transaction.atomic():
        handler.before_create(version=version)
        job = Job.objects.create(kind=kind, version=version, target=target, params=params, queue=queue,
                                 created_by=created_by, celery_task_id=uuid.uuid4().hex,
                                 message="Waiting for a worker")
        transaction.on_commit(lambda: job_enqueue(job))
    return job


def job_enqueue(job):
    from .tasks import run_job

    soft, hard = TIME_LIMITS.get(job.kind, (3600, 3900))
    run_job.apply_async(args=[job.id], queue=job.queue, task_id=job.celery_task_id,
                        soft_time_limit=soft, time_limit=hard)


# --- running -------------------------------------------------------------------------------

def job_claim(*, job_id, worker_host):
    """Take a queued job for this worker; None if it is not queued (done, running, cancelled)."""
    now = timezone.now()
    claimed = Job.objects.filter(id=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING, started=now, heartbeat=now, worker_host=worker_host,
        message="Started", progress=0,
    )
    if claimed != 1:
        return None
    return Job.objects.select_related("version__model", "target").get(id=job_id)


def job_run(*, job_id, worker_host):
    """Run one job to the end: claim it, call its handler, record success or failure."""
    job = job_claim(job_id=job_id, worker_host=worker_host)
    if job is None:
        logger.info("job %s is not queued any more; nothing to do", job_id)
        return
    handler = HANDLERS[job.kind]
    reporter = Reporter(job)
    job_log(job_id=job.id, line=f"Started on {worker_host}")
    try:
        result = handler.run(job, reporter)
    except JobCancelled:
        job_log(job_id=job.id, line="Stopped: the job was cancelled")
        handler.on_failure(job, "The job was cancelled.")
    except SoftTimeLimitExceeded:
        soft, _ = TIME_LIMITS.get(job.kind, (3600, 3900))
        _fail(job, handler, f"The job took longer than its time limit ({soft} s) and was stopped.")
    except BerthError as exc:
        _fail(job, handler, exc.message)
    except Exception as exc:  # a bug or an environment problem: fail the job, keep the trace in the worker log
        logger.exception("job %s crashed", job.id)
        _fail(job, handler, f"Internal error ({type(exc).__name__}): {exc}")
    else:
        job_succeed(job=job, result=result or {})


def _fail(job, handler, error):
    job_fail(job=job, error=error)
    handler.on_failure(job, error)


class Reporter:
    """The progress callback given to engines: updates the row and stops a cancelled job."""

    def __init__(self, job):
        self.job = job

    def __call__(self, percent, message=""):
        percent = max(0, min(100, int(percent)))
        updated = Job.objects.filter(id=self.job.id, status=Job.Status.RUNNING).update(
            progress=percent, message=message[:300], heartbeat=timezone.now()
        )
        if message:
            job_log(job_id=self.job.id, line=message)
        if updated != 1:
            raise JobCancelled()

    def log(self, line):
        job_log(job_id=self.job.id, line=line)


def job_log(*, job_id, line):
    stamp = timezone.now().strftime("%H:%M:%S")
    Job.objects.filter(id=job_id).update(log=Concat(F("log"), Value(f"{stamp} {line}\n")))


def job_succeed(*, job, result, message="Done"):
    Job.objects.filter(id=job.id, status=Job.Status.RUNNING).update(
        status=Job.Status.SUCCEEDED, progress=100, message=message, result=result, finished=timezone.now(),
        heartbeat=timezone.now(),
    )
    job_log(job_id=job.id, line=message)


def job_fail(*, job, error):
    Job.objects.filter(id=job.id, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
        status=Job.Status.FAILED, error=error, message="Failed", finished=timezone.now()
    )
    job_log(job_id=job.id, line=f"Failed: {error}")


def job_cancel(*, job, user=None):
    """Cancel a queued or running job. A running job stops at its next progress report."""
    from dashboard.celery import app

    cancelled = Job.objects.filter(id=job.id, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
        status=Job.Status.CANCELLED, message="Cancelled", finished=timezone.now()
    )
    if cancelled != 1:
        job.refresh_from_db()
        raise Conflict(f"Job {job.id} already {job.status}; only queued or running jobs can be cancelled.")
    who = f" by {user.username}" if user is not None else ""
    job_log(job_id=job.id, line=f"Cancelled{who}")
    if job.celery_task_id:
        app.control.revoke(job.celery_task_id)
    job.refresh_from_db()
    if job.started is None:
        HANDLERS[job.kind].on_failure(job, "The job was cancelled before it started.")
    return job


# --- kinds ---------------------------------------------------------------------------------

class JobKind:
    """What a kind of job needs: parameter checks, what to do, what to undo on failure."""

    runs_on_target = False

    def clean_params(self, params, *, version, target):
        return params

    def before_create(self, *, version):
        pass

    def run(self, job, report):
        raise NotImplementedError

    def on_failure(self, job, error):
        pass


class ValidateKind(JobKind):
    """Load the version safely, read its signature, run one inference: ready or invalid."""

    def clean_params(self, params, *, version, target):
        if params:
            raise BerthError("A validate job takes no parameters.", field="params")
        return {}

    def before_create(self, *, version):
        from registry.models import ModelVersion

        ModelVersion.objects.filter(pk=version.pk).update(
            status=ModelVersion.Status.VALIDATING, status_detail="Waiting for the validate job."
        )

    def run(self, job, report):
        from registry import services as registry_services
        from registry import storage

        from .engine.validate import ModelInvalid, inspect_model

        version = job.version
        report(5, "Checking the stored file's sha256")
        try:
            with storage.local_copy(version.artifact.name, sha256=version.sha256) as path:
                inspection = inspect_model(path, version.format, input_shapes=version.metadata.get("input_shapes"),
                                           progress=report)
        except ModelInvalid as exc:
            raise BerthError(str(exc)) from exc
        detail_parts = list(inspection.notes)
        if inspection.inference_ms is not None:
            detail_parts.insert(0, f"Test inference on generated inputs: {inspection.inference_ms:.1f} ms (cold).")
        registry_services.version_mark_ready(version=version, io_signature=inspection.io_signature,
                                             detail=" ".join(detail_parts))
        return {"io_signature": inspection.io_signature, "inference_ms": inspection.inference_ms,
                "notes": inspection.notes}

    def on_failure(self, job, error):
        from registry import services as registry_services

        registry_services.version_mark_invalid(version=job.version, reason=error)


HANDLERS = {
    Job.Kind.VALIDATE: ValidateKind(),
}
