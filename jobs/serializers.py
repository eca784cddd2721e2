from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from berth import compression

from common.serializer_fields import JSONObjectField

from .engine.gpu import TIMING_MODES
from .kinds.benchmark import BENCHMARK_MEASURE_SCHEMA
from .models import BenchmarkResult, Job


class JobSerializer(serializers.ModelSerializer):
    version = serializers.CharField(source="version.ref")
    target = serializers.CharField(source="target.slug", default=None, allow_null=True)
    output_version = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", default=None, allow_null=True)
    url = serializers.SerializerMethodField()
    waiting_for = serializers.SerializerMethodField(help_text="Why a queued job has not started, if known")

    class Meta:
        model = Job
        fields = [
            "id",
            "url",
            "kind",
            "status",
            "progress",
            "message",
            "waiting_for",
            "params",
            "result",
            "version",
            "target",
            "output_version",
            "queue",
            "error",
            "worker_host",
            "created_by",
            "created",
            "started",
            "finished",
            "heartbeat",
        ]

    def get_waiting_for(self, job) -> str:
        from .selectors import waiting_reason

        served = self.context.get("served_queues")
        if served is None:
            from .selectors import served_queues

            served = self.context["served_queues"] = served_queues()
        return waiting_reason(job, served)

    def get_output_version(self, job) -> str | None:
        return job.output_version.ref if job.output_version_id else None

    def get_url(self, job) -> str:
        return reverse("api:job", args=[job.id])


class JobDetailSerializer(JobSerializer):
    class Meta(JobSerializer.Meta):
        fields = JobSerializer.Meta.fields + ["log"]


@extend_schema_field(
    {
        "description": "The kind's parameters (see the README's Jobs section). A compress job's are "
        "one of the methods declared in berth.compression; a benchmark's measure the model alone "
        "(measure=inference) or requests through a local berth-serve (measure=requests):",
        "anyOf": [
            *(compression.json_schema(m) for m in compression.METHODS),
            BENCHMARK_MEASURE_SCHEMA,
            {"type": "object"},
        ],
    }
)
class JobParamsField(JSONObjectField):
    pass


class JobCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Job.Kind.choices)
    version = serializers.CharField(help_text="<model>:<version> or the version's numeric id.")
    target = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Hardware target slug (for jobs that run on a target)."
    )
    params = JobParamsField(required=False, default=dict)


class BenchmarkSummarySerializer(serializers.ModelSerializer):
    """One measured configuration, as the version detail lists it."""

    target = serializers.CharField(source="target.slug")
    job = serializers.IntegerField(source="job_id")

    class Meta:
        model = BenchmarkResult
        fields = [
            "target",
            "job",
            "batch_size",
            "threads",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "throughput",
            "stable",
            "peak_memory_bytes",
            "load_time_ms",
            "device_memory_bytes",
            "gpu_utilization",
            "timing_mode",
            "scope",
            "encoding",
            "accuracy",
            "accuracy_delta",
        ]


class BenchmarkResultSerializer(BenchmarkSummarySerializer):
    """Everything about one measured configuration (the benchmarks API and its CSV)."""

    model = serializers.CharField(source="version.model.name")
    version = serializers.CharField(source="version.version")
    size_bytes = serializers.IntegerField(source="version.size_bytes")

    class Meta(BenchmarkSummarySerializer.Meta):
        fields = [
            "model",
            "version",
            "target",
            "job",
            "batch_size",
            "threads",
            "iterations",
            "warmup",
            "p50_ms",
            "p90_ms",
            "p95_ms",
            "p99_ms",
            "mean_ms",
            "std_ms",
            "throughput",
            "stable",
            "peak_memory_bytes",
            "load_time_ms",
            "device_memory_bytes",
            "gpu_utilization",
            "timing_mode",
            "scope",
            "encoding",
            "accuracy",
            "accuracy_delta",
            "size_bytes",
            "fidelity",
            "environment",
            "created",
        ]


class WorkerSerializer(serializers.Serializer):
    hostname = serializers.CharField()
    live = serializers.BooleanField()
    queues = serializers.ListField(child=serializers.CharField())
    cpu_model = serializers.CharField()
    cpu_count = serializers.IntegerField(allow_null=True)
    memory_bytes = serializers.IntegerField(allow_null=True)
    gpus = serializers.JSONField()
    providers = serializers.ListField(
        child=serializers.CharField(), help_text="providers a tiny session proved usable when the worker started"
    )
    provider_problems = serializers.DictField(
        child=serializers.CharField(), help_text="{provider: why it cannot be used}"
    )
    versions = serializers.JSONField()
    started = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()


class CommaListField(serializers.ListField):
    """Repeated parameters (versions=1&versions=2) or comma-separated ones (versions=1,2)."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = [data]
        items = [part.strip() for item in data for part in str(item).split(",") if part.strip()]
        return super().to_internal_value(items)


class CompareQuerySerializer(serializers.Serializer):
    """The comparison's state, as the page's query string and the API's parameters."""

    model = serializers.CharField(max_length=100)
    versions = CommaListField(
        child=serializers.CharField(max_length=128),
        required=False,
        default=list,
        help_text="Version strings; default: every version with results",
    )
    targets = CommaListField(
        child=serializers.CharField(max_length=50),
        required=False,
        default=list,
        help_text="Target slugs; default: every target with results",
    )
    batch_size = serializers.IntegerField(min_value=1, required=False, allow_null=True, default=None)
    percentile = serializers.ChoiceField(choices=["p50", "p95", "p99"], default="p95")
    baseline = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="Compare every row with this version; default: each version's root",
    )
    budget_ms = serializers.FloatField(
        min_value=0,
        required=False,
        allow_null=True,
        default=None,
        help_text="Latency budget (ms) at the chosen percentile",
    )
    max_drop_pt = serializers.FloatField(
        min_value=0,
        max_value=100,
        required=False,
        allow_null=True,
        default=None,
        help_text="Largest accepted accuracy (or top-1 agreement) drop, in percentage points; default 0.5",
    )
    max_relative_error_pct = serializers.FloatField(
        min_value=0,
        max_value=1000,
        required=False,
        allow_null=True,
        default=None,
        help_text="Largest accepted relative error against the reference (regression, other tasks), or MAE "
        "rise over the reference's, in %; default 1",
    )
    min_cosine = serializers.FloatField(
        min_value=-1,
        max_value=1,
        required=False,
        allow_null=True,
        default=None,
        help_text="Smallest accepted mean cosine to the reference's outputs (embedding); default 0.99",
    )
    reference = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=128,
        help_text="The version quality is judged against; default: the most accurate "
        "measured version on the same evaluation set (any lineage)",
    )
    timing_mode = serializers.ChoiceField(
        choices=TIMING_MODES,
        default="host",
        help_text="Compare GPU results timed this way only (host: inputs copied "
        "each run; device: IO binding; device+graph: CUDA graph)",
    )

    def to_internal_value(self, data):
        # Empty form fields (budget_ms=) mean "not given".
        if hasattr(data, "dict"):
            data = {
                key: (data.getlist(key) if key in ("versions", "targets") else value)
                for key, value in data.items()
                if value != ""
            }
        return super().to_internal_value(data)

    @staticmethod
    def comparison_kwargs(data):
        """benchmark_comparison's arguments from validated data."""
        return {
            "model_name": data["model"],
            "versions": data["versions"],
            "targets": data["targets"],
            "batch_size": data["batch_size"],
            "percentile": data["percentile"],
            "baseline": data["baseline"] or None,
            "budget_ms": data["budget_ms"],
            "timing_mode": data["timing_mode"],
            "reference": data["reference"] or None,
            "limits": {key: data[key] for key in ("max_drop_pt", "max_relative_error_pct", "min_cosine")},
        }
