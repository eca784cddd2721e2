from common.errors import BerthError, NotFound
from serving.protocol import ENCODINGS

from .models import BenchmarkResult, Job


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


def version_jobs(version, limit=20):
    """The version's latest jobs, newest first."""
    return list(Job.objects.filter(version=version).select_related("target").order_by("-created")[:limit])


def job_get(job_id):
    job = (
        Job.objects.select_related("version__model", "target", "output_version__model", "created_by")
        .filter(pk=job_id)
        .first()
    )
    if job is None:
        raise NotFound(f"There is no job {job_id}.")
    return job


def workers_overview():
    """(hosts, active targets, served queues) for the workers page, in a fixed number of queries:
    each host with ``live``, each target with ``served`` (a live worker takes its queue) and
    ``waiting`` (queued jobs on it)."""
    from django.db.models import Count

    from registry.models import HardwareTarget

    from .models import WorkerHost

    live_ids = set(live_workers().values_list("id", flat=True))
    hosts = list(WorkerHost.objects.all())
    for host in hosts:
        host.live = host.id in live_ids
    served = {queue for host in hosts if host.live for queue in host.queues}
    waiting = dict(
        Job.objects.filter(status=Job.Status.QUEUED)
        .order_by()
        .values("queue")
        .annotate(n=Count("id"))
        .values_list("queue", "n")
    )
    targets = list(HardwareTarget.objects.filter(active=True))
    for target in targets:
        target.served = target.queue in served
        target.waiting = waiting.get(target.queue, 0)
    return hosts, targets, served


def live_workers(*, now=None):
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from .models import WorkerHost

    now = now or timezone.now()
    return WorkerHost.objects.filter(
        stopped__isnull=True, last_seen__gte=now - timedelta(seconds=settings.BERTH_WORKER_LIVE_SECONDS)
    )


def gpu_memory_by_queue(*, now=None):
    """{queue: MiB of the smallest GPU a live worker consuming it reported}: what a model must fit in."""
    smallest = {}
    for worker in live_workers(now=now):
        sizes = [g.get("memory_mib") for g in worker.gpus or [] if g.get("memory_mib")]
        for queue in worker.queues if sizes else ():
            smallest[queue] = min(smallest.get(queue, min(sizes)), min(sizes))
    return smallest


def served_queues(*, now=None):
    """Queue names that at least one live worker consumes."""
    return {queue for worker in live_workers(now=now) for queue in worker.queues}


def idle_queues(*, now=None):
    """Queues consumed by a live worker that is running no job right now."""
    busy = set(Job.objects.filter(status=Job.Status.RUNNING).values_list("worker_host", flat=True))
    return {queue for worker in live_workers(now=now) if worker.hostname not in busy for queue in worker.queues}


def waiting_reason(job, served):
    """Why a queued job has not started, if it is because no live worker takes its queue."""
    if job.status == Job.Status.QUEUED and job.queue not in served:
        return f"Waiting for a worker on {job.queue}: no live worker consumes that queue."
    return ""


def benchmark_results(*, model=None, version=None, target=None, scope=None, encoding=None):
    """Benchmark rows for the API and CSV export, newest job first; ``scope`` (session_run or
    request) and ``encoding`` narrow them (BerthError naming the allowed values otherwise)."""
    rows = BenchmarkResult.objects.select_related("version__model", "target", "job").defer("samples")
    if scope:
        if scope not in BenchmarkResult.Scope.values:
            raise BerthError(
                f"scope must be one of {', '.join(BenchmarkResult.Scope.values)}, not {scope!r}.", field="scope"
            )
        rows = rows.filter(scope=scope)
    if encoding:
        if encoding not in ENCODINGS:
            raise BerthError(f"encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}.", field="encoding")
        rows = rows.filter(encoding=encoding)
    if model:
        rows = rows.filter(version__model__name=model)
    if version:
        rows = (
            rows.filter(version__version=version) if not isinstance(version, int) else rows.filter(version_id=version)
        )
    if target:
        rows = rows.filter(target__slug=target)
    return rows.order_by("version__model__name", "version__version", "target__slug", "-job_id", "batch_size", "threads")


def latest_benchmarks(version):
    """{target: [rows of its most recent benchmark job]} for the version page."""
    rows = list(
        BenchmarkResult.objects.filter(version=version, scope=BenchmarkResult.Scope.SESSION_RUN)
        .select_related("target")
        .defer("samples")
        .order_by("target__slug", "-job_id", "batch_size", "threads")
    )
    latest = {}
    for row in rows:
        job_id = latest.setdefault(row.target, {"job": row.job_id, "rows": []})["job"]
        if row.job_id == job_id:
            latest[row.target]["rows"].append(row)
    return {target: entry["rows"] for target, entry in latest.items()}


def latest_request_benchmarks(version):
    """[(target, encoding, rows of its most recent end-to-end job)] for the version page: request
    latency through a local berth-serve, kept apart from the session.run figures."""
    rows = (
        BenchmarkResult.objects.filter(version=version, scope=BenchmarkResult.Scope.REQUEST)
        .select_related("target")
        .defer("samples")
        .order_by("target__slug", "encoding", "-job_id", "batch_size")
    )
    latest = {}
    for row in rows:
        job_id, found = latest.setdefault((row.target, row.encoding), (row.job_id, []))
        if row.job_id == job_id:
            found.append(row)
    return [(target, encoding, found) for (target, encoding), (_, found) in latest.items()]


def accuracy_deltas(versions):
    """{version id: accuracy delta of its newest benchmark} for the lineage tree (one query)."""
    deltas = {}
    rows = (
        BenchmarkResult.objects.filter(version__in=versions, accuracy_delta__isnull=False)
        .order_by("version_id", "-job_id")
        .values_list("version_id", "accuracy_delta")
    )
    for version_id, delta in rows:
        deltas.setdefault(version_id, delta)
    return deltas


def serving_profiles(*, versions, targets=None):
    """{(version id, target id): the newest succeeded serving profile (a serve_profile job) of that
    version on that target}, one query whatever the number of versions and targets. Each is
    serving_profile_summary's dict."""
    jobs = Job.objects.filter(kind=Job.Kind.SERVE_PROFILE, status=Job.Status.SUCCEEDED, version__in=versions)
    if targets is not None:
        jobs = jobs.filter(target__in=targets)
    newest = {}
    for job in jobs.select_related("version__model", "target").order_by("-finished", "-id"):
        newest.setdefault((job.version_id, job.target_id), serving_profile_summary(job))
    return newest


def serving_profile_summary(job):
    """A serve_profile job's result as the pages show it: the job, its version and target, the p99
    budget (ms), every configuration measured (threads, max_batch_size, max_queue_delay_us,
    concurrency, requests completed in the measured window, seconds measured, throughput in
    requests/s, p50_ms, p99_ms, too_few_samples, batch_sizes formed as {"rows": runs}), the
    recommended one (None when none kept p99 within the budget), the search ("quick" or "full")
    and the grid's size (how many configurations a full search measures)."""
    result = job.result or {}
    runs = result.get("runs") or []
    return {
        "job": job,
        "version": job.version,
        "target": job.target,
        "budget_ms": result.get("p99_budget_ms", job.params.get("p99_budget_ms")),
        "runs": [_with_batches_formed(run) for run in runs],
        # Profiles from before the quick search measured the whole grid.
        "search": result.get("search", "full"),
        "grid": result.get("grid", len(runs)),
        "recommended": _with_batches_formed(result["recommended"]) if result.get("recommended") else None,
    }


def _with_batches_formed(run):
    """The run with ``formed``: its batch sizes formed as [(rows, runs)], fewest rows first (the
    stored keys are strings, as JSON has them)."""
    formed = sorted((int(rows), count) for rows, count in (run.get("batch_sizes") or {}).items())
    return {**run, "formed": formed}
