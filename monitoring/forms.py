from django import forms

from registry.models import HardwareTarget, Model, ModelVersion, model_name_validator


class EndpointCreateForm(forms.Form):
    name = forms.CharField(max_length=100, validators=[model_name_validator], help_text="e.g. digits-prod")
    model = forms.ModelChoiceField(queryset=Model.objects.order_by("name"), to_field_name="name")
    target = forms.ModelChoiceField(queryset=HardwareTarget.objects.filter(active=True), to_field_name="slug")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class DeployForm(forms.Form):
    version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), to_field_name="version")
    weight = forms.IntegerField(min_value=1, max_value=100, initial=100,
                                help_text="% of the traffic; under 100 it is a canary beside what serves now")

    def __init__(self, *args, endpoint, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = ModelVersion.objects.filter(
            model=endpoint.model, status=ModelVersion.Status.READY, format=ModelVersion.Format.ONNX).order_by("-created")
