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

    class Meta:
        model = Job
        fields = ["id", "url", "kind", "status", "progress", "message", "params", "result", "version", "target",
                  "output_version", "queue", "error", "worker_host", "created_by", "created", "started", "finished",
                  "heartbeat"]

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
