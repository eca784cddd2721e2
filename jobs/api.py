from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.generics import GenericAPIView
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from common.api import CONFLICT, ERRORS, validated
from common.renderers import CSVRenderer

from registry import selectors as registry_selectors
from serving.protocol import ENCODINGS

from . import selectors, services
from .models import BenchmarkResult
from .comparison import TABLE_COLUMNS, benchmark_comparison, comparison_payload, table
from .serializers import (
    CompareQuerySerializer,
    BenchmarkResultSerializer,
    JobCreateSerializer,
    JobDetailSerializer,
    JobSerializer,
    WorkerSerializer,
)


class JobListApi(GenericAPIView):
    access = "job"
    serializer_class = JobSerializer

    @extend_schema(
        parameters=[OpenApiParameter(name, str) for name in ("kind", "status", "target", "version")],
        responses={200: JobSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        params = request.query_params
        version = registry_selectors.version_by_ref(params["version"]) if params.get("version") else None
        jobs = selectors.job_list(
            kind=params.get("kind", ""),
            status=params.get("status", ""),
            target=params.get("target", ""),
            version=version,
        )
        page = self.paginate_queryset(jobs)
        return self.get_paginated_response(JobSerializer(page, many=True).data)

    @extend_schema(request=JobCreateSerializer, responses={202: JobDetailSerializer, **ERRORS})
    def post(self, request):
        data = validated(JobCreateSerializer, request.data)
        version = registry_selectors.version_by_ref(data["version"])
        target = registry_selectors.target_get(data["target"]) if data["target"] else None
        job = services.job_create(
            kind=data["kind"], version=version, target=target, params=data["params"], created_by=request.user
        )
        return Response(JobDetailSerializer(selectors.job_get(job.id)).data, status=status.HTTP_202_ACCEPTED)


class JobDetailApi(APIView):
    access = "job"

    @extend_schema(responses={200: JobDetailSerializer, **ERRORS})
    def get(self, request, job_id):
        return Response(JobDetailSerializer(selectors.job_get(job_id)).data)


class JobCancelApi(APIView):
    access = "job"

    @extend_schema(request=None, responses={200: JobDetailSerializer, **CONFLICT, **ERRORS})
    def post(self, request, job_id):
        job = services.job_cancel(job=selectors.job_get(job_id), user=request.user)
        return Response(JobDetailSerializer(selectors.job_get(job.id)).data)


class BenchmarkListApi(GenericAPIView):
    access = "job"
    serializer_class = BenchmarkResultSerializer
    renderer_classes = [JSONRenderer, CSVRenderer]
    csv_columns = BenchmarkResultSerializer.Meta.fields
    pagination_class = None

    @extend_schema(
        parameters=[
            OpenApiParameter("model", str),
            OpenApiParameter("version", str),
            OpenApiParameter("target", str),
            OpenApiParameter(
                "scope",
                str,
                enum=list(BenchmarkResult.Scope.values),
                description="session_run: the model alone; request: requests end to end (default: both)",
            ),
            OpenApiParameter("encoding", str, enum=list(ENCODINGS), description="request scope: how they were sent"),
            OpenApiParameter("format", str, enum=["json", "csv"], description="csv for a spreadsheet"),
        ],
        responses={200: BenchmarkResultSerializer(many=True), **ERRORS},
    )
    def get(self, request):
        params = request.query_params
        rows = selectors.benchmark_results(
            model=params.get("model"),
            version=params.get("version"),
            target=params.get("target"),
            scope=params.get("scope"),
            encoding=params.get("encoding"),
        )
        response = Response(BenchmarkResultSerializer(rows, many=True).data)
        if getattr(request, "accepted_renderer", None) and request.accepted_renderer.format == "csv":
            response["Content-Disposition"] = 'attachment; filename="benchmarks.csv"'
        return response


class WorkerListApi(APIView):
    access = "worker"

    @extend_schema(responses={200: WorkerSerializer(many=True), **ERRORS})
    def get(self, request):
        from .models import WorkerHost

        live = set(selectors.live_workers().values_list("id", flat=True))
        workers = WorkerHost.objects.all()
        for worker in workers:
            worker.live = worker.id in live
        return Response(WorkerSerializer(workers, many=True).data)


class CompareApi(APIView):
    access = "job"
    renderer_classes = [JSONRenderer, CSVRenderer]
    csv_columns = TABLE_COLUMNS

    @extend_schema(
        parameters=[
            CompareQuerySerializer,
            OpenApiParameter(
                "format", str, enum=["json", "csv"], description="csv: the table's rows, for a spreadsheet"
            ),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )
    def get(self, request):
        query = validated(CompareQuerySerializer, request.query_params)
        comparison = benchmark_comparison(**CompareQuerySerializer.comparison_kwargs(query))
        rows = table(comparison)
        if request.accepted_renderer.format == "csv":
            response = Response(rows)
            response["Content-Disposition"] = f'attachment; filename="compare-{comparison.model.name}.csv"'
            return response
        return Response(comparison_payload(comparison, rows))
