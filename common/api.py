"""Small helpers shared by the apps' API views."""

from drf_spectacular.utils import OpenApiResponse
from rest_framework.pagination import LimitOffsetPagination

ERRORS = {
    400: OpenApiResponse(description="Bad input: {detail, errors}"),
    401: OpenApiResponse(description="No or bad token"),
    403: OpenApiResponse(description="Your role does not allow this"),
    404: OpenApiResponse(description="Not found"),
}
CONFLICT = {409: OpenApiResponse(description="Conflicts with the current state: {detail, errors}")}


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=`` pages. The limit is capped: a huge one would overflow the database's
    LIMIT (a 500 on PostgreSQL and SQLite alike)."""

    max_limit = 1000


def validated(serializer_class, data, **kwargs):
    """Input checked by ``serializer_class``; raises the 400 ValidationError otherwise."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def document_unsupported_media_type(result, generator, request, public):
    """drf-spectacular post-processing hook: every operation that reads a body may answer 415, as
    DRF does when the Content-Type is missing or one the operation does not read."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if "requestBody" in operation:
                operation["responses"].setdefault(
                    "415", {"description": "The body is not in a format this operation reads (see its request body)"}
                )
    return result


TOO_LARGE = {413: OpenApiResponse(description="Larger than BERTH_MAX_UPLOAD_BYTES (or the chunk limit)")}
INVALID_FILE = {422: OpenApiResponse(description="Not a model file Berth accepts: pickle, corrupt or unknown")}


# Every operation's tag: the part of Berth it belongs to (the API docs group by it).
API_TAGS = [
    ("registry", "Models, versions, aliases, datasets, hardware targets and resumable uploads."),
    ("jobs", "Convert, compress, benchmark and validate jobs; benchmark results; worker hosts."),
    ("comparisons", "Versions side by side per target, with the recommendation."),
    ("endpoints", "Endpoints, deployments, rollbacks, dynamic batching, bundles, and what berth-serve fetches."),
    ("monitoring", "Telemetry from berth-serve and the metrics series of an endpoint."),
    ("alerts", "Alert rules, silences and alerts."),
    ("tokens", "API tokens."),
]


def _tag_of(path):
    parts = [p for p in path.split("/") if p]
    resource = parts[2] if len(parts) > 2 else ""
    if "alert-rules" in parts or resource == "alerts":
        return "alerts"
    if "metrics" in parts or resource == "telemetry":
        return "monitoring"
    return {
        "models": "registry",
        "uploads": "registry",
        "targets": "registry",
        "jobs": "jobs",
        "benchmarks": "jobs",
        "workers": "jobs",
        "compare": "comparisons",
        "endpoints": "endpoints",
        "tokens": "tokens",
    }.get(resource, "registry")


def tag_by_app(result, generator, request, public):
    """drf-spectacular post-processing hook: tag each operation with its part of Berth instead of
    one "v1" group."""
    for path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            if isinstance(operation, dict):
                operation["tags"] = [_tag_of(path)]
    result["tags"] = [{"name": name, "description": text} for name, text in API_TAGS]
    return result
