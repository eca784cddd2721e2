"""Small helpers shared by the apps' API views."""

from drf_spectacular.utils import OpenApiResponse

ERRORS = {
    400: OpenApiResponse(description="Bad input: {detail, errors}"),
    401: OpenApiResponse(description="No or bad token"),
    403: OpenApiResponse(description="Your role does not allow this"),
    404: OpenApiResponse(description="Not found"),
}
CONFLICT = {409: OpenApiResponse(description="Conflicts with the current state: {detail, errors}")}


def validated(serializer_class, data, **kwargs):
    """Input checked by ``serializer_class``; raises the 400 ValidationError otherwise."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
TOO_LARGE = {413: OpenApiResponse(description="Larger than BERTH_MAX_UPLOAD_BYTES (or the chunk limit)")}
INVALID_FILE = {422: OpenApiResponse(description="Not a model file Berth accepts: pickle, corrupt or unknown")}
