from datetime import datetime, timezone as dt_timezone

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse

from berth.core.drift import WINDOWS, WINDOWS_NEEDED
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
    # After a rotation the previous token keeps working until old_token_expires (the grace period,
    # BERTH_TOKEN_GRACE_MINUTES), so replicas can be restarted with the new one.
    old_token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    old_token_prefix = models.CharField(max_length=8, blank=True)
    old_token_expires = models.DateTimeField(null=True, blank=True)
    # Scrape mode: an external server (Triton, MLServer) whose Prometheus /metrics Berth reads
    # instead of receiving telemetry. scrape_state keeps the last counters read, to take deltas.
    scrape_url = models.URLField(blank=True, help_text="Prometheus /metrics URL of a Triton or MLServer server")
    scrape_state = models.JSONField(default=dict, blank=True)
    scraped = models.DateTimeField(null=True, blank=True)
    scrape_error = models.TextField(blank=True)
    # {resolution: ISO time}: windows of each coarser resolution are rolled up from the minutes
    # before that time (monitoring.rollups); a late flush for an earlier minute is added to them too.
    rollups = models.JSONField(default=dict, blank=True)
    # Dynamic batching in berth-serve (serving/batching.py): 1 is off.
    max_batch_size = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(1024)],
        help_text="Requests of one version batched together, up to this many rows (1: no batching)",
    )
    max_queue_delay_us = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(1_000_000)],
        help_text="How long (µs) a request may wait in the queue for others to join its batch",
    )
    # Inference threads of each berth-serve worker process; null: the runtime's own --threads.
    inference_threads = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text="Inference threads per berth-serve worker process (empty: berth-serve's --threads)",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("monitoring:endpoint", args=[self.name])


class Replica(models.Model):
    """One berth-serve process serving an endpoint, as it last reported itself (every telemetry
    flush carries a ``replica`` object; every request to the dashboard its instance id)."""

    class Token(models.TextChoices):
        CURRENT = "current", "current token"
        OLD = "old", "old token (in its grace period)"

    endpoint = models.ForeignKey(Endpoint, related_name="replicas", on_delete=models.CASCADE)
    instance = models.CharField(max_length=64)
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    runtime_version = models.CharField(max_length=40, blank=True)
    generation = models.PositiveIntegerField(null=True, blank=True)
    versions = models.JSONField(default=list, blank=True, help_text="The versions it routes to")
    spec_polled = models.DateTimeField(null=True, blank=True, help_text="When it last fetched the spec")
    token = models.CharField(max_length=8, choices=Token.choices, default=Token.CURRENT)
    token_prefix = models.CharField(max_length=8, blank=True)
    started = models.DateTimeField(null=True, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField()
    refused = models.DateTimeField(null=True, blank=True, help_text="When the dashboard last refused its token")
    refused_reason = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["host", "instance"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "instance"], name="one_replica_per_instance")]

    def __str__(self):
        return f"{self.endpoint.name}: {self.host or '?'} ({self.instance[:8]})"


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
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "generation", "version"], name="one_row_per_version_per_generation"
            )
        ]
        indexes = [models.Index(fields=["endpoint", "state"])]

    def __str__(self):
        return f"{self.endpoint.name}: {self.version} {self.weight} % (generation {self.generation})"


class MetricWindow(models.Model):
    """What an endpoint's runtimes reported for one version over one minute (or one hour once
    compacted): counts, error kinds, a mergeable latency sketch and feature histograms."""

    class Resolution(models.TextChoices):
        MINUTE = "minute"
        QUARTER = "15min", "15 minutes"
        HOUR = "hour"
        SIX_HOURS = "6hour", "6 hours"

    # The coarser resolutions minutes are rolled up into (monitoring/rollups.py), with their length.
    LEVELS = ((Resolution.QUARTER, 900), (Resolution.HOUR, 3600), (Resolution.SIX_HOURS, 21600))

    @staticmethod
    def period_start(moment, seconds):
        """The start of the period of ``seconds`` (aligned to the epoch, in UTC) holding ``moment``."""
        stamp = int(moment.timestamp())
        return datetime.fromtimestamp(stamp - stamp % seconds, tz=dt_timezone.utc)

    class Source(models.TextChoices):
        RUNTIME = "runtime", "berth-serve telemetry"
        EVENTS = "events", "raw events"
        SCRAPE = "scrape", "scraped Prometheus metrics"

    endpoint = models.ForeignKey(Endpoint, related_name="windows", on_delete=models.CASCADE)
    version = models.ForeignKey("registry.ModelVersion", related_name="windows", on_delete=models.CASCADE)
    start = models.DateTimeField()
    resolution = models.CharField(max_length=6, choices=Resolution.choices, default=Resolution.MINUTE)
    requests = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    error_kinds = models.JSONField(default=dict)
    latency = models.JSONField(default=dict, help_text='{"alpha", "buckets": {index: count}, "zero_count"} in ms')
    features = models.JSONField(default=dict, help_text="{feature: counts on the reference bins}")
    batch_sizes = models.JSONField(
        default=dict, blank=True, help_text='{"<rows>": model runs}: the rows of each model run (the batch formed)'
    )
    inference_latency = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"<rows>": sketch}: session.run time (ms) of the model runs of that many '
        "rows, without decoding, routing or encoding (berth-serve only)",
    )
    request_latency = models.JSONField(
        default=dict,
        blank=True,
        help_text='{"<encoding>": {"<rows>": sketch}}: latency (ms) of the successful requests that came in '
        "that encoding (json, binary, grpc) with that many rows (berth-serve only)",
    )
    flushes = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.RUNTIME)
    # A scraped source may give only a latency sum (Triton) or coarse histogram buckets (MLServer):
    # such a window is marked coarse and its mean comes from latency_sum_ms / requests.
    coarse = models.BooleanField(default=False)
    latency_sum_ms = models.FloatField(default=0.0)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["start"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "version", "start", "resolution"], name="one_window_per_version_and_start"
            )
        ]
        indexes = [models.Index(fields=["endpoint", "start"]), models.Index(fields=["endpoint", "resolution", "start"])]


class TelemetryFlush(models.Model):
    """A telemetry POST already counted, so that a retried one is not counted twice."""

    endpoint = models.ForeignKey(Endpoint, related_name="flushes", on_delete=models.CASCADE)
    flush_id = models.UUIDField()
    start = models.DateTimeField(db_index=True)
    received = models.DateTimeField(auto_now_add=True)
    dropped = models.PositiveIntegerField(default=0, help_text="Flushes the runtime had to discard before this one")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "flush_id"], name="one_flush_per_id")]


class AlertRule(models.Model):
    """A condition on an endpoint's recent windows, evaluated every minute per version."""

    class Metric(models.TextChoices):
        P95_LATENCY = "p95_latency", "p95 latency above X ms"
        ERROR_RATE = "error_rate", "error rate above Y %"
        DRIFT = "drift", "drift score above its threshold"
        BENCHMARK_GAP = "benchmark_gap", "p95 above k × its like benchmark p95 (inference or request)"

    class Latency(models.TextChoices):
        """Which production latency a benchmark_gap rule compares with its like benchmark."""

        INFERENCE = "inference", "inference (session.run) against the benchmark, same batch size"
        REQUEST = "request", "request against the end-to-end benchmark, same encoding and batch size"

    endpoint = models.ForeignKey(Endpoint, related_name="alert_rules", on_delete=models.CASCADE)
    metric = models.CharField(max_length=16, choices=Metric.choices)
    # ms for p95_latency, % for error_rate, k for benchmark_gap; for drift, the share of features (%) that
    # must drift past their own test's threshold (empty: any feature).
    threshold = models.FloatField(null=True, blank=True)
    # benchmark_gap only: what is compared (monitoring.comparable); other metrics keep the default.
    latency = models.CharField(max_length=9, choices=Latency.choices, default=Latency.INFERENCE)
    window_minutes = models.PositiveSmallIntegerField(default=5)
    min_requests = models.PositiveIntegerField(default=20, help_text="Fewer requests in the window: no verdict")
    webhook_url = models.URLField(blank=True)
    emails = models.CharField(max_length=500, blank=True, help_text="Comma-separated addresses")
    enabled = models.BooleanField(default=True)
    silenced_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["endpoint__name", "metric", "id"]

    def __str__(self):
        return f"{self.endpoint.name}: {self.describe()}"

    def describe(self):
        window = f"over {self.window_minutes} min"
        if self.metric == self.Metric.P95_LATENCY:
            return f"p95 latency above {self.threshold:g} ms {window}"
        if self.metric == self.Metric.ERROR_RATE:
            return f"error rate above {self.threshold:g} % {window}"
        if self.metric == self.Metric.BENCHMARK_GAP:
            if self.latency == self.Latency.REQUEST:
                return (
                    f"request p95 above {self.threshold:g} × the end-to-end benchmark p95 "
                    f"(same encoding and batch size) {window}"
                )
            return f"inference p95 above {self.threshold:g} × the benchmark p95 (same batch size) {window}"
        windows = f"in {WINDOWS_NEEDED} of the last {WINDOWS} windows of {self.window_minutes} min"
        if self.threshold:
            return f"drift on at least {self.threshold:g} % of the features {windows}"
        return f"drift on any feature (significant and material) {windows}"


class Alert(models.Model):
    """One firing of a rule for one version, from the evaluation that found the condition true
    to the one that found it false again."""

    class State(models.TextChoices):
        FIRING = "firing"
        RESOLVED = "resolved"

    rule = models.ForeignKey(AlertRule, related_name="alerts", on_delete=models.CASCADE)
    endpoint = models.ForeignKey(Endpoint, related_name="alerts", on_delete=models.CASCADE)
    version = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, related_name="alerts", on_delete=models.CASCADE
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.FIRING)
    value = models.FloatField(null=True, blank=True, help_text="The measured value when it fired")
    last_value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    message = models.TextField()
    details = models.JSONField(default=dict, blank=True)
    started = models.DateTimeField()
    resolved = models.DateTimeField(null=True, blank=True)
    last_evaluated = models.DateTimeField()

    class Meta:
        ordering = ["-started"]
        indexes = [models.Index(fields=["state", "-started"])]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "version"],
                condition=models.Q(state="firing"),
                name="one_firing_alert_per_rule_and_version",
            )
        ]

    def __str__(self):
        return self.message


class Notification(models.Model):
    """A message about an alert to one webhook or e-mail address, with its delivery attempts."""

    class Channel(models.TextChoices):
        WEBHOOK = "webhook"
        EMAIL = "email"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"
        SILENCED = "silenced"

    alert = models.ForeignKey(Alert, related_name="notifications", on_delete=models.CASCADE)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    event = models.CharField(max_length=8, choices=Alert.State.choices)
    destination = models.CharField(max_length=500)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    sent = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created", "id"]
