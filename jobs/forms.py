"""The version page's forms for starting jobs; each turns its fields into a job's params."""

from django import forms

from registry.models import HardwareTarget

from berth.compression import METHODS
from serving.protocol import ENCODINGS

from .kinds.benchmark import MEASURES


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


def _method_field(param):
    """The form field of a declared compression parameter (None when the page leaves it out)."""
    if param.form_field is not None:
        spec = param.form_field
        return spec.name, forms.FloatField(
            required=False,
            min_value=spec.low,
            max_value=spec.high,
            initial=spec.default,
            label=spec.label.capitalize(),
            help_text=param.help,
        )
    if not param.form:
        return None
    common = {
        "required": False,
        "initial": param.default,
        "help_text": param.help,
        "label": param.name.replace("_", " ").capitalize(),
    }
    if param.kind == "bool":
        return param.name, forms.BooleanField(**common)
    if param.kind == "int":
        return param.name, forms.IntegerField(min_value=param.low, max_value=param.high, **common)
    if param.kind == "float":
        return param.name, forms.FloatField(min_value=param.low, max_value=param.high, **common)
    if param.kind == "choice":
        return param.name, forms.ChoiceField(choices=[(c, c) for c in param.choices], **common)
    raise ValueError(f"{param.name}: a {param.kind} parameter needs form=False or a form_field")


class CompressForm(forms.Form):
    """Method, target, then each method's own fields (from berth.compression), shown only when
    that method is chosen: a field's wrapper carries data-show-when (static/js/forms.js)."""

    method = forms.ChoiceField(choices=[(m.name, m.label) for m in METHODS], initial="static_int8")
    target = TargetChoiceField()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # field name -> (methods showing it, {method: param}); a name shared by methods is one field
        self.method_fields = {}
        for method in METHODS:
            for param in method.params:
                made = _method_field(param)
                if made is None:
                    continue
                name, field = made
                methods, params = self.method_fields.setdefault(name, ([], {}))
                methods.append(method.name)
                params[method.name] = param
                self.fields.setdefault(name, field)
        for name, field in (
            ("output_version", forms.CharField(required=False, max_length=128)),
            ("benchmark_after", forms.BooleanField(required=False, initial=True, label="Benchmark the result")),
            ("batch_sizes", forms.CharField(required=False, initial="1,8,32", help_text="for the benchmark")),
        ):
            self.fields[name] = field

    def rows(self):
        """(bound field, the methods that show it separated by spaces, or "" for every method)."""
        return [
            (self[name], " ".join(self.method_fields[name][0]) if name in self.method_fields else "")
            for name in self.fields
        ]

    def clean_batch_sizes(self):
        return _int_list(self.cleaned_data["batch_sizes"] or "1", "batch sizes")

    def params(self):
        data = self.cleaned_data
        method = data["method"]
        params = {"method": method}
        for name, (methods, declared) in self.method_fields.items():
            if method not in methods:
                continue
            param, value = declared[method], data[name]
            if param.form_field is not None:
                value = param.form_field.to_param(param.form_field.default if value is None else value)
            elif value is None or value == "":
                value = param.default
            params[param.name] = value
        if data["output_version"]:
            params["output_version"] = data["output_version"]
        if data["benchmark_after"]:
            params["then_benchmark"] = {"batch_sizes": data["batch_sizes"]}
        return params


class BenchmarkForm(forms.Form):
    targets = forms.ModelMultipleChoiceField(
        queryset=HardwareTarget.objects.filter(active=True), to_field_name="slug", widget=forms.CheckboxSelectMultiple
    )
    batch_sizes = forms.CharField(initial="1,8,32")
    threads = forms.CharField(required=False, help_text="e.g. 1,2; empty for onnxruntime's default")
    min_runs = forms.IntegerField(min_value=1, max_value=100000, initial=30)
    min_seconds = forms.FloatField(min_value=0, max_value=600, initial=1.0)
    measure = forms.ChoiceField(
        choices=[(name, f"{name}: {what}") for name, what in MEASURES.items()],
        required=False,
        initial="inference",
        help_text="Requests are what production's request latency is compared with",
    )
    encoding = forms.ChoiceField(
        choices=[(name, name) for name in ENCODINGS],
        required=False,
        initial="json",
        help_text="how requests are sent (measure=requests)",
    )

    def clean_batch_sizes(self):
        return _int_list(self.cleaned_data["batch_sizes"], "batch sizes")

    def clean_threads(self):
        return _int_list(self.cleaned_data["threads"] or "", "threads") or [None]

    def params(self):
        data = self.cleaned_data
        common = {
            "batch_sizes": data["batch_sizes"],
            "min_runs": data["min_runs"],
            "min_seconds": data["min_seconds"],
        }
        if data["measure"] == "requests":
            return {**common, "measure": "requests", "encoding": data["encoding"] or "json"}
        return {**common, "threads": data["threads"]}


class ServeProfileForm(forms.Form):
    """A serving profile's sweep: berth-serve's core on the target's worker over concurrency ×
    max_batch_size × inference threads (the serve_profile job checks the ranges)."""

    target = TargetChoiceField()
    concurrency = forms.CharField(initial="1,8,32", help_text="clients sending at once")
    batch_sizes = forms.CharField(initial="1,8,32", label="Max batch sizes", help_text="1: no batching")
    threads = forms.CharField(required=False, help_text="inference threads, e.g. 1,4; empty: 1 and one per CPU")
    seconds = forms.FloatField(min_value=0.1, max_value=60, initial=2.0, help_text="per configuration")
    p99_budget_ms = forms.FloatField(min_value=0.1, max_value=60_000, initial=50.0, label="p99 budget (ms)")
    search = forms.ChoiceField(
        choices=[("quick", "Quick search"), ("full", "Every configuration")],
        initial="quick",
        required=False,
        help_text="quick: climbs from the smallest configuration towards more throughput, measuring a few",
    )

    def clean_concurrency(self):
        return _int_list(self.cleaned_data["concurrency"], "concurrency")

    def clean_batch_sizes(self):
        return _int_list(self.cleaned_data["batch_sizes"], "max batch sizes")

    def clean_threads(self):
        return _int_list(self.cleaned_data["threads"] or "", "threads") or [None]

    def clean_search(self):
        return self.cleaned_data["search"] or "quick"

    def params(self):
        return {
            key: self.cleaned_data[key]
            for key in ("concurrency", "batch_sizes", "threads", "seconds", "p99_budget_ms", "search")
        }
