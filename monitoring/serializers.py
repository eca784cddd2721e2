from django.urls import reverse
from rest_framework import serializers

from registry.models import model_name_validator


class DeploymentSerializer(serializers.Serializer):
    version = serializers.CharField(source="version.version")
    weight = serializers.IntegerField()
    generation = serializers.IntegerField()
    action = serializers.CharField()
    deployed_by = serializers.CharField(source="deployed_by.username", default=None, allow_null=True)
    deployed = serializers.DateTimeField()


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
    scrape_url = serializers.CharField(help_text="Prometheus /metrics URL read in scrape mode; empty otherwise")
    scraped = serializers.DateTimeField(allow_null=True, help_text="When the scrape URL was last read")
    scrape_error = serializers.CharField(help_text="Why the last scrape failed, or what it could not count")
    created = serializers.DateTimeField()

    def get_url(self, endpoint) -> str:
        return reverse("api:endpoint", args=[endpoint.name])

    def get_spec_url(self, endpoint) -> str:
        return reverse("api:endpoint-spec", args=[endpoint.name])

    def get_deployments(self, endpoint) -> list[dict]:
        rows = [d for d in endpoint.deployments.all() if d.state == "active"]
        return DeploymentSerializer(sorted(rows, key=lambda d: -d.weight), many=True).data


class EndpointCreatedSerializer(EndpointSerializer):
    token = serializers.CharField(help_text="Shown this once; Berth keeps only its hash")


class EndpointCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, validators=[model_name_validator])
    model = serializers.CharField(max_length=100, help_text="The model whose versions it serves")
    target = serializers.CharField(max_length=50, help_text="The hardware target its hosts are")
    description = serializers.CharField(required=False, allow_blank=True, default="")
    scrape_url = serializers.CharField(required=False, allow_blank=True, default="", max_length=200,
                                       help_text="Scrape mode: the Prometheus /metrics URL of a Triton or MLServer "
                                                 "server, read every BERTH_SCRAPE_SECONDS")


class WeightSerializer(serializers.Serializer):
    version = serializers.CharField(max_length=128)
    weight = serializers.IntegerField(min_value=0, max_value=100)


class DeploySerializer(serializers.Serializer):
    """Either one version with its share (the rest keep their proportions), or a whole split."""

    version = serializers.CharField(max_length=128, required=False)
    weight = serializers.IntegerField(min_value=1, max_value=100, required=False, default=100)
    weights = WeightSerializer(many=True, required=False)

    def validate(self, data):
        if ("version" in data) == ("weights" in data):
            raise serializers.ValidationError("Give either version (and weight) or weights.")
        return data


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()
    token_prefix = serializers.CharField()


class IntegrityReportSerializer(serializers.Serializer):
    version = serializers.CharField(max_length=100)
    expected_sha256 = serializers.RegexField(r"^[0-9a-f]{64}$", help_text="The sha256 the spec names")
    actual_sha256 = serializers.RegexField(r"^[0-9a-f]{64}$", help_text="What the bytes hash to")
    where = serializers.ChoiceField(choices=["download", "cache", "bundle"])
    detail = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    host = serializers.CharField(max_length=255, required=False, allow_blank=True)
