"""Endpoints and deployments for people and CI; spec, artifacts and telemetry for the serving
runtimes (which authenticate with their endpoint's token)."""

from django.conf import settings
from django.http import FileResponse, HttpResponseNotModified
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api import CONFLICT, ERRORS, TOO_LARGE, validated
from common.errors import TooLarge
from common.renderers import FirstRendererNegotiation
from registry import selectors as registry_selectors

from . import bundle, replicas, selectors, series, services
from .authentication import EndpointTokenAuthentication, IsEndpointRuntime
from .serializers import (
    BatchingSerializer,
    DeploySerializer,
    EndpointCreatedSerializer,
    EndpointCreateSerializer,
    EndpointDetailSerializer,
    EndpointSerializer,
    IntegrityReportSerializer,
    TokenRotateSerializer,
    TokenSerializer,
)

RUNTIME = {"authentication_classes": [EndpointTokenAuthentication], "permission_classes": [IsEndpointRuntime]}


class EndpointListApi(GenericAPIView):
    access = "endpoint"
    serializer_class = EndpointSerializer

    @extend_schema(responses={200: EndpointSerializer(many=True), **ERRORS})
    def get(self, request):
        page = self.paginate_queryset(selectors.endpoint_list())
        return self.get_paginated_response(EndpointSerializer(page, many=True).data)

    @extend_schema(request=EndpointCreateSerializer, responses={201: EndpointCreatedSerializer, **CONFLICT, **ERRORS})
    def post(self, request):
        data = validated(EndpointCreateSerializer, request.data)
        model = registry_selectors.model_get(data["model"])
        target = registry_selectors.target_get(data["target"])
        endpoint, token = services.endpoint_create(
            name=data["name"],
            model=model,
            target=target,
            description=data["description"],
            scrape_url=data["scrape_url"],
            created_by=request.user,
        )
        endpoint.token = token
        return Response(EndpointCreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointDetailApi(APIView):
    access = "endpoint"

    @extend_schema(responses={200: EndpointDetailSerializer, **ERRORS})
    def get(self, request, name):
        return Response(EndpointDetailSerializer(selectors.endpoint_get(name)).data)

    @extend_schema(
        request=BatchingSerializer,
        responses={200: EndpointSerializer, **ERRORS},
        description="Set dynamic batching and inference threads for the endpoint's berth-serve runtimes "
        "(they pick them up with the spec within seconds).",
    )
    def patch(self, request, name):
        endpoint = selectors.endpoint_get(name)
        data = validated(BatchingSerializer, request.data)
        services.endpoint_set_batching(endpoint=endpoint, user=request.user, **data)
        return Response(EndpointSerializer(selectors.endpoint_get(name)).data)


class DeployApi(APIView):
    access = "endpoint"

    @extend_schema(
        request=DeploySerializer,
        responses={200: EndpointSerializer, **CONFLICT, **ERRORS},
        description="Deploy a version with a share of the traffic (100 promotes it), or set the whole "
        "split with weights. A version that is not ready (or not ONNX) is 409. apply_serving_profile also sets "
        "the endpoint's batching and threads from the version's newest serving profile on its target (400 when none).",
    )
    def post(self, request, name):
        endpoint = selectors.endpoint_get(name)
        data = validated(DeploySerializer, request.data)
        if "weights" in data:
            split = [(self._version(endpoint, w["version"]), w["weight"]) for w in data["weights"]]
            services.set_weights(endpoint=endpoint, weights=split, user=request.user)
        else:
            services.deploy(
                endpoint=endpoint,
                version=self._version(endpoint, data["version"]),
                weight=data["weight"],
                user=request.user,
                apply_serving_profile=data["apply_serving_profile"],
            )
        return Response(EndpointSerializer(selectors.endpoint_get(name)).data)

    @staticmethod
    def _version(endpoint, ref):
        return registry_selectors.version_get(endpoint.model.name, ref.rpartition(":")[2])


class RollbackApi(APIView):
    access = "endpoint"

    @extend_schema(request=None, responses={200: EndpointSerializer, **CONFLICT, **ERRORS})
    def post(self, request, name):
        endpoint = selectors.endpoint_get(name)
        services.rollback(endpoint=endpoint, user=request.user)
        return Response(EndpointSerializer(selectors.endpoint_get(name)).data)


class TokenApi(APIView):
    access = "endpoint"

    @extend_schema(
        request=TokenRotateSerializer,
        responses={200: TokenSerializer, **ERRORS},
        description="A new token for the endpoint's runtimes (shown this once). The old one keeps "
        "working for grace_minutes (default BERTH_TOKEN_GRACE_MINUTES, 10), so replicas can "
        "be restarted with the new one; 0 stops it at once.",
    )
    def post(self, request, name):
        endpoint = selectors.endpoint_get(name)
        data = validated(TokenRotateSerializer, request.data)
        token = services.endpoint_rotate_token(
            endpoint=endpoint, user=request.user, grace_minutes=data.get("grace_minutes")
        )
        return Response(
            {
                "token": token,
                "token_prefix": endpoint.token_prefix,
                "old_token_prefix": endpoint.old_token_prefix or None,
                "old_token_expires": endpoint.old_token_expires,
            }
        )


class BundleApi(APIView):
    access = "endpoint"
    content_negotiation_class = FirstRendererNegotiation

    @extend_schema(
        responses={(200, "application/gzip"): OpenApiTypes.BINARY, **ERRORS},
        description="A tar.gz that serves the endpoint's current split offline: artifacts, runtime, "
        "spec and a Dockerfile.",
    )
    def get(self, request, name):
        endpoint = selectors.endpoint_get(name)
        archive = bundle.build(endpoint)
        return FileResponse(
            archive, as_attachment=True, filename=f"{endpoint.name}-bundle.tar.gz", content_type="application/gzip"
        )


class SpecApi(APIView):
    """What the serving runtime must serve (endpoint token); ETag / If-None-Match → 304."""

    authentication_classes = RUNTIME["authentication_classes"]
    permission_classes = RUNTIME["permission_classes"]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, 304: OpenApiResponse(description="Unchanged"), **ERRORS})
    def get(self, request, name):
        spec, etag = selectors.endpoint_spec(request.auth)
        if request.headers.get("If-None-Match") == etag:
            response = HttpResponseNotModified()
            response["ETag"] = etag
            return response
        return Response(spec, headers={"ETag": etag})


class ArtifactApi(APIView):
    """A deployed version's artifact, for the endpoint's runtimes."""

    authentication_classes = RUNTIME["authentication_classes"]
    permission_classes = RUNTIME["permission_classes"]
    content_negotiation_class = FirstRendererNegotiation

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, **ERRORS})
    def get(self, request, name, version):
        found = selectors.deployed_version(request.auth, version)
        return FileResponse(found.artifact.open("rb"), as_attachment=True, filename=f"{found.sha256}.onnx")


class IntegrityReportApi(APIView):
    """A serving runtime reports an artifact that failed its sha256 check (it refuses to load it)."""

    authentication_classes = RUNTIME["authentication_classes"]
    permission_classes = RUNTIME["permission_classes"]

    @extend_schema(
        request=IntegrityReportSerializer,
        responses={201: OpenApiResponse(description="Written to the audit log"), **ERRORS},
    )
    def post(self, request, name):
        data = validated(IntegrityReportSerializer, request.data)
        event = services.integrity_report(endpoint=request.auth, **data)
        return Response({"audit_event": event.pk}, status=status.HTTP_201_CREATED)


class TelemetryApi(APIView):
    """Telemetry windows from a serving runtime (DESIGN §4), counted once per flush_id."""

    authentication_classes = RUNTIME["authentication_classes"]
    permission_classes = RUNTIME["permission_classes"]
    parser_classes = [JSONParser]  # runtimes and external servers send JSON; nothing else is documented

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        responses={
            202: OpenApiResponse(description="Counted"),
            200: OpenApiResponse(description="This flush_id was counted already"),
            **TOO_LARGE,
            **ERRORS,
        },
    )
    def post(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > settings.BERTH_TELEMETRY_MAX_BYTES:
            raise TooLarge(
                f"A telemetry flush may be at most {settings.BERTH_TELEMETRY_MAX_BYTES:,} bytes; send "
                "smaller, more frequent flushes."
            )
        body = request.body  # read (and kept) before DRF parses it: a retried POST is known by its bytes
        endpoint = request.auth
        accepted, duplicate = replicas.telemetry_receive(
            endpoint=endpoint,
            payload=request.data,
            body=body,
            token=endpoint.runtime_token,
            token_prefix=endpoint.runtime_token_prefix,
        )
        return Response(
            {"accepted": accepted, "duplicate": duplicate},
            status=status.HTTP_200_OK if duplicate else status.HTTP_202_ACCEPTED,
        )


class MetricsApi(APIView):
    """The monitored series of an endpoint, per version (DESIGN §4)."""

    access = "endpoint"

    @extend_schema(
        parameters=[
            OpenApiParameter("range", str, description="15m, 1h (default), 6h, 24h, 7d or 30d; or since/until"),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
            OpenApiParameter(
                "step",
                int,
                description="Seconds per point, a multiple of 60 (default: chosen "
                "so that the range has at most 200 points)",
            ),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
        description="Per version and step: requests, errors, error_rate, rps, error_kinds, latency p50/p95/p99 "
        "(ms, from the merged sketches; mean_ms and coarse=true where a scraped source gives only "
        "sums), drift per feature (test, score, threshold) and dataset drift; the benchmark p95 of "
        "each version on the endpoint's target; the deployment changes in the range. Rates are over "
        "the time each version served (served_from, served_until, served_seconds; partial=true for "
        "a step served in part; rps null for a step without data).",
    )
    def get(self, request, name):
        endpoint = selectors.endpoint_get(name)
        since, until, step = series.parse_range(request.query_params)
        return Response(series.endpoint_series(endpoint, since=since, until=until, step=step))
