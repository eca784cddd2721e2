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
                operation["responses"].setdefault("415", {"description": "The body is not in a format this "
                                                                         "operation reads (see its request body)"})
    return result


TOO_LARGE = {413: OpenApiResponse(description="Larger than BERTH_MAX_UPLOAD_BYTES (or the chunk limit)")}
INVALID_FILE = {422: OpenApiResponse(description="Not a model file Berth accepts: pickle, corrupt or unknown")}
