"""Job use cases: create and enqueue, claim, report progress, finish, cancel.

A job's state lives in its row. A Celery task only carries the id and calls ``job_run``,
which claims the row with a conditional UPDATE, so a re-delivered message never runs a job
twice and a cancelled job never starts.
"""

import logging
import threading
import uuid
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone

from common import audit
from common.errors import BerthError, Conflict

from .kind_table import kind_get, kind_names
from .models import Job

logger = logging.getLogger(__name__)


WAITING = "Waiting for a worker"
NOT_SENT = "Waiting for the broker: it could not be reached; the job is sent when it is back"
# A job committed this recently may still be on its way to the broker (see job_create).
UNSENT_GRACE = timedelta(seconds=5)


class JobCancelled(Exception):
    pass


# --- creating ------------------------------------------------------------------------------


def profiles_queue_missing(*, versions, user=None):
    """Queue a profile job for each of ``versions`` whose model has a reference dataset, that has
    no reference profile and no profile job waiting or running (deployed versions need one for
    drift)."""
    from registry.models import Dataset

    for version in versions:
        has_reference = Dataset.objects.filter(model_id=version.model_id, kind=Dataset.Kind.REFERENCE).exists()
        pending = Job.objects.filter(
            version=version, kind="profile", status__in=[Job.Status.QUEUED, Job.Status.RUNNING]
        ).exists()
        if has_reference and not pending and not version.reference_profiles.exists():
            job_create(kind="profile", version=version, created_by=user)


def validate_registered_version(*, version, user, **_signal):
    """A version was registered without a signature (registry.signals.validation_requested):
    queue its validate job, in the registering transaction."""
    return job_create(kind="validate", version=version, created_by=user)


def job_create(*, kind, version, target=None, params=None, created_by=None):
    """Create a job row and enqueue it once the surrounding transaction commits."""
    if kind not in kind_names():
        raise BerthError(f"Unknown job kind {kind!r}. Available: {', '.join(kind_names())}.", field="kind")
    handler = kind_get(kind)
    if not isinstance(params or {}, dict):
        raise BerthError("params must be a JSON object.", field="params")
    params = handler.clean_params(params or {}, version=version, target=target)
    queue = target.queue if (target is not None and handler.runs_on_target) else "default"
    with transaction.atomic():
        handler.before_create(version=version)
        job = Job.objects.create(
            kind=kind,
            version=version,
            target=target,
            params=params,
            queue=queue,
            created_by=created_by,
            celery_task_id=uuid.uuid4().hex,
            message=WAITING,
        )
        transaction.on_commit(lambda: job_enqueue(job))
    return job


RUN_TASK = "jobs.run_job"


def job_enqueue(job):
    """Hand the job's id to the broker, on its queue, with its kind's time limits. Returns
    whether the broker took it. When the broker cannot be reached the job stays queued, unsent,
    and says so; ``jobs_requeue_lost`` sends it once the broker is back."""
    from celery import current_app
    from kombu.exceptions import OperationalError as BrokerUnreachable

    from .engine.errors import first_line

    soft, hard = kind_get(job.kind).time_limits
    try:
        # By the task's name (jobs/tasks.py runs it): the tasks module imports services, never the reverse.
        current_app.send_task(
            RUN_TASK, args=[job.id], queue=job.queue, task_id=job.celery_task_id, soft_time_limit=soft, time_limit=hard
        )
    except BrokerUnreachable as exc:
        logger.warning("job %s not sent: the broker is unreachable (%s)", job.id, exc)
        if job.message != NOT_SENT:
            Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(message=NOT_SENT)
            job.message = NOT_SENT
            job_log(job_id=job.id, line=f"Not sent: the broker could not be reached ({first_line(exc)})")
        return False
    Job.objects.filter(pk=job.pk).update(enqueued=timezone.now())
    if job.message == NOT_SENT:
        Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(message=WAITING)
    return True


# --- running -------------------------------------------------------------------------------


def job_claim(*, job_id, worker_host):
    """Take a queued job for this worker; None if it is not queued (done, running, cancelled)."""
    now = timezone.now()
    claimed = Job.objects.filter(id=job_id, status=Job.Status.QUEUED).update(
        status=Job.Status.RUNNING,
        started=now,
        heartbeat=now,
        worker_host=worker_host,
        message="Started",
        progress=0,
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
    from .engine.benchmark import BenchmarkCancelled
    from .engine.errors import EngineError, first_line

    handler = kind_get(job.kind)
    reporter = Reporter(job)
    job_log(job_id=job.id, line=f"Started on {worker_host}")
    try:
        with _Heartbeat(job.id):
            result = handler.run(job, reporter)
    except (JobCancelled, BenchmarkCancelled):
        # The row left "running" under us: cancelled by a user, or failed by the reaper.
        status = Job.objects.values_list("status", flat=True).get(pk=job.pk)
        job_log(job_id=job.id, line=f"Stopped: the job was {status}")
        if status == Job.Status.CANCELLED:
            handler.on_failure(job, "The job was cancelled.")
    except SoftTimeLimitExceeded:
        soft, _ = handler.time_limits
        _fail(job, handler, f"The job took longer than its time limit ({soft} s) and was stopped.")
    except BerthError as exc:
        from registry.storage import IntegrityError as ArtifactIntegrityError

        if isinstance(exc, ArtifactIntegrityError):
            audit.record(
                audit.Action.INTEGRITY,
                job.version.ref if job.version_id else f"job {job.id}",
                details={"job": job.id, "kind": job.kind, "worker": worker_host, "error": exc.message},
            )
        _fail(job, handler, exc.message)
    except EngineError as exc:
        _fail(job, handler, str(exc))
    except Exception as exc:  # a bug or an environment problem: fail the job, keep the trace in the worker log
        logger.exception("job %s crashed", job.id)
        _fail(
            job, handler, f"Internal error ({type(exc).__name__}): {first_line(exc)}. The worker's log has the details."
        )
    else:
        job_succeed(job=job, result=result or {})


def _fail(job, handler, error):
    job_fail(job=job, error=error)
    handler.on_failure(job, error)


class _Heartbeat:
    """Touches the job's heartbeat while it runs, even through long engine steps that report no
    progress; the reaper fails jobs whose heartbeat stops (their worker died)."""

    def __init__(self, job_id):
        self.job_id = job_id
        self._stop = threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._beat, name=f"job-{self.job_id}-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self):
        from django.db import connection

        try:
            while not self._stop.wait(settings.BERTH_JOB_HEARTBEAT_SECONDS):
                Job.objects.filter(id=self.job_id, status=Job.Status.RUNNING).update(heartbeat=timezone.now())
        finally:
            connection.close()

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        return False


class Reporter:
    """The progress callback given to engines: updates the row and stops a cancelled job."""

    def __init__(self, job):
        self.job = job
        self._last_message = None

    def __call__(self, percent, message="", partial=None):
        percent = max(0, min(100, int(percent)))
        fields = {"result": partial} if partial is not None else {}
        updated = Job.objects.filter(id=self.job.id, status=Job.Status.RUNNING).update(
            progress=percent, message=message[:300], heartbeat=timezone.now(), **fields
        )
        if message and message != self._last_message:  # engines repeat a step's message as it advances
            job_log(job_id=self.job.id, line=message)
            self._last_message = message
        if updated != 1:
            raise JobCancelled()


def job_log(*, job_id, line):
    stamp = timezone.now().strftime("%H:%M:%S")
    Job.objects.filter(id=job_id).update(log=Concat(F("log"), Value(f"{stamp} {line}\n")))


def job_succeed(*, job, result, message="Done"):
    Job.objects.filter(id=job.id, status=Job.Status.RUNNING).update(
        status=Job.Status.SUCCEEDED,
        progress=100,
        message=message,
        result=result,
        finished=timezone.now(),
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
    from kombu.exceptions import OperationalError as BrokerUnreachable

    from celery import current_app as app  # the project's app (dashboard/celery.py), without importing the shell

    cancelled = Job.objects.filter(id=job.id, status__in=[Job.Status.QUEUED, Job.Status.RUNNING]).update(
        status=Job.Status.CANCELLED, message="Cancelled", finished=timezone.now()
    )
    if cancelled != 1:
        job.refresh_from_db()
        raise Conflict(f"Job {job.id} already {job.status}; only queued or running jobs can be cancelled.")
    who = f" by {user.username}" if user is not None else ""
    job_log(job_id=job.id, line=f"Cancelled{who}")
    if job.celery_task_id:
        try:
            app.control.revoke(job.celery_task_id)
        except BrokerUnreachable as exc:  # the row says cancelled: no worker will claim or go on with it
            logger.warning("job %s cancelled but not revoked: the broker is unreachable (%s)", job.id, exc)
    job.refresh_from_db()
    if job.started is None:
        kind_get(job.kind).on_failure(job, "The job was cancelled before it started.")
    return job


def job_set_output(*, job, version):
    """Record the version a job produced."""
    Job.objects.filter(pk=job.pk).update(output_version=version)
    job.output_version = version


# --- keeping jobs honest when workers or the broker fail ------------------------------------


def jobs_reap(*, now=None):
    """Fail running jobs whose heartbeat stopped: their worker died (SIGKILL, OOM, lost host).
    A re-delivered message for such a job finds it failed and does nothing. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.BERTH_JOB_LOST_AFTER_SECONDS)
    reaped = 0
    for job in Job.objects.filter(status=Job.Status.RUNNING, heartbeat__lt=cutoff).select_related("version"):
        error = (
            f"Worker lost: {job.worker_host or 'its worker'} stopped reporting at "
            f"{job.heartbeat:%Y-%m-%d %H:%M:%S} UTC (killed, out of memory or disconnected). Start the job again."
        )
        failed = Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, heartbeat__lt=cutoff).update(
            status=Job.Status.FAILED, error=error, message="Failed: worker lost", finished=now
        )
        if failed:
            reaped += 1
            job_log(job_id=job.id, line=error)
            kind_get(job.kind).on_failure(job, error)
    return reaped


def jobs_requeue_lost(*, now=None):
    """Send queued jobs the broker does not have, oldest first: jobs never sent (the broker was
    unreachable when they were created) and jobs queued for a long time while an idle live worker
    consumes their queue (a broker restarted without persistence forgets its messages). A
    duplicate message is harmless (claiming is once only). Returns how many were sent."""
    from .selectors import idle_queues

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.BERTH_JOB_REQUEUE_AFTER_SECONDS)
    idle = idle_queues(now=now)
    lost = Q(enqueued__lt=cutoff, queue__in=idle) | Q(enqueued__isnull=True, created__lt=now - UNSENT_GRACE)
    resent = 0
    for job in Job.objects.filter(lost, status=Job.Status.QUEUED).order_by("created", "id"):
        if job.enqueued is None:
            line = "Sent to the broker, which could not be reached when the job was created"
        else:
            line = (
                f"Re-sent to the broker: queued since {job.enqueued:%H:%M:%S} UTC while an idle worker "
                f"consumed {job.queue} (the broker may have lost the message)"
            )
        if not job_enqueue(job):
            break  # still unreachable: the next round tries again
        job_log(job_id=job.id, line=line)
        resent += 1
    return resent


# --- workers ----------------------------------------------------------------------------------


def worker_report(*, hostname, queues, facts, pid=None):
    """A worker started: record its hardware, runtimes and queues."""
    from .models import WorkerHost

    now = timezone.now()
    WorkerHost.objects.update_or_create(
        hostname=hostname,
        defaults={
            "queues": sorted(queues),
            "cpu_model": facts.get("cpu_model") or "",
            "cpu_count": facts.get("cpu_count"),
            "memory_bytes": facts.get("memory_bytes"),
            "gpus": facts.get("gpus") or [],
            "providers": facts.get("providers") or [],
            "provider_problems": facts.get("provider_problems") or {},
            "versions": facts.get("versions") or {},
            "pid": pid,
            "started": now,
            "last_seen": now,
            "stopped": None,
        },
    )


def worker_heartbeat(*, hostname):
    from .models import WorkerHost

    WorkerHost.objects.filter(hostname=hostname).update(last_seen=timezone.now(), stopped=None)


def worker_stopped(*, hostname):
    from .models import WorkerHost

    WorkerHost.objects.filter(hostname=hostname).update(stopped=timezone.now())
