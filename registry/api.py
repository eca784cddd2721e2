"""The registry's REST API (DESIGN §4): thin views over services and selectors."""

from django.conf import settings
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import BaseParser, FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.generics import GenericAPIView
from rest_framework.views import APIView

from common.api import CONFLICT, ERRORS, INVALID_FILE, TOO_LARGE, validated
from common.errors import BerthError, TooLarge
from common.renderers import FirstRendererNegotiation

from jobs.selectors import latest_benchmarks, version_jobs

from . import selectors, services
from .models import HardwareTarget
from .serializers import (
    AliasBlockedSerializer,
    AliasEventSerializer,
    AliasMovedSerializer,
    AliasSetSerializer,
    DatasetAttachSerializer,
    DatasetSerializer,
    GateCreateSerializer,
    GateSerializer,
    ModelCreateSerializer,
    ModelDetailSerializer,
    ModelSummarySerializer,
    TargetSerializer,
    UploadCheckQuerySerializer,
    UploadCheckSerializer,
    UploadCompleteSerializer,
    UploadSerializer,
    UploadStartSerializer,
    VersionDetailSerializer,
    VersionRegisterSerializer,
)
from .uploads import incoming_from_uploaded_file

# Multipart overhead allowed on top of the file itself before a request is refused unread.
MULTIPART_SLACK = 1024 * 1024


def _refuse_oversized_body(request, limit):
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise TooLarge(
            f"The request has {length:,} bytes; this server accepts files of at most "
            f"{settings.BERTH_MAX_UPLOAD_BYTES:,} bytes (BERTH_MAX_UPLOAD_BYTES).",
            field="artifact",
        )


def version_payload(version):
    ancestors, children = selectors.version_lineage(version)
    context = {"children": children, "jobs": version_jobs(version), "benchmarks": latest_benchmarks(version)}
    return VersionDetailSerializer(version, context=context).data


class ModelListApi(GenericAPIView):
    access = "model"
    access_actions = {"POST": "register"}
    serializer_class = ModelSummarySerializer

    @extend_schema(
        parameters=[OpenApiParameter("q", str, description="Search in names and descriptions")],
        responses={200: ModelSummarySerializer(many=True), **ERRORS},
    )
    def get(self, request):
        page = self.paginate_queryset(selectors.model_list(query=request.query_params.get("q", "")))
        return self.get_paginated_response(ModelSummarySerializer(page, many=True).data)

    @extend_schema(request=ModelCreateSerializer, responses={201: ModelSummarySerializer, **CONFLICT, **ERRORS})
    def post(self, request):
        data = validated(ModelCreateSerializer, request.data)
        model = services.model_create(owner=request.user, **data)
        return Response(ModelSummarySerializer(model).data, status=status.HTTP_201_CREATED)


class ModelDetailApi(APIView):
    access = "model"

    @extend_schema(responses={200: ModelDetailSerializer, **ERRORS})
    def get(self, request, name):
        model = selectors.model_get(name)
        versions = list(selectors.model_versions(model))
        return Response(ModelDetailSerializer(model, context={"versions": versions}).data)


class VersionRegisterApi(APIView):
    access = "version"
    access_actions = {"POST": "register"}
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": VersionRegisterSerializer},
        responses={
            201: VersionDetailSerializer,
            200: OpenApiResponse(VersionDetailSerializer, description="Same version and bytes already registered"),
            **CONFLICT,
            **TOO_LARGE,
            **INVALID_FILE,
            **ERRORS,
        },
    )
    def post(self, request, name):
        _refuse_oversized_body(request, settings.BERTH_MAX_UPLOAD_BYTES + MULTIPART_SLACK)
        data = validated(VersionRegisterSerializer, request.data)
        incoming = incoming_from_uploaded_file(data.pop("artifact"))
        version, created = services.version_register(
            model_name=name, artifact=incoming, created_by=request.user, **data
        )
        return Response(version_payload(version), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class VersionDetailApi(APIView):
    access = "version"

    @extend_schema(responses={200: VersionDetailSerializer, **ERRORS})
    def get(self, request, name, version):
        return Response(version_payload(selectors.version_get(name, version)))


class VersionArtifactApi(APIView):
    access = "version"
    content_negotiation_class = FirstRendererNegotiation

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, **ERRORS})
    def get(self, request, name, version):
        found = selectors.version_get(name, version)
        extension = found.artifact.name.rsplit(".", 1)[-1]
        return FileResponse(
            found.artifact.open("rb"), as_attachment=True, filename=f"{found.model.name}-{found.version}.{extension}"
        )


class DatasetAttachApi(APIView):
    access = "version"
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": DatasetAttachSerializer},
        responses={201: DatasetSerializer, 200: DatasetSerializer, **CONFLICT, **TOO_LARGE, **ERRORS},
    )
    def post(self, request, name, version):
        _refuse_oversized_body(request, settings.BERTH_MAX_UPLOAD_BYTES + MULTIPART_SLACK)
        found = selectors.version_get(name, version)
        data = validated(DatasetAttachSerializer, request.data)
        incoming = incoming_from_uploaded_file(data["file"])
        dataset, created = services.dataset_attach(
            version=found, name=data["name"], kind=data["kind"], incoming=incoming, created_by=request.user
        )
        return Response(
            DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class AliasApi(APIView):
    access = "alias"

    @extend_schema(
        request=AliasSetSerializer,
        responses={
            200: AliasMovedSerializer,
            409: OpenApiResponse(
                AliasBlockedSerializer,
                description="A promotion gate failed: the alias did not move (the failing gates are in gates)",
            ),
            **ERRORS,
        },
        description="Point the alias at a version. Moving production checks the model's promotion gates; an admin "
        "may override failing gates with override=true and a justification. Every move is logged.",
    )
    def put(self, request, name, alias):
        model = selectors.model_get(name)
        data = validated(AliasSetSerializer, request.data)
        version = selectors.version_get(model.name, data.pop("version"))
        moved, event = services.alias_set(model=model, name=alias, version=version, user=request.user, **data)
        return Response(AliasMovedSerializer(moved, context={"event": event}).data)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, name, alias):
        services.alias_remove(model=selectors.model_get(name), name=alias, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AliasEventListApi(GenericAPIView):
    access = "alias"
    serializer_class = AliasEventSerializer

    @extend_schema(
        parameters=[OpenApiParameter("alias", str, description="Only this alias")],
        responses={200: AliasEventSerializer(many=True), **ERRORS},
        description="The model's alias log (set, move, remove), newest first.",
    )
    def get(self, request, name):
        model = selectors.model_get(name)
        page = self.paginate_queryset(selectors.alias_events(model, alias=request.query_params.get("alias", "")))
        return self.get_paginated_response(AliasEventSerializer(page, many=True).data)


class GateListApi(APIView):
    access = "gate"

    @extend_schema(
        responses={200: GateSerializer(many=True), **ERRORS},
        description="The model's promotion gates: what a version must meet before production points at it.",
    )
    def get(self, request, name):
        return Response(GateSerializer(selectors.model_gates(selectors.model_get(name)), many=True).data)

    @extend_schema(request=GateCreateSerializer, responses={201: GateSerializer, **CONFLICT, **ERRORS})
    def post(self, request, name):
        model = selectors.model_get(name)
        data = validated(GateCreateSerializer, request.data)
        slug = data.pop("target")
        target = selectors.target_get(slug) if slug else None
        gate = services.gate_create(model=model, target=target, created_by=request.user, **data)
        return Response(GateSerializer(gate).data, status=status.HTTP_201_CREATED)


class GateDetailApi(APIView):
    access = "gate"

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, name, gate_id):
        services.gate_delete(gate=selectors.gate_get(selectors.model_get(name), gate_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class TargetListApi(APIView):
    access = "target"

    @extend_schema(responses={200: TargetSerializer(many=True), **ERRORS})
    def get(self, request):
        return Response(TargetSerializer(HardwareTarget.objects.all(), many=True).data)

    @extend_schema(request=TargetSerializer, responses={201: TargetSerializer, **CONFLICT, **ERRORS})
    def post(self, request):
        data = validated(TargetSerializer, request.data)
        target = services.target_create(**data)
        return Response(TargetSerializer(target).data, status=status.HTTP_201_CREATED)


class TargetDetailApi(APIView):
    access = "target"

    @extend_schema(responses={200: TargetSerializer, **ERRORS})
    def get(self, request, slug):
        return Response(TargetSerializer(selectors.target_get(slug)).data)


class RawChunkParser(BaseParser):
    """Leaves the body unread: upload chunks are streamed to disk by the view."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream


class UploadStartApi(APIView):
    access = "upload"
    access_actions = {"POST": "register"}

    @extend_schema(
        request=UploadStartSerializer,
        responses={
            201: UploadSerializer,
            200: OpenApiResponse(UploadSerializer, description="Your open upload of the same bytes"),
            **TOO_LARGE,
            **ERRORS,
        },
    )
    def post(self, request):
        data = validated(UploadStartSerializer, request.data)
        upload, created = services.upload_start(user=request.user, **data)
        return Response(
            UploadSerializer(upload).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class UploadCheckApi(APIView):
    """Before sending a file: is the model:version name free (or taken by these very bytes)?"""

    access = "upload"
    access_actions = {"GET": "register"}

    @extend_schema(parameters=[UploadCheckQuerySerializer], responses={200: UploadCheckSerializer, **ERRORS})
    def get(self, request):
        query = validated(UploadCheckQuerySerializer, request.query_params)
        return Response(UploadCheckSerializer(selectors.registration_check(**query)).data)


class UploadApi(APIView):
    access = "upload"
    access_actions = {"PUT": "register", "PATCH": "register", "DELETE": "register"}
    parser_classes = [JSONParser, RawChunkParser]

    @extend_schema(responses={200: UploadSerializer, **ERRORS})
    def get(self, request, upload_id):
        return Response(UploadSerializer(selectors.upload_get(upload_id, user=request.user)).data)

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        parameters=[
            OpenApiParameter(
                "Content-Range", str, OpenApiParameter.HEADER, required=True, description="bytes <first>-<last>/<total>"
            )
        ],
        responses={
            200: UploadSerializer,
            409: OpenApiResponse(description="Out of order or overlapping chunk"),
            **TOO_LARGE,
            **ERRORS,
        },
    )
    def put(self, request, upload_id):
        upload = selectors.upload_get(upload_id, user=request.user)
        try:
            content_length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError as exc:
            raise BerthError("Content-Length must be a number.", field="Content-Length") from exc
        upload = services.upload_write_chunk(
            upload=upload,
            content_range=request.META.get("HTTP_CONTENT_RANGE"),
            content_length=content_length,
            stream=request._request,
        )
        return Response(UploadSerializer(upload).data)

    @extend_schema(responses={204: None, **ERRORS})
    def delete(self, request, upload_id):
        services.upload_discard(upload=selectors.upload_get(upload_id, user=request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)


class UploadCompleteApi(APIView):
    access = "upload"
    access_actions = {"POST": "register"}

    @extend_schema(
        request=UploadCompleteSerializer,
        responses={201: VersionDetailSerializer, 200: VersionDetailSerializer, **CONFLICT, **INVALID_FILE, **ERRORS},
    )
    def post(self, request, upload_id):
        upload = selectors.upload_get(upload_id, user=request.user)
        data = validated(UploadCompleteSerializer, request.data)
        version, created = services.upload_complete(
            upload=upload, user=request.user, model_name=data.pop("model"), **data
        )
        return Response(version_payload(version), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)
