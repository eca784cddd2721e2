from django.urls import path

from . import alert_views, views

app_name = "monitoring"

urlpatterns = [
    path("endpoints/", views.endpoint_list, name="endpoints"),
    path("new/endpoint/", views.endpoint_create, name="endpoint-create"),
    path("endpoints/<str:name>/", views.endpoint_detail, name="endpoint"),
    path("endpoints/<str:name>/live/", views.endpoint_live, name="endpoint-live"),
    path("endpoints/<str:name>/deploy/", views.endpoint_deploy, name="endpoint-deploy"),
    path("endpoints/<str:name>/promote/<str:version>/", views.endpoint_promote, name="endpoint-promote"),
    path("endpoints/<str:name>/rollback/", views.endpoint_rollback, name="endpoint-rollback"),
    path("endpoints/<str:name>/token/", views.endpoint_token, name="endpoint-token"),
    path("endpoints/<str:name>/batching/", views.endpoint_batching, name="endpoint-batching"),
    path("endpoints/<str:name>/apply-profile/", views.endpoint_apply_profile, name="endpoint-apply-profile"),
    path("endpoints/<str:name>/bundle/", views.endpoint_bundle, name="endpoint-bundle"),
    path("alerts/", alert_views.alerts, name="alerts"),
    path("endpoints/<str:name>/alerts/", alert_views.alert_rules, name="alert-rules"),
    path("endpoints/<str:name>/alerts/new/", alert_views.alert_rule_create, name="alert-rule-create"),
    path("endpoints/<str:name>/alerts/<int:rule_id>/delete/", alert_views.alert_rule_delete, name="alert-rule-delete"),
    path(
        "endpoints/<str:name>/alerts/<int:rule_id>/silence/", alert_views.alert_rule_silence, name="alert-rule-silence"
    ),
]
