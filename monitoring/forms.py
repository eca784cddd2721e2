from django import forms

from registry.models import HardwareTarget, Model, ModelVersion, model_name_validator


class EndpointCreateForm(forms.Form):
    name = forms.CharField(max_length=100, validators=[model_name_validator], help_text="e.g. digits-prod")
    model = forms.ModelChoiceField(queryset=Model.objects.order_by("name"), to_field_name="name")
    target = forms.ModelChoiceField(queryset=HardwareTarget.objects.filter(active=True), to_field_name="slug")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    scrape_url = forms.URLField(
        required=False,
        assume_scheme="http",
        label="Scrape URL",
        help_text="Optional: the Prometheus /metrics URL of a Triton or MLServer server "
        "to read instead of receiving telemetry",
    )


class DeployForm(forms.Form):
    version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), to_field_name="version")
    weight = forms.IntegerField(
        min_value=1,
        max_value=100,
        initial=100,
        help_text="% of the traffic; under 100 it is a canary beside what serves now",
    )
    # Below the deploy row (which lines up with Roll back and New token), joined to its form by
    # the input's form attribute.
    apply_serving_profile = forms.BooleanField(
        required=False,
        label="and apply its serving profile (batching and threads from its newest profile on this target)",
        widget=forms.CheckboxInput(attrs={"form": "deploy-form"}),
    )

    def __init__(self, *args, endpoint, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = ModelVersion.objects.filter(
            model=endpoint.model, status=ModelVersion.Status.READY, format=ModelVersion.Format.ONNX
        ).order_by("-created")


class BatchingForm(forms.Form):
    max_batch_size = forms.IntegerField(
        min_value=1, max_value=1024, label="Max batch size", help_text="rows per batch; 1 turns dynamic batching off"
    )
    max_queue_delay_us = forms.IntegerField(
        min_value=0,
        max_value=1_000_000,
        label="Max queue delay (µs)",
        help_text="the longest a request waits for others to join its batch",
    )
    inference_threads = forms.IntegerField(
        min_value=1,
        max_value=64,
        required=False,
        label="Inference threads",
        help_text="per berth-serve worker process; empty: berth-serve's --threads",
    )


from .models import AlertRule  # noqa: E402 (appended with the alert forms)


class AlertRuleForm(forms.Form):
    """A new alert rule; alerts.rule_create checks the values together."""

    metric = forms.ChoiceField(choices=AlertRule.Metric.choices)
    threshold = forms.FloatField(
        required=False, help_text="ms, % or k; for drift the % of features that must drift (empty: any)"
    )
    latency = forms.ChoiceField(
        choices=AlertRule.Latency.choices,
        initial=AlertRule.Latency.INFERENCE,
        required=False,
        label="Benchmark gap of",
        help_text="benchmark gap only: what production latency is compared with its like benchmark",
    )
    window_minutes = forms.IntegerField(min_value=1, max_value=24 * 60, initial=5, label="Window (minutes)")
    min_requests = forms.IntegerField(min_value=0, initial=20, help_text="fewer requests in the window: no verdict")
    webhook_url = forms.CharField(
        required=False,
        max_length=200,
        label="Webhook URL",
        help_text="receives a JSON POST when an alert fires and resolves",
    )
    emails = forms.CharField(required=False, max_length=500, label="E-mails", help_text="comma-separated")


class SilenceForm(forms.Form):
    minutes = forms.TypedChoiceField(
        coerce=int, choices=[(15, "15 min"), (60, "1 h"), (240, "4 h"), (1440, "24 h"), (0, "lift the silence")]
    )
