"""Every compression method, declared once. Plain Python: no Django, no engines imported.

A method is a name, the engine function that does the work (``module:function``, called as
``function(src, dst, progress=..., **arguments)``), its parameters (type, default, limits, help)
and what the child version records. From this one table come the compress job's parameter
checks (jobs/kinds/compress.py), the version page's form (jobs/forms.py), the CLI's choices
(berth/cli.py), the API schema of a compress job's params and the README's table
(``python -m berth.compression`` prints it; a test checks the README holds it).

Adding a method is its engine module plus one ``Method`` entry below.
"""

from dataclasses import dataclass, field

OP_TYPES = ("MatMul", "Gemm", "Conv", "Attention", "Gather", "Add", "Mul", "Relu", "MaxPool", "AveragePool")
STUDENTS = ("mlp", "cnn")  # the shapes jobs/engine/distill.py builds
BUDGET_KEYS = ("max_accuracy_drop", "min_cosine", "min_cosine_worst", "max_abs_diff", "max_relative_error")
# Parameters every method takes besides its own.
COMMON = ("method", "output_version", "then_benchmark")


@dataclass(frozen=True)
class FormField:
    """How a parameter whose API shape is not a plain value appears on the version page: a number
    field whose value becomes the parameter through ``to_param``."""

    name: str
    label: str
    default: float
    low: float
    high: float
    to_param: object  # callable(value) -> the parameter's value


@dataclass(frozen=True)
class Param:
    """One parameter of a method.

    kind: "bool", "int", "float", "choice" (one of ``choices``), "names" (a non-empty list of
    ``choices``, or null for all), "dataset" (a dataset of the model: ``dataset_kind`` is the
    kind whose newest one is the default, ``required`` whether there must be one) or "object"
    (an object whose keys are among ``choices`` and whose values are numbers).
    ``arg`` is the engine's keyword for it (default: the same name); a dataset reaches the engine
    as its arrays. ``form`` False leaves it off the version page (the API and CLI still take it)."""

    name: str
    kind: str
    default: object = None
    help: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    dataset_kind: str = ""
    required: bool = False
    arg: str = ""
    form: bool = True
    form_field: FormField | None = None
    # datasets: checked before queueing to hold the version's inputs with their shapes (and labels)
    fits_inputs: bool = False
    needs_labels: bool = False

    @property
    def engine_arg(self):
        return self.arg or self.name

    def describe(self):
        """The parameter and its default in words, for the README and the API schema."""
        if self.kind == "dataset":
            default = f"the model's newest {self.dataset_kind} set" + ("" if self.required else ", if any")
        elif self.kind == "names":
            default = "all" if self.default is None else ", ".join(self.default)
        elif self.kind == "object":
            default = "{" + ", ".join(f'"{k}": {v}' for k, v in self.default.items()) + "}"
        else:
            default = str(self.default).lower() if isinstance(self.default, bool) else str(self.default)
        return f"`{self.name}` ({default})"


@dataclass(frozen=True)
class Method:
    name: str
    label: str  # on the version page
    engine: str  # "module:function"
    summary: str  # one line: what it does
    records: str  # what the child version's recipe records besides the engine's parameters
    suffix: str  # the child's default name is <parent version>-<suffix>; {param} and {param_percent} fill in
    params: tuple = field(default_factory=tuple)
    # The engine measures speed, so it takes provider= and provider_options= of the job's target (a GPU
    # target's candidates are timed on the GPU: int8 that is faster on a CPU can be slower there).
    measures_on_target: bool = False
    takes_device: bool = False  # the engine gets device="cuda" on a GPU target (training), else "cpu"
    # "module:function"(params, io_signature) -> (param name, message) or None: checks that need
    # the version's inputs and outputs, run before queueing
    check: str = ""

    def param(self, name):
        return next(p for p in self.params if p.name == name)

    def child_suffix(self, params):
        values = {p.name: params.get(p.name, p.default) for p in self.params}
        values.update({f"{p.name}_percent": round(values[p.name] * 100) for p in self.params if p.kind == "float"})
        return self.suffix.format(**values)


def _int8_params():
    return (
        Param("weight_type", "choice", "qint8", "int8 type of the weights", choices=("qint8", "quint8"), form=False),
        Param("per_channel", "bool", True, "one scale per output channel (int8)"),
        Param("reduce_range", "bool", False, "7-bit weights, for x86 CPUs without VNNI (int8)"),
        Param("op_types", "names", None, "operator types to quantize (null: all)", choices=OP_TYPES, form=False),
    )


def _training_params(epochs_name, epochs, help_epochs, *, needs_labels):
    return (
        Param(epochs_name, "int", epochs, help_epochs, low=0 if epochs_name == "finetune_epochs" else 1, high=500),
        Param("learning_rate", "float", 0.001, "Adam's learning rate", low=1e-6, high=1.0),
        Param("batch_size", "int", 64, "training batch size", low=1, high=4096, form=False),
        Param(
            "training_dataset",
            "dataset",
            None,
            "training inputs" + (" and labels" if needs_labels else " (labels optional)"),
            dataset_kind="training",
            required=True,
            arg="training",
            form=False,
            fits_inputs=True,
            needs_labels=needs_labels,
        ),
        Param(
            "evaluation_dataset",
            "dataset",
            None,
            "inputs and labels the accuracy is measured on",
            dataset_kind="evaluation",
            arg="evaluation",
            form=False,
            fits_inputs=True,
        ),
    )


METHODS = (
    Method(
        "static_int8",
        "int8 static (calibrated, QDQ)",
        "jobs.engine.quantize:quantize_static",
        "weights and activations to int8 in QDQ format, activation ranges calibrated on data",
        "the calibration method, samples and batch size, pre-processing, tool versions",
        "int8-static",
        (
            *_int8_params(),
            Param(
                "calibration_method",
                "choice",
                "minmax",
                "how activation ranges are found",
                choices=("minmax", "entropy", "percentile"),
                arg="method",
            ),
            Param(
                "activation_type",
                "choice",
                "quint8",
                "int8 type of the activations",
                choices=("quint8", "qint8"),
                form=False,
            ),
            Param("max_samples", "int", 128, "calibration samples used at most", low=1, high=100_000, form=False),
            Param(
                "calibration_dataset",
                "dataset",
                None,
                "calibration inputs",
                dataset_kind="calibration",
                required=True,
                arg="calibration",
                form=False,
            ),
        ),
    ),
    Method(
        "dynamic_int8",
        "int8 dynamic",
        "jobs.engine.quantize:quantize_dynamic",
        "weights to int8 ahead of time, activations quantized at run time; needs no data",
        "pre-processing, tool versions",
        "int8-dynamic",
        _int8_params(),
    ),
    Method(
        "int4_weights",
        "int4 weight-only (MatMul)",
        "jobs.engine.int4:quantize_int4_weights",
        "MatMul and dense-layer weights stored as 4-bit blocks, dequantized on the fly; activations stay float32, no data needed",
        "the block size, symmetry, how many MatMuls were quantized, tool versions",
        "int4-b{block_size}",
        (
            Param("block_size", "int", 32, "rows per quantization block: 16, 32, 64 or 128", low=16, high=128),
            Param("symmetric", "bool", True, "blocks without a zero point", form=False),
        ),
        check="jobs.engine.int4:check_params",
    ),
    Method(
        "fp16",
        "fp16",
        "jobs.engine.quantize:convert_fp16",
        "float32 weights and computation to float16",
        "the converter's options, tool versions",
        "fp16",
        (Param("keep_io_types", "bool", True, "inputs and outputs stay float32", form=False),),
    ),
    Method(
        "optimize",
        "graph optimization (onnxruntime)",
        "jobs.engine.quantize:optimize_graph",
        "onnxruntime's graph optimizations applied once and saved",
        "the level, tool versions",
        "optimized",
        (
            Param(
                "level",
                "choice",
                "extended",
                "onnxruntime optimization level",
                choices=("basic", "extended", "all"),
                form=False,
            ),
        ),
    ),
    Method(
        "prune",
        "magnitude pruning",
        "jobs.engine.prune:prune_magnitude",
        "the smallest weights set to zero, no fine-tuning; the file stays dense, only its compressed size shrinks",
        "the threshold and the tensors pruned",
        "pruned{sparsity_percent}",
        (Param("sparsity", "float", 0.5, "share of weights set to zero", low=0.01, high=0.99),),
    ),
    Method(
        "prune_structured",
        "structured pruning + fine-tuning (torch)",
        "jobs.engine.structured:prune_structured",
        "whole channels and neurons removed (torch-pruning), then fine-tuned on labelled data: a smaller, faster "
        "dense model",
        "channels per layer before and after, the fine-tuning schedule and loss curve, accuracy before pruning, "
        "after pruning and after fine-tuning",
        "pruned{channel_sparsity_percent}ch",
        (
            Param(
                "channel_sparsity",
                "float",
                0.5,
                "share of each hidden layer's channels removed",
                low=0.05,
                high=0.95,
                arg="sparsity",
            ),
            *_training_params("finetune_epochs", 5, "fine-tuning epochs after pruning", needs_labels=True),
        ),
        takes_device=True,
        check="jobs.engine.structured:check_model",
    ),
    Method(
        "distill",
        "knowledge distillation into a small student",
        "jobs.engine.distill:distill",
        "a small student (a declared shape) trained on this version's soft targets (KL at temperature T) and "
        "the labels (weight alpha)",
        "the student's shape and size, T, alpha, epochs, learning rate, the loss curve, teacher and student "
        "accuracy and agreement",
        "distilled-{student}{student_width}",
        (
            Param("student", "choice", "mlp", "the student's shape", choices=STUDENTS),
            Param(
                "student_width", "int", 32, "the student's hidden units (mlp) or first channels (cnn)", low=2, high=1024
            ),
            Param("temperature", "float", 4.0, "softmax temperature of the soft targets", low=0.5, high=50.0),
            Param(
                "alpha",
                "float",
                0.5,
                "weight of the labels' cross-entropy (the rest is the teacher's)",
                low=0.0,
                high=1.0,
            ),
            *_training_params("epochs", 20, "training epochs", needs_labels=False),
        ),
        takes_device=True,
        check="jobs.engine.distill:check_teacher",
    ),
    Method(
        "autotune",
        "int8 autotune (within an accuracy budget)",
        "jobs.engine.autotune:autotune_onnx",
        "a grid of int8 settings tried, the best within the budget kept",
        "every trial (settings, size, latency, quality) and the one chosen",
        "int8-autotuned",
        (
            Param(
                "budget",
                "object",
                {"max_accuracy_drop": 0.005},
                'limits on quality: {"max_accuracy_drop": 0.005} (fraction points) or {"min_cosine": 0.99}',
                choices=BUDGET_KEYS,
                form_field=FormField(
                    "max_accuracy_drop",
                    "max accuracy drop",
                    0.5,
                    0,
                    100,
                    lambda drop: {"max_accuracy_drop": drop / 100},
                ),
            ),
            Param(
                "objective", "choice", "size", "what the best trial minimizes", choices=("size", "latency"), form=False
            ),
            Param(
                "evaluation_dataset",
                "dataset",
                None,
                "inputs (and labels) every trial is measured on",
                dataset_kind="evaluation",
                required=True,
                arg="evaluation",
                form=False,
            ),
            Param(
                "calibration_dataset",
                "dataset",
                None,
                "calibration inputs for static trials",
                dataset_kind="calibration",
                arg="calibration",
                form=False,
            ),
        ),
        measures_on_target=True,
    ),
)

BY_NAME = {method.name: method for method in METHODS}
NAMES = tuple(BY_NAME)


def readme_table():
    """The README's table of compression methods (Markdown)."""
    lines = ["| method | does | params (defaults) | the child's recipe records |", "|---|---|---|---|"]
    for method in METHODS:
        params = ", ".join(param.describe() for param in method.params) or "none"
        lines.append(f"| `{method.name}` | {method.summary} | {params} | {method.records} |")
    return "\n".join(lines) + "\n"


def json_schema(method):
    """The JSON schema of one method's params (for the API schema)."""
    types = {
        "bool": {"type": "boolean"},
        "int": {"type": "integer"},
        "float": {"type": "number"},
        "dataset": {"type": "string"},
    }
    properties = {
        "method": {"type": "string", "enum": [method.name]},
        "output_version": {"type": "string", "description": "name of the child version"},
        "then_benchmark": {"type": "object", "description": "benchmark params for the child"},
    }
    for param in method.params:
        schema = dict(types.get(param.kind, {}))
        if param.kind == "choice":
            schema = {"type": "string", "enum": list(param.choices)}
        elif param.kind == "names":
            schema = {"type": "array", "items": {"type": "string", "enum": list(param.choices)}, "nullable": True}
        elif param.kind == "object":
            schema = {
                "type": "object",
                "properties": {key: {"type": "number"} for key in param.choices},
                "additionalProperties": False,
            }
        if param.low is not None:
            schema.update(minimum=param.low, maximum=param.high)
        if param.default is not None:
            schema["default"] = param.default
        schema["description"] = param.help
        properties[param.name] = schema
    return {
        "type": "object",
        "title": f"compress: {method.name}",
        "description": method.summary,
        "properties": properties,
        "required": ["method"],
        "additionalProperties": False,
    }


if __name__ == "__main__":
    print(readme_table(), end="")
