from django import forms

from .models import HardwareTarget, Model, model_name_validator
from .services import PROVIDERS_BY_DEVICE


class ModelCreateForm(forms.Form):
    name = forms.CharField(max_length=100, validators=[model_name_validator],
                           help_text="Lowercase letters, digits, '-' and '_'.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    task = forms.ChoiceField(choices=Model.Task.choices, initial=Model.Task.OTHER)


class AliasForm(forms.Form):
    name = forms.SlugField(max_length=50, help_text="e.g. production, candidate")
    version = forms.ChoiceField()

    def __init__(self, *args, versions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = [(v.version, f"{v.version} ({v.status})") for v in versions]


class TargetForm(forms.Form):
    slug = forms.SlugField(max_length=50, help_text="Workers serve it on the queue target.<slug>.")
    name = forms.CharField(max_length=100, required=False)
    device = forms.ChoiceField(choices=HardwareTarget.Device.choices)
    execution_provider = forms.ChoiceField(
        choices=[(p, p) for providers in PROVIDERS_BY_DEVICE.values() for p in providers])
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
