from django import forms

from .models import HardwareTarget, Model, PromotionGate, model_name_validator
from .presets import PRESETS


class ModelCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100, validators=[model_name_validator], help_text="Lowercase letters, digits, '-' and '_'."
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    task = forms.ChoiceField(choices=Model.Task.choices, initial=Model.Task.OTHER)


class AliasForm(forms.Form):
    name = forms.SlugField(max_length=50, help_text="e.g. production, candidate")
    version = forms.ChoiceField()
    # Shown to admins only; the service refuses an override from anyone else.
    override = forms.BooleanField(required=False, label="Override failing gates")
    justification = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why this version may be promoted although a gate fails.",
    )

    def __init__(self, *args, versions=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].choices = [(v.version, f"{v.version} ({v.status})") for v in versions]


class GateForm(forms.Form):
    kind = forms.ChoiceField(choices=PromotionGate.Kind.choices)
    threshold = forms.FloatField(
        help_text="Accuracy drop: a fraction (0.005 = 0.5 pt) below the most accurate "
        "version on the same evaluation set. Cosine: at least this (0.99). "
        "Relative error: a fraction (0.01 = 1 %). Latency: milliseconds."
    )
    target = forms.ModelChoiceField(
        queryset=HardwareTarget.objects.order_by("slug"),
        to_field_name="slug",
        required=False,
        empty_label="any (quality gates only)",
    )
    batch_size = forms.IntegerField(min_value=1, initial=1, help_text="For p95 gates.")


class TargetForm(forms.Form):
    slug = forms.SlugField(max_length=50, help_text="Workers serve it on the queue target.<slug>.")
    name = forms.CharField(max_length=100, required=False)
    device = forms.ChoiceField(choices=HardwareTarget.Device.choices)
    execution_provider = forms.ChoiceField(
        choices=[(p, p) for providers in HardwareTarget.PROVIDERS_BY_DEVICE.values() for p in providers]
    )
    preset = forms.ChoiceField(
        required=False,
        choices=[("", "none: the device and provider above")]
        + [(name, f"{name} ({preset.provider})") for name, preset in PRESETS.items()],
        help_text="Fills device, provider and its options: "
        + "; ".join(f"{name}: {preset.help}" for name, preset in PRESETS.items() if preset.device != "cpu"),
    )
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
