import uuid

from django.conf import settings
from django.core.validators import RegexValidator, validate_slug
from django.db import models
from django.urls import reverse

version_validator = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$",
    "A version is 1-128 characters: letters, digits, '.', '_', '+', '-', starting with a letter or digit.",
)
model_name_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9_-]{0,99}$",
    "A model name is 1-100 characters: lowercase letters, digits, '-' and '_', starting with a letter or digit.",
)


class Model(models.Model):
    class Task(models.TextChoices):
        CLASSIFICATION = "classification"
        REGRESSION = "regression"
        EMBEDDING = "embedding"
        OTHER = "other"

    name = models.CharField(max_length=100, unique=True, validators=[model_name_validator])
    description = models.TextField(blank=True)
    task = models.CharField(max_length=20, choices=Task.choices, default=Task.OTHER)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("registry:model", args=[self.name])


class ModelVersion(models.Model):
    class Format(models.TextChoices):
        ONNX = "onnx", "ONNX"
        TORCHSCRIPT = "torchscript", "TorchScript"
        EXPORTED_PROGRAM = "exported_program", "torch.export (.pt2)"

    class Status(models.TextChoices):
        VALIDATING = "validating"
        READY = "ready"
        INVALID = "invalid"

    model = models.ForeignKey(Model, related_name="versions", on_delete=models.CASCADE)
    version = models.CharField(max_length=128, validators=[version_validator])
    parent = models.ForeignKey("self", null=True, blank=True, related_name="children", on_delete=models.PROTECT)
    # How this version was derived from its parent (converter, quantization settings, ...).
    recipe = models.JSONField(default=dict, blank=True)
    format = models.CharField(max_length=20, choices=Format.choices)
    artifact = models.FileField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    # {"inputs": [{"name", "dtype", "shape", "dynamic_axes"}], "outputs": [...]}
    io_signature = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.VALIDATING)
    status_detail = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model__name", "-created", "-id"]
        constraints = [models.UniqueConstraint(fields=["model", "version"], name="unique_version_per_model")]
        indexes = [models.Index(fields=["model", "-created"])]

    def __str__(self):
        return f"{self.model.name}:{self.version}"

    @property
    def ref(self):
        return f"{self.model.name}:{self.version}"

    def get_absolute_url(self):
        return reverse("registry:version", args=[self.model.name, self.version])


class Alias(models.Model):
    """A movable name (production, candidate, ...) pointing at one version of a model."""

    model = models.ForeignKey(Model, related_name="aliases", on_delete=models.CASCADE)
    name = models.CharField(max_length=50, validators=[validate_slug])
    version = models.ForeignKey(ModelVersion, related_name="aliases", on_delete=models.CASCADE)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "aliases"
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="unique_alias_per_model")]

    def __str__(self):
        return f"{self.model.name}@{self.name}"


# Aliases whose moves must pass the model's promotion gates.
GATED_ALIASES = ("production",)


class PromotionGate(models.Model):
    """A condition a version must meet before a gated alias (production) may point at it."""

    class Kind(models.TextChoices):
        MAX_ACCURACY_DROP = "max_accuracy_drop", "max accuracy drop"
        MIN_COSINE = "min_cosine", "min cosine to the reference"
        MAX_RELATIVE_ERROR = "max_relative_error", "max relative error against the reference"
        MAX_P95_MS = "max_p95_ms", "max p95 latency"

    # The quality gates (jobs.engine.decision judges them), and how their threshold reads.
    QUALITY_KINDS = (Kind.MAX_ACCURACY_DROP, Kind.MIN_COSINE, Kind.MAX_RELATIVE_ERROR)

    model = models.ForeignKey(Model, related_name="gates", on_delete=models.CASCADE)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # max_accuracy_drop: a fraction (0.005 = 0.5 percentage points); min_cosine: a cosine (0.99);
    # max_relative_error: a fraction (0.01 = 1 %); max_p95_ms: milliseconds.
    threshold = models.FloatField()
    # Required for max_p95_ms; for quality gates, empty means the newest result of any target.
    target = models.ForeignKey("HardwareTarget", null=True, blank=True, related_name="gates", on_delete=models.PROTECT)
    batch_size = models.PositiveIntegerField(default=1, help_text="The batch size whose p95 counts (max_p95_ms)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["model", "kind", "id"]
        constraints = [models.CheckConstraint(condition=models.Q(threshold__gt=0), name="gate_threshold_positive")]

    def __str__(self):
        return f"{self.model.name}: {self.description}"

    @property
    def description(self):
        """The gate for people: "p95 ≤ 5 ms on cpu at batch 8", "accuracy drop ≤ 0.50 pt"."""
        if self.kind == self.Kind.MAX_P95_MS:
            return f"p95 ≤ {self.threshold:g} ms on {self.target.slug} at batch {self.batch_size}"
        where = f" on {self.target.slug}" if self.target_id else ""
        if self.kind == self.Kind.MIN_COSINE:
            return f"cosine ≥ {self.threshold:g}{where}"
        if self.kind == self.Kind.MAX_RELATIVE_ERROR:
            return f"relative error ≤ {self.threshold * 100:g} %{where}"
        return f"accuracy drop ≤ {self.threshold * 100:.2f} pt{where}"


class AliasEvent(models.Model):
    """One alias change (the audit log): who moved which alias from where to where, the gate
    results at that moment, and the justification when an admin overrode a failing gate."""

    class Action(models.TextChoices):
        SET = "set"
        MOVE = "move"
        REMOVE = "remove"

    model = models.ForeignKey(Model, related_name="alias_events", on_delete=models.CASCADE)
    alias = models.CharField(max_length=50)
    action = models.CharField(max_length=10, choices=Action.choices)
    from_version = models.ForeignKey(ModelVersion, null=True, blank=True, related_name="+", on_delete=models.SET_NULL)
    to_version = models.ForeignKey(ModelVersion, null=True, blank=True, related_name="+", on_delete=models.SET_NULL)
    # The version strings as they were, so the log still reads right if a version is deleted.
    from_label = models.CharField(max_length=128, blank=True)
    to_label = models.CharField(max_length=128, blank=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)
    # [{"gate", "kind", "description", "passed", "measured" (number or "no benchmark"), "reason", ...}]
    gate_results = models.JSONField(default=list, blank=True)
    overridden = models.BooleanField(default=False)
    justification = models.TextField(blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["model", "-created"])]

    def __str__(self):
        return f"{self.model.name}@{self.alias}: {self.from_label or '∅'} → {self.to_label or '∅'} ({self.action})"

    @property
    def failed_gates(self):
        return [result for result in self.gate_results if not result.get("passed")]


class Dataset(models.Model):
    class Kind(models.TextChoices):
        CALIBRATION = "calibration"
        EVALUATION = "evaluation"
        REFERENCE = "reference"
        TRAINING = "training"  # inputs (and labels) that distillation and fine-tuning train on

    model = models.ForeignKey(Model, related_name="datasets", on_delete=models.CASCADE)
    # The version it was attached through; its inputs were checked against that signature.
    version = models.ForeignKey(ModelVersion, null=True, blank=True, related_name="datasets", on_delete=models.SET_NULL)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    file = models.FileField(max_length=255)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField()
    rows = models.PositiveIntegerField()
    # {"x": {"dtype": "float32", "shape": [360, 64]}, "labels": {...}}
    arrays = models.JSONField(default=dict)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [models.UniqueConstraint(fields=["model", "name"], name="unique_dataset_name_per_model")]

    def __str__(self):
        return f"{self.model.name}/{self.name} ({self.kind})"

    @property
    def has_labels(self):
        return "labels" in self.arrays


class HardwareTarget(models.Model):
    class Device(models.TextChoices):
        CPU = "cpu", "CPU"
        CUDA = "cuda", "CUDA GPU"

    # The onnxruntime execution providers a target of each device may name (the first is the default).
    PROVIDERS_BY_DEVICE = {
        Device.CPU: ["CPUExecutionProvider", "OpenVINOExecutionProvider", "DnnlExecutionProvider"],
        Device.CUDA: ["CUDAExecutionProvider", "TensorrtExecutionProvider"],
    }

    slug = models.CharField(max_length=50, unique=True, validators=[model_name_validator])
    name = models.CharField(max_length=100)
    device = models.CharField(max_length=10, choices=Device.choices, default=Device.CPU)
    description = models.TextField(blank=True)
    execution_provider = models.CharField(max_length=64, default="CPUExecutionProvider")
    provider_options = models.JSONField(default=dict, blank=True)
    active = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug

    @property
    def queue(self):
        """The Celery queue whose workers run this target's jobs."""
        return f"target.{self.slug}"

    @property
    def provider_usable(self):
        """Whether the target's execution provider is one its device can run."""
        return self.execution_provider in self.PROVIDERS_BY_DEVICE.get(self.device, [])


class Upload(models.Model):
    """A resumable chunked upload: bytes land in ``BERTH_UPLOAD_DIR/<id>.part`` in order."""

    class Status(models.TextChoices):
        OPEN = "open"
        COMPLETED = "completed"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Shown to people only; never used as a path.
    filename = models.CharField(max_length=255, blank=True)
    size = models.BigIntegerField()
    offset = models.BigIntegerField(default=0)
    expected_sha256 = models.CharField(max_length=64, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    status_detail = models.TextField(blank=True)
    version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self):
        return f"upload {self.id} ({self.offset}/{self.size})"


class ReferenceProfile(models.Model):
    """One feature of a version's reference distribution: the bin edges the serving runtime
    counts on (deciles of the reference dataset, or the classes of a prediction) and the
    reference counts that drift is measured against."""

    class Kind(models.TextChoices):
        MEAN = "mean"
        STD = "std"
        COLUMN = "column"
        CLASS = "class"
        VALUE = "value"

    version = models.ForeignKey(ModelVersion, related_name="reference_profiles", on_delete=models.CASCADE)
    dataset = models.ForeignKey(Dataset, related_name="profiles", on_delete=models.CASCADE)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    tensor = models.CharField(max_length=200, help_text="The input (or output, for predictions) it is read from")
    column = models.PositiveIntegerField(null=True, blank=True)
    classes = models.PositiveIntegerField(null=True, blank=True)
    edges = models.JSONField(default=list)
    counts = models.JSONField(default=list)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "id"]
        constraints = [models.UniqueConstraint(fields=["version", "name"], name="one_profile_per_feature")]

    def __str__(self):
        return f"{self.version}: {self.name}"

    def spec(self):
        """The feature as the serving runtime's spec describes it."""
        spec = {"name": self.name, "kind": self.kind}
        if self.kind in (self.Kind.CLASS, self.Kind.VALUE):
            spec["output"] = self.tensor
        else:
            spec["input"] = self.tensor
        if self.kind == self.Kind.COLUMN:
            spec["column"] = self.column
        if self.kind == self.Kind.CLASS:
            spec["classes"] = self.classes
        else:
            spec["edges"] = self.edges
        return spec
