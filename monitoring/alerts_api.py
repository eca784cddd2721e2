"""Alerts and alert rules over the REST API: GET /api/v1/alerts/ and an endpoint's
/alert-rules/. Reads need the viewer role, writes the engineer role."""

from urllib.parse import urlsplit

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from common.access import WRITE, permits
from common.api import ERRORS, validated
from common.errors import BerthError, NotFound

from . import alerts, notify, selectors
from .models import Alert, AlertRule, Notification


def masked_webhook(url, user):
    """A webhook URL often carries a secret (Slack, Teams): viewers see its host only."""
    if not url or permits(user, "alert", WRITE):
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


class NotificationSerializer(serializers.Serializer):
    channel = serializers.CharField()
    event = serializers.CharField()
    destination = serializers.SerializerMethodField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    last_error = serializers.CharField()
    created = serializers.DateTimeField()
    sent = serializers.DateTimeField(allow_null=True)

    def get_destination(self, notification) -> str:
        if notification.channel == Notification.Channel.WEBHOOK:
            return masked_webhook(notification.destination, self.context["request"].user)
        return notification.destination


class AlertSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    endpoint = serializers.CharField(source="endpoint.name")
    version = serializers.CharField(source="version.version", allow_null=True, default=None)
    rule = serializers.IntegerField(source="rule_id")
    rule_description = serializers.CharField(source="rule.describe")
    metric = serializers.CharField(source="rule.metric")
    value = serializers.FloatField(
        allow_null=True,
        help_text="The measured value when it fired (ms, %, k or the worst drift score relative to its threshold)",
    )
    last_value = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    value_text = serializers.SerializerMethodField(
        help_text="The latest figure against its threshold in the metric's terms, e.g. 'p95 812 ms (threshold 500 "
        "ms)' or, for drift, the worst feature's test and effect: 'x.mean: KS p-value 2e-6 (threshold 0.05), "
        "Wasserstein 0.31 sd (threshold 0.1 sd)'"
    )
    message = serializers.CharField()
    details = serializers.JSONField()
    started = serializers.DateTimeField()
    resolved = serializers.DateTimeField(allow_null=True)
    last_evaluated = serializers.DateTimeField()
    notifications = NotificationSerializer(many=True, source="notifications.all")

    def get_value_text(self, alert) -> str:
        return notify.value_text(alert)


class AlertRuleSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    endpoint = serializers.CharField(source="endpoint.name")
    metric = serializers.CharField()
    description = serializers.CharField(source="describe")
    threshold = serializers.FloatField(allow_null=True)
    latency = serializers.CharField(help_text="benchmark_gap: inference (session.run) or request (end to end)")
    window_minutes = serializers.IntegerField()
    min_requests = serializers.IntegerField()
    webhook_url = serializers.SerializerMethodField()
    emails = serializers.SerializerMethodField()
    enabled = serializers.BooleanField()
    silenced_until = serializers.DateTimeField(allow_null=True)
    created = serializers.DateTimeField()

    def get_webhook_url(self, rule) -> str:
        return masked_webhook(rule.webhook_url, self.context["request"].user)

    def get_emails(self, rule) -> list[str]:
        return alerts.email_list(rule.emails)


class AlertRuleCreateSerializer(serializers.Serializer):
    metric = serializers.ChoiceField(choices=AlertRule.Metric.choices)
    threshold = serializers.FloatField(
        required=False,
        allow_null=True,
        default=None,
        help_text="ms for p95_latency, % for error_rate, k for benchmark_gap; "
        "for drift the share of features (%) that must drift past their own test's threshold "
        "(empty: any feature; 50: dataset drift)",
    )
    latency = serializers.ChoiceField(
        choices=AlertRule.Latency.choices,
        required=False,
        default=AlertRule.Latency.INFERENCE,
        help_text="benchmark_gap only: inference compares session.run with the benchmark at the same batch "
        "size; request compares requests with the end-to-end benchmark in the same encoding and batch size",
    )
    window_minutes = serializers.IntegerField(
        required=False, default=5, min_value=1, max_value=alerts.MAX_WINDOW_MINUTES
    )
    min_requests = serializers.IntegerField(required=False, default=20, min_value=0)
    webhook_url = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    emails = serializers.ListField(child=serializers.CharField(max_length=254), required=False, default=list)
    enabled = serializers.BooleanField(required=False, default=True)


class SilenceSerializer(serializers.Serializer):
    minutes = serializers.IntegerField(
        min_value=0,
        max_value=alerts.MAX_SILENCE_MINUTES,
        help_text="Silence notifications this long; 0 lifts the silence",
    )


def _rule_get(endpoint, rule_id):
    rule = AlertRule.objects.select_related("endpoint").filter(endpoint=endpoint, pk=rule_id).first()
    if rule is None:
        raise NotFound(f"{endpoint.name} has no alert rule {rule_id}.")
    return rule


class AlertListApi(GenericAPIView):
    access = "alert"
    serializer_class = AlertSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=Alert.State.values),
            OpenApiParameter("endpoint", str, description="An endpoint's name"),
        ],
        responses={200: AlertSerializer(many=True), **ERRORS},
        description="Alerts, firing first, then newest first.",
    )
    def get(self, request):
        state = request.query_params.get("state", "")
        if state and state not in Alert.State.values:
            raise BerthError(f"state is {' or '.join(Alert.State.values)}.", field="state")
        name = request.query_params.get("endpoint")
        endpoint = selectors.endpoint_get(name) if name else None
        page = self.paginate_queryset(alerts.alert_list(state=state, endpoint=endpoint))
        return self.get_paginated_response(AlertSerializer(page, many=True, context={"request": request}).data)


class AlertRuleListApi(GenericAPIView):
    access = "alert"
    serializer_class = AlertRuleSerializer

    @extend_schema(responses={200: AlertRuleSerializer(many=True), **ERRORS})
    def get(self, request, name):
        endpoint = selectors.endpoint_get(name)
        page = self.paginate_queryset(alerts.rule_list(endpoint))
        return self.get_paginated_response(AlertRuleSerializer(page, many=True, context={"request": request}).data)

    @extend_schema(request=AlertRuleCreateSerializer, responses={201: AlertRuleSerializer, **ERRORS})
    def post(self, request, name):
        endpoint = selectors.endpoint_get(name)
        data = validated(AlertRuleCreateSerializer, request.data)
        rule = alerts.rule_create(endpoint=endpoint, user=request.user, **data)
        return Response(AlertRuleSerializer(rule, context={"request": request}).data, status=status.HTTP_201_CREATED)


class AlertRuleDetailApi(APIView):
    access = "alert"

    @extend_schema(responses={200: AlertRuleSerializer, **ERRORS})
    def get(self, request, name, rule_id):
        rule = _rule_get(selectors.endpoint_get(name), rule_id)
        return Response(AlertRuleSerializer(rule, context={"request": request}).data)

    @extend_schema(
        request=AlertRuleCreateSerializer,
        responses={200: AlertRuleSerializer, **ERRORS},
        description="Change some of the rule's settings. Changing the metric needs its threshold.",
    )
    def patch(self, request, name, rule_id):
        rule = _rule_get(selectors.endpoint_get(name), rule_id)
        serializer = AlertRuleCreateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        rule = alerts.rule_update(rule=rule, user=request.user, **serializer.validated_data)
        return Response(AlertRuleSerializer(rule, context={"request": request}).data)

    @extend_schema(request=None, responses={204: OpenApiResponse(description="Deleted with its alerts"), **ERRORS})
    def delete(self, request, name, rule_id):
        alerts.rule_delete(rule=_rule_get(selectors.endpoint_get(name), rule_id), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlertRuleSilenceApi(APIView):
    access = "alert"

    @extend_schema(
        request=SilenceSerializer,
        responses={200: AlertRuleSerializer, **ERRORS},
        description='Silence the rule\'s notifications for a while ({"minutes": 60}); 0 lifts it. '
        "Alerts still fire and resolve; their notifications are recorded as silenced.",
    )
    def post(self, request, name, rule_id):
        rule = _rule_get(selectors.endpoint_get(name), rule_id)
        data = validated(SilenceSerializer, request.data)
        rule = alerts.rule_silence(rule=rule, minutes=data["minutes"], user=request.user)
        return Response(AlertRuleSerializer(rule, context={"request": request}).data)
