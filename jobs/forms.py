"""The version page's forms for starting jobs; each turns its fields into a job's params."""

from django import forms

from registry.models import HardwareTarget

from .kinds.compress import METHODS

METHOD_LABELS = {
    "static_int8": "int8 static (calibrated, QDQ)",
    "dynamic_int8": "int8 dynamic",
    "fp16": "fp16",
    "optimize": "graph optimization (onnxruntime)",
    "prune": "magnitude pruning",
    "autotune": "int8 autotune (within an accuracy budget)",
}


def _int_list(text, field):
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as exc:
        raise forms.ValidationError(f"{field}: whole numbers separated by commas, e.g. 1,8,32.") from exc


class TargetChoiceField(forms.ModelChoiceField):
    def __init__(self, **kwargs):
        super().__init__(queryset=HardwareTarget.objects.filter(active=True), to_field_name="slug", **kwargs)

    def label_from_instance(self, target):
        return f"{target.slug} ({target.execution_provider})"


class ConvertForm(forms.Form):
    target = TargetChoiceField()
    opset = forms.IntegerField(min_value=17, max_value=21, initial=18)
    output_version = forms.CharField(required=False, max_length=128, help_text="Default: <version>-onnx")

    def params(self):
        data = self.cleaned_data
        params = {"opset": data["opset"]}
        if data["output_version"]:
            params["output_version"] = data["output_version"]
        return params


class CompressForm(forms.Form):
    method = forms.ChoiceField(choices=[(m, METHOD_LABELS[m]) for m in METHODS], initial="static_int8")
    target = TargetChoiceField()
    calibration_method = forms.ChoiceField(choices=[("minmax", "MinMax"), ("entropy", "Entropy"),
                                                    ("percentile", "Percentile")], initial="minmax",
                                           help_text="static int8")
    per_channel = forms.BooleanField(required=False, initial=True, help_text="int8")
    reduce_range = forms.BooleanField(required=False, initial=False, help_text="int8")
    sparsity = forms.FloatField(required=False, min_value=0.01, max_value=0.99, initial=0.5, help_text="pruning")
    max_accuracy_drop = forms.FloatField(required=False, min_value=0, max_value=100, initial=0.5,
                                         help_text="autotune budget, in percentage points")
    output_version = forms.CharField(required=False, max_length=128)
    benchmark_after = forms.BooleanField(required=False, initial=True, label="Benchmark the result")
    batch_sizes = forms.CharField(required=False, initial="1,8,32", help_text="for the benchmark")

    def clean_batch_sizes(self):
        return _int_list(self.cleaned_data["batch_sizes"] or "1", "batch sizes")

    def params(self):
        data = self.cleaned_data
        method = data["method"]
        params = {"method": method}
        if method in ("static_int8", "dynamic_int8"):
            params.update(per_channel=data["per_channel"], reduce_range=data["reduce_range"])
        if method == "static_int8":
            params["calibration_method"] = data["calibration_method"]
        if method == "prune":
            params["sparsity"] = data["sparsity"] if data["sparsity"] is not None else 0.5
        if method == "autotune":
            drop = data["max_accuracy_drop"] if data["max_accuracy_drop"] is not None else 0.5
            params["budget"] = {"max_accuracy_drop": drop / 100}
        if data["output_version"]:
            params["output_version"] = data["output_version"]
        if data["benchmark_after"]:
            params["then_benchmark"] = {"batch_sizes": data["batch_sizes"]}
        return params


class BenchmarkForm(forms.Form):
    targets = forms.ModelMultipleChoiceField(queryset=HardwareTarget.objects.filter(active=True),
                                             to_field_name="slug", widget=forms.CheckboxSelectMultiple)
    batch_sizes = forms.CharField(initial="1,8,32")
    threads = forms.CharField(required=False, help_text="e.g. 1,2; empty for onnxruntime's default")
    min_runs = forms.IntegerField(min_value=1, max_value=100000, initial=30)
    min_seconds = forms.FloatField(min_value=0, max_value=600, initial=1.0)

    def clean_batch_sizes(self):
        return _int_list(self.cleaned_data["batch_sizes"], "batch sizes")

    def clean_threads(self):
        return _int_list(self.cleaned_data["threads"] or "", "threads") or [None]

    def params(self):
        data = self.cleaned_data
        return {"batch_sizes": data["batch_sizes"], "threads": data["threads"], "min_runs": data["min_runs"],
                "min_seconds": data["min_seconds"]}
