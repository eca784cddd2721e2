from django.urls import reverse
from rest_framework import serializers

from registry.serializers import JSONObjectField

from .models import Job


class JobSerializer(serializers.ModelSerializer):
    version = serializers.CharField(source="version.ref")
    target = serializers.CharField(source="target.slug", default=None)
    output_version = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", default=None)
    url = serializers.SerializerMethodField()
    waiting_for = serializers.SerializerMethodField(help_text="Why a queued job has not started, if known")

    class Meta:
        model = Job
        fields = ["id", "url", "kind", "status", "progress", "message", "waiting_for", "params", "result", "version",
                  "target", "output_version", "queue", "error", "worker_host", "created_by", "created", "started",
                  "finished", "heartbeat"]

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


class JobCreateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Job.Kind.choices)
    version = serializers.CharField(help_text="<model>:<version> or the version's numeric id.")
    target = serializers.CharField(required=False, allow_blank=True, default="",
                                   help_text="Hardware target slug (for jobs that run on a target).")
    params = JSONObjectField(required=False, default=dict)


class BenchmarkResultSerializer(serializers.Serializer):
    model = serializers.CharField(source="version.model.name")
    version = serializers.CharField(source="version.version")
    target = serializers.CharField(source="target.slug")
    job = serializers.IntegerField(source="job_id")
    batch_size = serializers.IntegerField()
    threads = serializers.IntegerField(allow_null=True)
    iterations = serializers.IntegerField()
    warmup = serializers.IntegerField()
    p50_ms = serializers.FloatField()
    p90_ms = serializers.FloatField()
    p95_ms = serializers.FloatField()
    p99_ms = serializers.FloatField()
    mean_ms = serializers.FloatField()
    std_ms = serializers.FloatField()
    throughput = serializers.FloatField(help_text="items per second")
    stable = serializers.BooleanField()
    peak_memory_bytes = serializers.IntegerField(allow_null=True)
    load_time_ms = serializers.FloatField(allow_null=True)
    accuracy = serializers.FloatField(allow_null=True)
    accuracy_delta = serializers.FloatField(allow_null=True)
    size_bytes = serializers.IntegerField(source="version.size_bytes")
    fidelity = serializers.JSONField()
    environment = serializers.JSONField()
    created = serializers.DateTimeField()


class WorkerSerializer(serializers.Serializer):
    hostname = serializers.CharField()
    live = serializers.BooleanField()
    queues = serializers.ListField(child=serializers.CharField())
    cpu_model = serializers.CharField()
    cpu_count = serializers.IntegerField(allow_null=True)
    memory_bytes = serializers.IntegerField(allow_null=True)
    gpus = serializers.JSONField()
    providers = serializers.ListField(child=serializers.CharField())
    versions = serializers.JSONField()
    started = serializers.DateTimeField()
    last_seen = serializers.DateTimeField()
