from django.urls import reverse
from rest_framework import serializers

from registry.models import model_name_validator

from .replicas import endpoint_replicas


class DeploymentSerializer(serializers.Serializer):
    version = serializers.CharField(source="version.version")
    weight = serializers.IntegerField()
    generation = serializers.IntegerField()
    action = serializers.CharField()
    deployed_by = serializers.CharField(source="deployed_by.username", default=None, allow_null=True)
    deployed = serializers.DateTimeField()


class ReplicaSerializer(serializers.Serializer):
    instance = serializers.CharField(source="replica.instance")
    host = serializers.CharField(source="replica.host")
    pid = serializers.IntegerField(source="replica.pid", allow_null=True)
    runtime = serializers.CharField(source="replica.runtime_version")
    generation = serializers.IntegerField(source="replica.generation", allow_null=True)
    versions = serializers.ListField(source="replica.versions", child=serializers.CharField())
    spec_polled = serializers.DateTimeField(source="replica.spec_polled", allow_null=True)
    last_seen = serializers.DateTimeField(source="replica.last_seen")
    token = serializers.CharField(source="replica.token", help_text="current, or old (in its grace period)")
    state = serializers.CharField(
        help_text="serving, silent (no report for BERTH_REPLICA_SILENT_SECONDS) or "
        "refused (its token was refused since it last reported)"
    )
    refused = serializers.DateTimeField(source="replica.refused", allow_null=True)
    refused_reason = serializers.CharField(source="replica.refused_reason")


class IntegrityReportSerializer(serializers.Serializer):
    version = serializers.CharField(max_length=100)
    expected_sha256 = serializers.RegexField(r"^[0-9a-f]{64}$", help_text="The sha256 the spec names")
    actual_sha256 = serializers.RegexField(r"^[0-9a-f]{64}$", help_text="What the bytes hash to")
    where = serializers.ChoiceField(choices=["download", "cache", "bundle"])
    detail = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    host = serializers.CharField(max_length=255, required=False, allow_blank=True)


class EndpointSerializer(serializers.Serializer):
    name = serializers.CharField()
    url = serializers.SerializerMethodField()
    model = serializers.CharField(source="model.name")
    target = serializers.CharField(source="target.slug")
    description = serializers.CharField()
    token_prefix = serializers.CharField(help_text="The first characters of the current token, to tell tokens apart")
    token_rotated = serializers.DateTimeField()
    deployments = serializers.SerializerMethodField(help_text="The current traffic split")
    spec_url = serializers.SerializerMethodField()
    old_token_prefix = serializers.CharField(help_text="The previous token's first characters, while it still works")
    old_token_expires = serializers.DateTimeField(allow_null=True, help_text="When the previous token stops working")
    scrape_url = serializers.CharField(help_text="Prometheus /metrics URL read in scrape mode; empty otherwise")
    scraped = serializers.DateTimeField(allow_null=True, help_text="When the scrape URL was last read")
    scrape_error = serializers.CharField(help_text="Why the last scrape failed, or what it could not count")
    max_batch_size = serializers.IntegerField(help_text="Dynamic batching in berth-serve: rows per batch (1: off)")
    max_queue_delay_us = serializers.IntegerField(help_text="Dynamic batching: the longest a request waits (µs)")
    inference_threads = serializers.IntegerField(
        allow_null=True, help_text="Inference threads per berth-serve worker process (null: berth-serve's --threads)"
    )
    created = serializers.DateTimeField()

    def get_url(self, endpoint) -> str:
        return reverse("api:endpoint", args=[endpoint.name])

    def get_spec_url(self, endpoint) -> str:
        return reverse("api:endpoint-spec", args=[endpoint.name])

    def get_deployments(self, endpoint) -> list[dict]:
        rows = [d for d in endpoint.deployments.all() if d.state == "active"]
        return DeploymentSerializer(sorted(rows, key=lambda d: -d.weight), many=True).data


class EndpointDetailSerializer(EndpointSerializer):
    replicas = serializers.SerializerMethodField(help_text="berth-serve replicas heard from in the last day")

    def get_replicas(self, endpoint) -> list[dict]:
        return ReplicaSerializer(endpoint_replicas(endpoint), many=True).data


class EndpointCreatedSerializer(EndpointSerializer):
    token = serializers.CharField(help_text="Shown this once; Berth keeps only its hash")


class EndpointCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, validators=[model_name_validator])
    model = serializers.CharField(max_length=100, help_text="The model whose versions it serves")
    target = serializers.CharField(max_length=50, help_text="The hardware target its hosts are")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    scrape_url = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=200,
        help_text="Scrape mode: the Prometheus /metrics URL of a Triton or MLServer "
        "server, read every BERTH_SCRAPE_SECONDS",
    )


class BatchingSerializer(serializers.Serializer):
    max_batch_size = serializers.IntegerField(
        min_value=1,
        max_value=1024,
        help_text="Requests of one version batched up to this many rows; 1 turns dynamic batching off",
    )
    max_queue_delay_us = serializers.IntegerField(
        min_value=0,
        max_value=1_000_000,
        help_text="The longest a request waits for others to join its batch, in microseconds",
    )
    inference_threads = serializers.IntegerField(
        min_value=1,
        max_value=64,
        allow_null=True,
        required=False,
        help_text="Inference threads per berth-serve worker process; null: berth-serve's --threads; absent: unchanged",
    )


class WeightSerializer(serializers.Serializer):
    version = serializers.CharField(max_length=128)
    weight = serializers.IntegerField(min_value=0, max_value=100)


class DeploySerializer(serializers.Serializer):
    """Either one version with its share (the rest keep their proportions), or a whole split."""

    version = serializers.CharField(max_length=128, required=False)
    weight = serializers.IntegerField(min_value=1, max_value=100, required=False, default=100)
    weights = WeightSerializer(many=True, required=False)
    apply_serving_profile = serializers.BooleanField(
        required=False,
        default=False,
        help_text="With version: also set the endpoint's batching and inference threads to what the "
        "version's newest serving profile on the endpoint's target recommends (400 when it has none)",
    )

    def validate(self, data):
        if ("version" in data) == ("weights" in data):
            raise serializers.ValidationError("Give either version (and weight) or weights.")
        if "weights" in data and data.get("apply_serving_profile"):
            raise serializers.ValidationError(
                {"apply_serving_profile": "A serving profile is applied with one version; not with weights."}
            )
        return data


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    token_prefix = serializers.CharField()
    old_token_prefix = serializers.CharField(allow_null=True)
    old_token_expires = serializers.DateTimeField(
        allow_null=True, help_text="Until when the previous token still works"
    )


class TokenRotateSerializer(serializers.Serializer):
    grace_minutes = serializers.IntegerField(
        min_value=0,
        max_value=7 * 24 * 60,
        required=False,
        help_text="How long the old token keeps working (default BERTH_TOKEN_GRACE_MINUTES); 0: it stops at once",
    )
