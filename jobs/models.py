from django.conf import settings
from django.db import models
from django.urls import reverse

from serving.protocol import ENCODINGS


class Job(models.Model):
    """One unit of work for a worker. The row is the single source of truth for its state;
    Celery only carries the id."""

    class Kind(models.TextChoices):
        VALIDATE = "validate"
        CONVERT = "convert"
        COMPRESS = "compress"
        BENCHMARK = "benchmark"
        PROFILE = "profile"
        SERVE_PROFILE = "serve_profile", "serving profile"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=300, blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    version = models.ForeignKey("registry.ModelVersion", related_name="jobs", on_delete=models.CASCADE)
    target = models.ForeignKey(
        "registry.HardwareTarget", null=True, blank=True, related_name="jobs", on_delete=models.PROTECT
    )
    output_version = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, related_name="produced_by", on_delete=models.SET_NULL
    )
    queue = models.CharField(max_length=60, default="default")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # When the message was last handed to the broker (the reconciler re-sends lost ones).
    enqueued = models.DateTimeField(null=True, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker_host = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["status", "-created"]), models.Index(fields=["kind", "-created"])]

    def __str__(self):
        return f"job {self.id} ({self.kind}, {self.status})"

    def get_absolute_url(self):
        return reverse("jobs:job", args=[self.id])

    @property
    def is_finished(self):
        return self.status in self.FINISHED

    @property
    def duration(self):
        if self.started and self.finished:
            return self.finished - self.started
        return None


class BenchmarkResult(models.Model):
    """One measured configuration (batch size × threads) of a version on a target.

    ``scope`` says what was timed: ``session_run`` (the model alone, what comparisons rank) or
    ``request`` (requests end to end through a local berth-serve in ``encoding``, what production's
    request latency is compared with). Figures of the two scopes are never compared with each other."""

    class Scope(models.TextChoices):
        SESSION_RUN = "session_run", "session.run"
        REQUEST = "request", "request (end to end)"

    job = models.ForeignKey(Job, related_name="benchmark_results", on_delete=models.CASCADE)
    version = models.ForeignKey("registry.ModelVersion", related_name="benchmark_results", on_delete=models.CASCADE)
    target = models.ForeignKey("registry.HardwareTarget", related_name="benchmark_results", on_delete=models.PROTECT)
    batch_size = models.PositiveIntegerField()
    threads = models.PositiveSmallIntegerField(null=True, blank=True, help_text="None: the runtime's default")
    iterations = models.PositiveIntegerField()
    warmup = models.PositiveIntegerField()
    p25_ms = models.FloatField(null=True, blank=True)
    p50_ms = models.FloatField()
    p75_ms = models.FloatField(null=True, blank=True)
    p90_ms = models.FloatField()
    p95_ms = models.FloatField()
    p99_ms = models.FloatField()
    min_ms = models.FloatField(null=True, blank=True)
    max_ms = models.FloatField(null=True, blank=True)
    mean_ms = models.FloatField()
    std_ms = models.FloatField()
    intervals = models.JSONField(
        default=dict, blank=True, help_text="95 % confidence intervals in ms: {p50: [low, high], ..., mean: [...]}"
    )
    throughput = models.FloatField(help_text="items per second")
    stable = models.BooleanField(help_text="The last three measuring windows agreed within 10 %")
    windows = models.JSONField(default=list, blank=True, help_text="Mean latency (ms) of each measuring window")
    peak_memory_bytes = models.BigIntegerField(null=True, blank=True, help_text="Peak RSS of a fresh process")
    load_time_ms = models.FloatField(null=True, blank=True, help_text="Cold session creation in a fresh process")
    device_memory_bytes = models.BigIntegerField(
        null=True, blank=True, help_text="GPU memory a fresh process held (NVML); GPU targets only"
    )
    gpu_utilization = models.FloatField(
        null=True, blank=True, help_text="Mean GPU utilization (%) during the timed runs; GPU targets only"
    )
    timing_mode = models.CharField(
        max_length=16,
        default="host",
        help_text="host: inputs copied in and outputs out each run; device: IO binding "
        "on the GPU; device+graph: and replayed as a CUDA graph",
    )
    scope = models.CharField(max_length=12, choices=Scope.choices, default=Scope.SESSION_RUN)
    encoding = models.CharField(
        max_length=8, blank=True, help_text="request scope: how the requests were sent (serving.protocol.ENCODINGS)"
    )
    # Against the parent on the evaluation set (fraction points), or output fidelity when
    # there is no labelled evaluation set.
    accuracy = models.FloatField(null=True, blank=True)
    accuracy_delta = models.FloatField(null=True, blank=True)
    fidelity = models.JSONField(default=dict, blank=True)
    # What the quality measures of the model's task came to, on which evaluation set, against
    # which reference, with sample counts and confidence intervals (jobs.engine.quality).
    quality = models.JSONField(default=dict, blank=True)
    samples = models.BinaryField(help_text="zlib-compressed float32 latencies in ms (at most 10,000, evenly thinned)")
    environment = models.JSONField(default=dict)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "target", "batch_size", "threads"]
        indexes = [models.Index(fields=["version", "target", "batch_size"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scope="session_run", encoding="")
                | models.Q(scope="request", encoding__in=ENCODINGS),
                name="benchmark_scope_encoding",
            )
        ]

    def __str__(self):
        return f"{self.version} on {self.target.slug}, batch {self.batch_size}: p50 {self.p50_ms:.3f} ms"


class WorkerHost(models.Model):
    """A Celery worker as it reported itself: hardware, runtimes, queues, last heartbeat."""

    hostname = models.CharField(max_length=200, unique=True)
    queues = models.JSONField(default=list)
    cpu_model = models.CharField(max_length=200, blank=True)
    cpu_count = models.PositiveIntegerField(null=True, blank=True)
    memory_bytes = models.BigIntegerField(null=True, blank=True)
    gpus = models.JSONField(default=list, blank=True)
    providers = models.JSONField(
        default=list, blank=True, help_text="onnxruntime execution providers a tiny session proved usable at start"
    )
    provider_problems = models.JSONField(
        default=dict, blank=True, help_text="{provider: why it cannot be used} for listed but unusable ones"
    )
    versions = models.JSONField(default=dict, blank=True, help_text="onnxruntime, torch, python")
    pid = models.PositiveIntegerField(null=True, blank=True)
    started = models.DateTimeField()
    last_seen = models.DateTimeField()
    stopped = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["hostname"]

    def __str__(self):
        return self.hostname
