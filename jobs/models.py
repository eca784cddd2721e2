from django.conf import settings
from django.db import models
from django.urls import reverse


class Job(models.Model):
    """One unit of work for a worker. The row is the single source of truth for its state;
    Celery only carries the id."""

    class Kind(models.TextChoices):
        VALIDATE = "validate"
        CONVERT = "convert"
        COMPRESS = "compress"
        BENCHMARK = "benchmark"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=12, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=300, blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    version = models.ForeignKey("registry.ModelVersion", related_name="jobs", on_delete=models.CASCADE)
    target = models.ForeignKey("registry.HardwareTarget", null=True, blank=True, related_name="jobs",
                               on_delete=models.PROTECT)
    output_version = models.ForeignKey("registry.ModelVersion", null=True, blank=True, related_name="produced_by",
                                       on_delete=models.SET_NULL)
    queue = models.CharField(max_length=60, default="default")
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
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
