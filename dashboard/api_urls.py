"""/api/v1/ (DESIGN §4)."""

from django.urls import path

from dashboard import tokens_api
from jobs import api as jobs_api
from monitoring import alerts_api
from monitoring import api as monitoring_api
from registry import api as registry_api

app_name = "api"

urlpatterns = [
    path("models/", registry_api.ModelListApi.as_view(), name="models"),
    path("models/<str:name>/", registry_api.ModelDetailApi.as_view(), name="model"),
    path("models/<str:name>/versions/", registry_api.VersionRegisterApi.as_view(), name="versions"),
    path("models/<str:name>/versions/<str:version>/", registry_api.VersionDetailApi.as_view(), name="version"),
    path(
        "models/<str:name>/versions/<str:version>/artifact/",
        registry_api.VersionArtifactApi.as_view(),
        name="version-artifact",
    ),
    path(
        "models/<str:name>/versions/<str:version>/datasets/",
        registry_api.DatasetAttachApi.as_view(),
        name="version-datasets",
    ),
    path("models/<str:name>/aliases/<slug:alias>/", registry_api.AliasApi.as_view(), name="alias"),
    path("models/<str:name>/alias-events/", registry_api.AliasEventListApi.as_view(), name="alias-events"),
    path("models/<str:name>/gates/", registry_api.GateListApi.as_view(), name="gates"),
    path("models/<str:name>/gates/<int:gate_id>/", registry_api.GateDetailApi.as_view(), name="gate"),
    path("uploads/", registry_api.UploadStartApi.as_view(), name="uploads"),
    path("uploads/check/", registry_api.UploadCheckApi.as_view(), name="upload-check"),
    path("uploads/<uuid:upload_id>/", registry_api.UploadApi.as_view(), name="upload"),
    path("uploads/<uuid:upload_id>/complete/", registry_api.UploadCompleteApi.as_view(), name="upload-complete"),
    path("targets/", registry_api.TargetListApi.as_view(), name="targets"),
    path("targets/<str:slug>/", registry_api.TargetDetailApi.as_view(), name="target"),
    path("jobs/", jobs_api.JobListApi.as_view(), name="jobs"),
    path("jobs/<int:job_id>/", jobs_api.JobDetailApi.as_view(), name="job"),
    path("jobs/<int:job_id>/cancel/", jobs_api.JobCancelApi.as_view(), name="job-cancel"),
    path("benchmarks/", jobs_api.BenchmarkListApi.as_view(), name="benchmarks"),
    path("workers/", jobs_api.WorkerListApi.as_view(), name="workers"),
    path("compare/", jobs_api.CompareApi.as_view(), name="compare"),
    path("endpoints/", monitoring_api.EndpointListApi.as_view(), name="endpoints"),
    path("endpoints/<str:name>/", monitoring_api.EndpointDetailApi.as_view(), name="endpoint"),
    path("endpoints/<str:name>/deploy/", monitoring_api.DeployApi.as_view(), name="endpoint-deploy"),
    path("endpoints/<str:name>/rollback/", monitoring_api.RollbackApi.as_view(), name="endpoint-rollback"),
    path("endpoints/<str:name>/token/", monitoring_api.TokenApi.as_view(), name="endpoint-token"),
    path("endpoints/<str:name>/bundle/", monitoring_api.BundleApi.as_view(), name="endpoint-bundle"),
    path("endpoints/<str:name>/spec/", monitoring_api.SpecApi.as_view(), name="endpoint-spec"),
    path(
        "endpoints/<str:name>/artifacts/<str:version>/", monitoring_api.ArtifactApi.as_view(), name="endpoint-artifact"
    ),
    path("endpoints/<str:name>/metrics/", monitoring_api.MetricsApi.as_view(), name="endpoint-metrics"),
    path("endpoints/<str:name>/integrity/", monitoring_api.IntegrityReportApi.as_view(), name="endpoint-integrity"),
    path("telemetry/", monitoring_api.TelemetryApi.as_view(), name="telemetry"),
    path("tokens/", tokens_api.ApiTokenListApi.as_view(), name="tokens"),
    path("tokens/<int:token_id>/", tokens_api.ApiTokenDetailApi.as_view(), name="token"),
    path("alerts/", alerts_api.AlertListApi.as_view(), name="alerts"),
    path("endpoints/<str:name>/alert-rules/", alerts_api.AlertRuleListApi.as_view(), name="alert-rules"),
    path("endpoints/<str:name>/alert-rules/<int:rule_id>/", alerts_api.AlertRuleDetailApi.as_view(), name="alert-rule"),
    path(
        "endpoints/<str:name>/alert-rules/<int:rule_id>/silence/",
        alerts_api.AlertRuleSilenceApi.as_view(),
        name="alert-rule-silence",
    ),
]
