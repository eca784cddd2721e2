from django.conf import settings
from django.db import models
from django.urls import reverse

from registry.models import model_name_validator


class Endpoint(models.Model):
    """Where deployed versions of one model are served (by any number of berth-serve replicas)."""

    name = models.CharField(max_length=100, unique=True, validators=[model_name_validator])
    model = models.ForeignKey("registry.Model", related_name="endpoints", on_delete=models.PROTECT)
    target = models.ForeignKey("registry.HardwareTarget", related_name="endpoints", on_delete=models.PROTECT)
    description = models.TextField(blank=True)
    # The token is shown once; only its sha256 is kept (and its first characters, to tell tokens apart).
    token_hash = models.CharField(max_length=64, db_index=True)
    token_prefix = models.CharField(max_length=8)
    token_rotated = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("monitoring:endpoint", args=[self.name])


class Deployment(models.Model):
    """A version serving a share of an endpoint's traffic. Every change of an endpoint's traffic
    split writes a new generation of rows; the active rows of the newest generation sum to 100."""

    class State(models.TextChoices):
        ACTIVE = "active"
        RETIRED = "retired"

    class Action(models.TextChoices):
        DEPLOY = "deploy"
        WEIGHTS = "weights"
        PROMOTE = "promote"
        ROLLBACK = "rollback"

    endpoint = models.ForeignKey(Endpoint, related_name="deployments", on_delete=models.CASCADE)
    version = models.ForeignKey("registry.ModelVersion", related_name="deployments", on_delete=models.PROTECT)
    weight = models.PositiveSmallIntegerField()
    generation = models.PositiveIntegerField()
    action = models.CharField(max_length=10, choices=Action.choices)
    state = models.CharField(max_length=8, choices=State.choices, default=State.ACTIVE)
    deployed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    deployed = models.DateTimeField(auto_now_add=True)
    retired = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-generation", "-weight", "version_id"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "generation", "version"],
                                               name="one_row_per_version_per_generation")]
        indexes = [models.Index(fields=["endpoint", "state"])]

    def __str__(self):
        return f"{self.endpoint.name}: {self.version} {self.weight} % (generation {self.generation})"


class MetricWindow(models.Model):
    """What an endpoint's runtimes reported for one version over one minute (or one hour once
    compacted): counts, error kinds, a mergeable latency sketch and feature histograms."""

    class Resolution(models.TextChoices):
        MINUTE = "minute"
        HOUR = "hour"

    endpoint = models.ForeignKey(Endpoint, related_name="windows", on_delete=models.CASCADE)
    version = models.ForeignKey("registry.ModelVersion", related_name="windows", on_delete=models.CASCADE)
    start = models.DateTimeField()
    resolution = models.CharField(max_length=6, choices=Resolution.choices, default=Resolution.MINUTE)
    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    error_kinds = models.JSONField(default=dict)
    latency = models.JSONField(default=dict, help_text='{"alpha", "buckets": {index: count}, "zero_count"} in ms')
    features = models.JSONField(default=dict, help_text="{feature: counts on the reference bins}")
    flushes = models.PositiveIntegerField(default=0)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["start"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "version", "start", "resolution"],
                                               name="one_window_per_version_and_start")]
        indexes = [models.Index(fields=["endpoint", "start"])]


class TelemetryFlush(models.Model):
    """A telemetry POST already counted, so that a retried one is not counted twice."""

    endpoint = models.ForeignKey(Endpoint, related_name="flushes", on_delete=models.CASCADE)
    flush_id = models.UUIDField()
    start = models.DateTimeField()
    received = models.DateTimeField(auto_now_add=True)
    dropped = models.PositiveIntegerField(default=0, help_text="Flushes the runtime had to discard before this one")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "flush_id"], name="one_flush_per_id")]
