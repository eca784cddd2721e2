from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.serializer_fields import JSONObjectField, TagsField, no_nul
from jobs.serializers import BenchmarkSummarySerializer

from .models import (
    AliasEvent,
    Dataset,
    HardwareTarget,
    Model,
    ModelVersion,
    PromotionGate,
    Upload,
    model_name_validator,
    version_validator,
)
from .presets import PRESETS


class RegistrationFields(serializers.Serializer):
    """What describes a version at registration, whichever way its bytes arrived."""

    version = serializers.CharField(max_length=128, validators=[version_validator])
    metadata = JSONObjectField(required=False, default=dict)
    tags = TagsField(required=False, default=list)
    parent = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Parent version of the same model, or model:version."
    )
    alias = serializers.SlugField(
        required=False,
        allow_blank=True,
        default="",
        max_length=50,
        help_text="Point this alias (e.g. candidate) at the new version.",
    )
    create_model = serializers.BooleanField(
        required=False, default=False, help_text="Create the model if it does not exist yet."
    )
    task = serializers.ChoiceField(
        choices=Model.Task.choices,
        required=False,
        default=Model.Task.OTHER,
        help_text="Task of the model, when create_model creates it.",
    )
    description = serializers.CharField(required=False, allow_blank=True, default="")


class VersionRegisterSerializer(RegistrationFields):
    artifact = serializers.FileField(help_text="The model file: ONNX, TorchScript or torch.export .pt2.")


class UploadCompleteSerializer(RegistrationFields):
    model = serializers.CharField(max_length=100, validators=[model_name_validator])
    sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$",
        required=False,
        allow_blank=True,
        default="",
        help_text="sha256 of the whole file; the upload is refused if the bytes differ.",
    )


class UploadStartSerializer(serializers.Serializer):
    size = serializers.IntegerField(min_value=1, help_text="Total size of the file in bytes.")
    filename = serializers.CharField(
        max_length=255,
        required=False,
        allow_blank=True,
        default="",
        help_text="Shown to people only; never used as a path.",
    )
    sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", required=False, allow_blank=True, default="")


class UploadCheckQuerySerializer(serializers.Serializer):
    model = serializers.CharField(max_length=100)
    version = serializers.CharField(max_length=128)
    sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$",
        required=False,
        allow_blank=True,
        default="",
        help_text="The file's sha256, when known: the same bytes under a taken name are fine.",
    )
    create_model = serializers.BooleanField(required=False, default=True)


class UploadCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="Whether registering under this name would go through.")
    field = serializers.CharField(allow_null=True, help_text="The field to change when not ok: model or version.")
    message = serializers.CharField()
    existing_url = serializers.CharField(allow_null=True, help_text="The page of the version already there.")


class UploadSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    version = serializers.SerializerMethodField()

    class Meta:
        model = Upload
        fields = [
            "id",
            "url",
            "filename",
            "size",
            "offset",
            "expected_sha256",
            "sha256",
            "status",
            "status_detail",
            "version",
            "created",
            "updated",
        ]

    def get_url(self, upload) -> str:
        return reverse("api:upload", args=[upload.id])

    def get_version(self, upload) -> str | None:
        return upload.version.ref if upload.version_id else None


class ModelCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, validators=[model_name_validator])
    description = serializers.CharField(required=False, allow_blank=True, default="")
    task = serializers.ChoiceField(choices=Model.Task.choices, required=False, default=Model.Task.OTHER)


class ModelSummarySerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", default=None, allow_null=True, read_only=True)
    version_count = serializers.IntegerField(read_only=True, default=0)
    aliases = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Model
        fields = ["name", "url", "description", "task", "owner", "created", "version_count", "aliases"]

    def get_aliases(self, model) -> dict[str, str]:
        return {alias.name: alias.version.version for alias in model.aliases.all()}

    def get_url(self, model) -> str:
        return reverse("api:model", args=[model.name])


class VersionSummarySerializer(serializers.ModelSerializer):
    parent = serializers.SerializerMethodField()
    aliases = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "version",
            "url",
            "status",
            "format",
            "size_bytes",
            "sha256",
            "parent",
            "recipe",
            "tags",
            "aliases",
            "created",
        ]

    def get_parent(self, version) -> str | None:
        return version.parent.ref if version.parent_id else None

    def get_aliases(self, version) -> list[str]:
        return [alias.name for alias in version.aliases.all()]

    def get_url(self, version) -> str:
        return reverse("api:version", args=[version.model.name, version.version])


class DatasetSerializer(serializers.ModelSerializer):
    attached_to = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["id", "name", "kind", "rows", "arrays", "sha256", "size_bytes", "attached_to", "created"]

    def get_attached_to(self, dataset) -> str | None:
        return dataset.version.ref if dataset.version_id else None


class DatasetAttachSerializer(serializers.Serializer):
    file = serializers.FileField(help_text=".npz with one array per model input (named after it) and optional labels.")
    name = serializers.SlugField(max_length=100)
    kind = serializers.ChoiceField(choices=Dataset.Kind.choices)


class ModelDetailSerializer(ModelSummarySerializer):
    versions = serializers.SerializerMethodField()
    datasets = DatasetSerializer(many=True, read_only=True)

    class Meta(ModelSummarySerializer.Meta):
        fields = ModelSummarySerializer.Meta.fields + ["versions", "datasets"]

    def get_versions(self, model) -> list[dict]:
        return VersionSummarySerializer(self.context["versions"], many=True).data


class JobBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.IntegerField()
    message = serializers.CharField()
    error = serializers.CharField()
    target = serializers.CharField(source="target.slug", default=None, allow_null=True)
    created = serializers.DateTimeField()
    url = serializers.SerializerMethodField()

    def get_url(self, job) -> str:
        return reverse("api:job", args=[job.id])


class VersionDetailSerializer(VersionSummarySerializer):
    model = serializers.CharField(source="model.name")
    children = serializers.SerializerMethodField()
    jobs = serializers.SerializerMethodField()
    benchmarks = serializers.SerializerMethodField(help_text="The latest benchmark of each target")
    artifact_url = serializers.SerializerMethodField()
    page_url = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)

    class Meta(VersionSummarySerializer.Meta):
        fields = [
            "id",
            "model",
            "version",
            "url",
            "page_url",
            "status",
            "status_detail",
            "format",
            "size_bytes",
            "sha256",
            "io_signature",
            "metadata",
            "tags",
            "aliases",
            "parent",
            "children",
            "recipe",
            "jobs",
            "benchmarks",
            "artifact_url",
            "created_by",
            "created",
        ]

    @extend_schema_field(BenchmarkSummarySerializer(many=True))
    def get_benchmarks(self, version):
        rows = [row for target_rows in self.context.get("benchmarks", {}).values() for row in target_rows]
        return BenchmarkSummarySerializer(rows, many=True).data

    def get_children(self, version) -> list[str]:
        return [child.ref for child in self.context.get("children", [])]

    def get_jobs(self, version) -> list[dict]:
        return JobBriefSerializer(self.context.get("jobs", []), many=True).data

    def get_page_url(self, version) -> str:
        return version.get_absolute_url()

    def get_artifact_url(self, version) -> str:
        return reverse("api:version-artifact", args=[version.model.name, version.version])


class AliasSetSerializer(serializers.Serializer):
    version = serializers.CharField(max_length=128, help_text="The version (of this model) the alias points at.")
    override = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Move a gated alias (production) although a promotion gate fails. Admins only; needs a "
        "justification.",
    )
    justification = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=2000,
        help_text="Why the failing gates may be overridden (recorded in the log).",
    )


class AliasSerializer(serializers.Serializer):
    model = serializers.CharField(source="model.name")
    name = serializers.CharField()
    version = serializers.CharField(source="version.version")
    updated_by = serializers.CharField(source="updated_by.username", default=None, allow_null=True)
    updated = serializers.DateTimeField()


class TargetSerializer(serializers.ModelSerializer):
    queue = serializers.CharField(read_only=True)
    preset = serializers.ChoiceField(
        choices=[(name, f"{name}: {preset.help}") for name, preset in PRESETS.items()],
        required=False,
        write_only=True,
        help_text="Fill device, execution_provider and provider_options from a preset "
        "(provider_options given here win over the preset's)",
    )

    class Meta:
        model = HardwareTarget
        fields = [
            "slug",
            "name",
            "device",
            "description",
            "execution_provider",
            "provider_options",
            "active",
            "preset",
            "queue",
            "created",
        ]
        read_only_fields = ["created"]
        extra_kwargs = {
            "slug": {"validators": []},
            "name": {"required": False},
            "execution_provider": {"required": False},
            "provider_options": {"validators": [no_nul]},
        }


class GateResultSerializer(serializers.Serializer):
    """One promotion gate evaluated on one version (documentation of the stored JSON)."""

    gate = serializers.IntegerField(help_text="The gate's id (it may have been deleted since)")
    kind = serializers.ChoiceField(choices=PromotionGate.Kind.choices)
    description = serializers.CharField()
    threshold = serializers.FloatField()
    target = serializers.CharField(allow_null=True)
    batch_size = serializers.IntegerField(allow_null=True)
    passed = serializers.BooleanField()
    measured = serializers.JSONField(
        help_text="p95 in ms; accuracy against the reference as a fraction "
        "(max_accuracy_drop); cosine (min_cosine); relative error as a "
        'fraction (max_relative_error); "no benchmark" or "no accuracy delta" '
        "when nothing was measured"
    )
    reference = serializers.CharField(
        allow_null=True, required=False, help_text="Quality gates: the version the quality was judged against"
    )
    evaluation_set = serializers.CharField(
        allow_null=True, required=False, help_text="Quality gates on labels: the evaluation set"
    )
    measured_on = serializers.CharField(allow_null=True, help_text="The target of the result used")
    reason = serializers.CharField()
    job = serializers.IntegerField(allow_null=True, help_text="The benchmark job of the result used")
    stable = serializers.BooleanField(allow_null=True)


class AliasMovedSerializer(AliasSerializer):
    gates = serializers.SerializerMethodField(help_text="The gates evaluated for this move (gated aliases)")
    overridden = serializers.SerializerMethodField()

    @extend_schema_field(GateResultSerializer(many=True))
    def get_gates(self, alias):
        event = self.context.get("event")
        return event.gate_results if event else []

    def get_overridden(self, alias) -> bool:
        event = self.context.get("event")
        return bool(event and event.overridden)


class AliasBlockedSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    gates = GateResultSerializer(many=True, help_text="The failing gates")


class GateSerializer(serializers.ModelSerializer):
    target = serializers.CharField(source="target.slug", default=None, allow_null=True)
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    description = serializers.CharField(read_only=True, help_text='e.g. "p95 ≤ 5 ms on cpu at batch 8"')
    url = serializers.SerializerMethodField()

    class Meta:
        model = PromotionGate
        fields = ["id", "url", "kind", "threshold", "target", "batch_size", "description", "created_by", "created"]

    def get_url(self, gate) -> str:
        return reverse("api:gate", args=[gate.model.name, gate.id])


class GateCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=PromotionGate.Kind.choices)
    threshold = serializers.FloatField(
        help_text="max_accuracy_drop: a fraction (0.005 = 0.5 percentage points); "
        "min_cosine: a cosine (0.99); max_relative_error: a fraction "
        "(0.01 = 1 %); max_p95_ms: milliseconds"
    )
    target = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Hardware target slug; required for max_p95_ms. For quality gates, "
        "empty means the newest result of any target.",
    )
    batch_size = serializers.IntegerField(
        required=False, default=1, min_value=1, help_text="The batch size whose p95 counts (max_p95_ms)"
    )


class AliasEventSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.name")
    from_version = serializers.SerializerMethodField()
    to_version = serializers.SerializerMethodField()
    user = serializers.CharField(source="user.username", default=None, allow_null=True)
    gate_results = serializers.SerializerMethodField()

    class Meta:
        model = AliasEvent
        fields = [
            "id",
            "model",
            "alias",
            "action",
            "from_version",
            "to_version",
            "user",
            "created",
            "gate_results",
            "overridden",
            "justification",
        ]

    def get_from_version(self, event) -> str | None:
        return event.from_label or None

    def get_to_version(self, event) -> str | None:
        return event.to_label or None

    @extend_schema_field(GateResultSerializer(many=True))
    def get_gate_results(self, event):
        return event.gate_results
