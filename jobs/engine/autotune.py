"""Try a small grid of int8 quantization settings and keep the best variant within a budget.
Plain Python: no Django.

Each trial is quantized, evaluated against the source model (accuracy drop when the evaluation
set has labels, output fidelity otherwise) and timed with a short loop at batch 1. Timing here is
only to rank trials; the benchmark engine measures targets properly. Accuracy drops are fractions
(0.005 = half a point), sizes bytes, latencies milliseconds.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import EngineError
from .evaluate import check_feeds, compare_outputs, model_input_specs, run_model
from .output import CompressionResult
from .progress import no_progress
from .quantize import prepare_for_quantization, quantize_dynamic, quantize_static

OBJECTIVES = ("size", "latency")
# Budget key -> (Trial attribute, True when a larger value is better).
BUDGET_KEYS = {
    "max_accuracy_drop": ("accuracy_drop", False),
    "min_cosine": ("cosine_mean", True),  # mean over the evaluation samples
    "min_cosine_worst": ("cosine_min", True),  # every sample
    "max_abs_diff": ("max_abs_diff", False),
    "max_relative_error": ("max_relative_error", False),  # max |difference| over max |source output|
}
DYNAMIC_KEYS = {"mode", "weight_type", "per_channel", "reduce_range", "op_types"}
STATIC_KEYS = DYNAMIC_KEYS | {"method", "activation_type", "max_samples"}
MATMUL_OPS = ["MatMul", "Gemm"]


@dataclass
class Trial:
    number: int
    params: dict
    output_path: str | None = None
    size_bytes: int | None = None
    accuracy: float | None = None
    accuracy_drop: float | None = None  # source accuracy minus this trial's
    cosine_mean: float | None = None
    cosine_min: float | None = None
    max_abs_diff: float | None = None
    max_relative_error: float | None = None
    agreement: float | None = None
    p50_ms: float | None = None  # batch 1
    within_budget: bool = False
    error: str | None = None
    recipe: dict | None = None

    def describe(self):
        return describe_params(self.params)


@dataclass
class AutotuneResult:
    best: Trial | None
    trials: list
    reason: str
    source: dict = field(default_factory=dict)  # size_bytes, p50_ms, accuracy of the source model


def autotune(
    src,
    workdir,
    *,
    calibration,
    evaluation,
    budget,
    objective="size",
    grid=None,
    latency_runs=50,
    provider="CPUExecutionProvider",
    provider_options=None,
    progress=no_progress,
):
    """Quantize ``src`` with each setting of ``grid`` (a list of dicts: "mode" "static" or
    "dynamic" plus quantize_static / quantize_dynamic parameters; None for a default grid of at most
    8 chosen from the model's operators) into ``workdir``, and return the best trial within
    ``budget`` by ``objective`` ("size": smallest file, ties to the faster; "latency": fastest p50).

    ``budget`` keys: max_accuracy_drop (needs "labels" in ``evaluation``), min_cosine (mean
    cosine to the source's outputs), min_cosine_worst (every sample), max_abs_diff. A trial that
    fails is recorded with its error. Latency is measured on ``provider`` (the job's target), since
    int8 that is faster on a CPU can be slower on a GPU.
    """
    import onnx

    if not Path(src).is_file():
        raise EngineError(f"Model file not found: {src}")
    if objective not in OBJECTIVES:
        raise EngineError(f"Unknown objective {objective!r}: use 'size' or 'latency'.")
    budget = _checked_budget(budget, evaluation)
    if grid is not None:
        grid = _checked_grid(grid)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    progress(2, "Pre-processing the model for quantization")
    prepared = workdir / "prepared.onnx"
    pre_process = prepare_for_quantization(src, prepared)
    if grid is None:
        present = {node.op_type for node in onnx.load(str(prepared), load_external_data=False).graph.node}
        grid = default_grid(present, has_calibration=bool(calibration))
        if not grid:
            raise EngineError("The model has no MatMul, Gemm or Conv operator to quantize.")

    progress(5, "Running the source model on the evaluation set")
    labels = evaluation.get("labels")
    reference, _ = run_model(src, evaluation)
    source_eval = compare_outputs(reference, labels=labels)
    if "max_accuracy_drop" in budget and source_eval.accuracy is None:
        raise EngineError(
            "max_accuracy_drop needs labels that fit the model's output as class scores; "
            "use min_cosine / max_abs_diff for this model."
        )
    latency_feeds = _batch_of_one(src, evaluation)
    source = {
        "size_bytes": Path(src).stat().st_size,
        "accuracy": source_eval.accuracy,
        "p50_ms": p50_ms(src, latency_feeds, runs=latency_runs, provider=provider, provider_options=provider_options),
    }

    trials = []
    for number, params in enumerate(grid, start=1):
        progress(10 + int(85 * (number - 1) / len(grid)), f"Trial {number} of {len(grid)}: {describe_params(params)}")
        trials.append(
            _run_trial(
                number,
                params,
                prepared,
                workdir,
                pre_process,
                calibration,
                evaluation,
                reference,
                labels,
                latency_feeds,
                latency_runs,
                budget,
                (provider, provider_options),
            )
        )

    best = _pick(trials, objective)
    progress(100, "Done")
    return AutotuneResult(
        best=best, trials=trials, reason=_reason(best, trials, budget, objective, source), source=source
    )


def autotune_onnx(
    src,
    dst,
    *,
    calibration,
    evaluation,
    budget,
    objective="size",
    provider="CPUExecutionProvider",
    provider_options=None,
    progress=no_progress,
):
    """``autotune`` as a compression method: trials in a folder beside ``dst``; the best one's
    file, recipe (with every trial) and notes, or an EngineError listing the trials when none is
    within the budget."""
    tuned = autotune(
        src,
        Path(dst).parent / "trials",
        calibration=calibration,
        evaluation=evaluation,
        budget=budget,
        objective=objective,
        provider=provider,
        provider_options=provider_options,
        progress=progress,
    )
    trials = [trial_summary(t) for t in tuned.trials]
    if tuned.best is None:
        raise EngineError(
            f"{tuned.reason} Trials: " + "; ".join(f"#{t['number']} {t['settings']}: {t['outcome']}" for t in trials)
        )
    recipe = {
        **tuned.best.recipe,
        "autotune": {"budget": budget, "objective": objective, "chosen_trial": tuned.best.number, "trials": trials},
    }
    return CompressionResult(
        output_path=tuned.best.output_path,
        size_bytes=tuned.best.size_bytes,
        recipe=recipe,
        notes=[tuned.reason],
        summary={"trials": trials, "source": tuned.source},
    )


def trial_summary(trial):
    """A trial as the job's result and the recipe list it."""
    if trial.error:
        outcome = f"failed: {trial.error}"
    else:
        quality = (
            f"accuracy drop {trial.accuracy_drop * 100:.2f} pt"
            if trial.accuracy_drop is not None
            else f"cosine min {trial.cosine_min:.4f}"
            if trial.cosine_min is not None
            else "no quality figure"
        )
        outcome = (
            f"{trial.size_bytes:,} bytes, p50 {trial.p50_ms:.3f} ms, {quality}, "
            f"{'within' if trial.within_budget else 'outside'} budget"
        )
    return {
        "number": trial.number,
        "settings": trial.describe(),
        "params": trial.params,
        "size_bytes": trial.size_bytes,
        "p50_ms": trial.p50_ms,
        "accuracy": trial.accuracy,
        "accuracy_drop": trial.accuracy_drop,
        "cosine_mean": trial.cosine_mean,
        "cosine_min": trial.cosine_min,
        "max_abs_diff": trial.max_abs_diff,
        "max_relative_error": trial.max_relative_error,
        "within_budget": trial.within_budget,
        "error": trial.error,
        "outcome": outcome,
    }


def default_grid(present, *, has_calibration=True):
    """At most 8 settings for a model whose operator types are ``present``: static QDQ around a
    per-channel uint8/int8 base (static on every operator type often hurts transformers, hence the
    MatMul/Gemm-only variant), then dynamic; with convolutions, Conv-only and without dynamic
    ConvInteger (often slow on CPU)."""
    has_conv, has_matmul = "Conv" in present, bool(set(MATMUL_OPS) & set(present))
    if not (has_conv or has_matmul):
        return []
    static = {
        "mode": "static",
        "method": "minmax",
        "per_channel": True,
        "reduce_range": False,
        "activation_type": "quint8",
        "weight_type": "qint8",
        "op_types": None,
    }
    dynamic = {"mode": "dynamic", "weight_type": "qint8", "per_channel": True, "reduce_range": False, "op_types": None}
    grid = [
        static,
        {**static, "per_channel": False},
        {**static, "reduce_range": True},
        {**static, "weight_type": "quint8"},
    ]
    if has_conv and has_matmul:
        grid += [
            {**static, "op_types": MATMUL_OPS},
            {**static, "op_types": ["Conv"]},
            dynamic,
            {**dynamic, "op_types": MATMUL_OPS},
        ]
    elif has_matmul:
        grid += [
            {**static, "op_types": MATMUL_OPS},
            dynamic,
            {**dynamic, "weight_type": "quint8"},
            {**dynamic, "per_channel": False},
        ]
    else:
        grid += [
            dynamic,
            {**dynamic, "weight_type": "quint8"},
            {**dynamic, "per_channel": False},
            {**dynamic, "reduce_range": True},
        ]
    return [params for params in grid if has_calibration or params["mode"] == "dynamic"]


def describe_params(params):
    parts = [params["mode"]]
    if params["mode"] == "static":
        parts.append(params.get("method", "minmax"))
    parts.append("per-channel" if params.get("per_channel", True) else "per-tensor")
    if params.get("reduce_range"):
        parts.append("reduce_range")
    parts.append(f"weights {params.get('weight_type', 'qint8')}")
    if params["mode"] == "static" and params.get("activation_type", "quint8") != "quint8":
        parts.append(f"activations {params['activation_type']}")
    if params.get("op_types"):
        parts.append("only " + "/".join(params["op_types"]))
    return ", ".join(parts)


def p50_ms(model_path, feeds, *, runs=50, warmup=10, provider="CPUExecutionProvider", provider_options=None):
    """Median wall time of ``session.run`` on ``provider`` in milliseconds over ``runs`` calls after ``warmup``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=[(provider, dict(provider_options or {}))])
    if session.get_providers()[0] != provider:
        raise EngineError(
            f"onnxruntime fell back from {provider} to {session.get_providers()[0]}: latency on "
            "the target cannot be measured on this host."
        )
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        session.run(None, feeds)
        times.append(time.perf_counter_ns() - started)
    return float(np.median(times)) / 1e6


def _run_trial(
    number,
    params,
    prepared,
    workdir,
    pre_process,
    calibration,
    evaluation,
    reference,
    labels,
    latency_feeds,
    latency_runs,
    budget,
    on=("CPUExecutionProvider", None),
):
    trial = Trial(number=number, params=dict(params))
    settings = {key: value for key, value in params.items() if key != "mode"}
    path = workdir / f"trial-{number:02d}-{params['mode']}.onnx"
    try:
        if params["mode"] == "static":
            result = quantize_static(prepared, path, calibration=calibration, pre_processed=True, **settings)
        else:
            result = quantize_dynamic(prepared, path, pre_processed=True, **settings)
        trial.output_path, trial.size_bytes = result.output_path, result.size_bytes
        trial.recipe = {**result.recipe, "pre_process": pre_process}
        outputs, _ = run_model(path, evaluation)
        measured = compare_outputs(outputs, reference=reference, labels=labels)
        trial.accuracy = measured.accuracy
        if measured.accuracy_delta is not None:
            trial.accuracy_drop = -measured.accuracy_delta
        trial.cosine_mean, trial.cosine_min = measured.cosine_mean, measured.cosine_min
        trial.max_abs_diff, trial.agreement = measured.max_abs_diff, measured.agreement
        trial.max_relative_error = measured.max_relative_error
        trial.p50_ms = p50_ms(path, latency_feeds, runs=latency_runs, provider=on[0], provider_options=on[1])
    except Exception as exc:  # a failing setting is a result, not the end of the search
        trial.error = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
        return trial
    trial.within_budget = all(_meets(trial, key, limit) for key, limit in budget.items())
    return trial


def _meets(trial, key, limit):
    attribute, larger_is_better = BUDGET_KEYS[key]
    value = getattr(trial, attribute)
    if value is None or np.isnan(value):
        return False
    return value >= limit if larger_is_better else value <= limit + 1e-12


def _pick(trials, objective):
    qualified = [t for t in trials if t.within_budget]
    if not qualified:
        return None
    if objective == "size":
        return min(qualified, key=lambda t: (t.size_bytes, t.p50_ms))
    return min(qualified, key=lambda t: (t.p50_ms, t.size_bytes))


def _reason(best, trials, budget, objective, source):
    budget_text = ", ".join(f"{key}={value:g}" for key, value in budget.items())
    failed = [t for t in trials if t.error]
    failed_text = f" {len(failed)} trial(s) failed with an error." if failed else ""
    if best is not None:
        within = sum(t.within_budget for t in trials)
        speed = best.p50_ms / source["p50_ms"] if source["p50_ms"] else float("nan")
        return (
            f"Trial {best.number} ({best.describe()}) is the {'smallest' if objective == 'size' else 'fastest'} "
            f"of {within} of {len(trials)} trials within the budget ({budget_text}): {best.size_bytes:,} bytes "
            f"({best.size_bytes / source['size_bytes']:.2f}x the source), {_quality(best)}, p50 at batch 1 "
            f"{best.p50_ms:.3f} ms ({speed:.2f}x the source's {source['p50_ms']:.3f} ms"
            f"{', slower on this machine' if speed > 1.05 else ''}).{failed_text}"
        )
    ran = [t for t in trials if not t.error]
    if not ran:
        return f"None of the {len(trials)} trials could be made.{failed_text} See each trial's error."
    key = next(iter(budget))
    attribute, larger_is_better = BUDGET_KEYS[key]
    measured = [t for t in ran if getattr(t, attribute) is not None] or ran
    closest = (max if larger_is_better else min)(measured, key=lambda t: getattr(t, attribute) or 0.0)
    return (
        f"None of the {len(trials)} trials is within the budget ({budget_text}). Closest on {key}: trial "
        f"{closest.number} ({closest.describe()}) with {_quality(closest)}.{failed_text} Loosen the budget, "
        "calibrate on more representative data, or keep the source model."
    )


def _quality(trial):
    parts = []
    if trial.accuracy_drop is not None:
        parts.append(f"accuracy drop {trial.accuracy_drop * 100 + 0.0:.2f} pt")  # + 0.0: no "-0.00"
    if trial.cosine_min is not None:
        parts.append(f"cosine min {trial.cosine_min:.4f} / mean {trial.cosine_mean:.4f}")
    if trial.max_abs_diff is not None:
        parts.append(f"max abs diff {trial.max_abs_diff:.3g}")
    if trial.max_relative_error is not None:
        parts.append(f"max relative error {trial.max_relative_error * 100:.3g} %")
    return ", ".join(parts)


def _checked_budget(budget, evaluation):
    if not isinstance(evaluation, dict) or not evaluation:
        raise EngineError("The evaluation set must be a dict of arrays, one per model input, plus optional 'labels'.")
    if not isinstance(budget, dict) or not budget:
        raise EngineError(
            f"Give a budget with at least one of {', '.join(BUDGET_KEYS)}, e.g. {{'max_accuracy_drop': 0.005}}."
        )
    unknown = sorted(set(budget) - set(BUDGET_KEYS))
    if unknown:
        raise EngineError(f"Unknown budget key(s) {', '.join(unknown)}: use {', '.join(BUDGET_KEYS)}.")
    for key, value in budget.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EngineError(f"Budget {key} must be a number, not {value!r}.")
    if "max_accuracy_drop" in budget and "labels" not in evaluation:
        raise EngineError(
            "max_accuracy_drop needs 'labels' in the evaluation set; without labels use "
            "min_cosine / max_abs_diff (fidelity to the source model)."
        )
    return {key: float(value) for key, value in budget.items()}


def _checked_grid(grid):
    if not isinstance(grid, (list, tuple)) or not grid:
        raise EngineError("grid must be a non-empty list of settings, e.g. [{'mode': 'dynamic', 'per_channel': True}].")
    checked = []
    for params in grid:
        if not isinstance(params, dict) or params.get("mode") not in ("static", "dynamic"):
            raise EngineError(f"Each grid entry needs 'mode': 'static' or 'dynamic'; got {params!r}.")
        allowed = STATIC_KEYS if params["mode"] == "static" else DYNAMIC_KEYS
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise EngineError(
                f"Unknown {params['mode']} setting(s) {', '.join(unknown)}: use "
                f"{', '.join(sorted(allowed - {'mode'}))}."
            )
        checked.append(dict(params))
    return checked


def _batch_of_one(model_path, evaluation):
    specs = model_input_specs(model_path)
    arrays = check_feeds(specs, evaluation, what="evaluation data")
    first = specs[0]["shape"][0] if specs[0]["shape"] else None
    rows = first if isinstance(first, int) else 1
    return {name: array[:rows] for name, array in arrays.items()}
