import tempfile
from pathlib import Path

from dashboard.errors import BerthError

from . import params as p
from .base import JobKind, artifact_path, load_dataset, require_ready_onnx, require_target, scaled

# method → (its own parameters, the suffix of the child version's default name)
METHODS = {
    "dynamic_int8": ({"weight_type", "per_channel", "reduce_range", "op_types"}, "int8-dynamic"),
    "static_int8": ({"calibration_method", "calibration_dataset", "per_channel", "reduce_range", "activation_type",
                     "weight_type", "op_types", "max_samples"}, "int8-static"),
    "fp16": ({"keep_io_types"}, "fp16"),
    "optimize": ({"level"}, "optimized"),
    "prune": ({"sparsity"}, "pruned"),
    "autotune": ({"budget", "objective", "calibration_dataset", "evaluation_dataset"}, "int8-autotuned"),
}
COMMON = {"method", "output_version", "then_benchmark"}
OP_TYPES = ["MatMul", "Gemm", "Conv", "Attention", "Gather", "Add", "Mul", "Relu", "MaxPool", "AveragePool"]
BUDGET_KEYS = {"max_accuracy_drop", "min_cosine", "min_cosine_worst", "max_abs_diff"}


class CompressKind(JobKind):
    """int8 (dynamic, static QDQ, autotuned), fp16, graph optimization or magnitude pruning of a
    ready ONNX version into a child version with its recipe."""

    runs_on_target = True
    time_limits = (3600, 3700)

    def clean_params(self, params, *, version, target):
        require_target(target, "compress")
        require_ready_onnx(version, "compressed")
        method = p.choice(params, "method", None, list(METHODS))
        own, _ = METHODS[method]
        p.only_known(params, own | COMMON, f"method {method}")
        cleaned = {"method": method, "output_version": p.version_name(params)}
        model = version.model
        if method == "dynamic_int8":
            cleaned.update(self._int8(params))
        elif method == "static_int8":
            cleaned.update(self._int8(params))
            cleaned.update(
                calibration_method=p.choice(params, "calibration_method", "minmax", ["minmax", "entropy", "percentile"]),
                activation_type=p.choice(params, "activation_type", "quint8", ["quint8", "qint8"]),
                max_samples=p.integer(params, "max_samples", 128, low=1, high=100_000),
                calibration_dataset=p.dataset(params, "calibration_dataset", model=model, kind="calibration",
                                              required=True, why="Static int8 calibrates activation ranges on data."),
            )
        elif method == "fp16":
            cleaned["keep_io_types"] = p.boolean(params, "keep_io_types", True)
        elif method == "optimize":
            cleaned["level"] = p.choice(params, "level", "extended", ["basic", "extended", "all"])
        elif method == "prune":
            cleaned["sparsity"] = p.number(params, "sparsity", 0.5, low=0.01, high=0.99)
        elif method == "autotune":
            cleaned.update(self._autotune(params, model))
        if "then_benchmark" in params:
            from .benchmark import clean_measurement

            follow = params["then_benchmark"]
            if not isinstance(follow, dict):
                p.fail("then_benchmark", "then_benchmark must be an object of benchmark parameters, e.g. "
                                         '{"batch_sizes": [1, 32]}.')
            cleaned["then_benchmark"] = clean_measurement(follow)
        return cleaned

    @staticmethod
    def _int8(params):
        return {
            "weight_type": p.choice(params, "weight_type", "qint8", ["qint8", "quint8"]),
            "per_channel": p.boolean(params, "per_channel", True),
            "reduce_range": p.boolean(params, "reduce_range", False),
            "op_types": p.string_list(params, "op_types", None, OP_TYPES),
        }

    @staticmethod
    def _autotune(params, model):
        budget = params.get("budget", {"max_accuracy_drop": 0.005})
        if not isinstance(budget, dict) or not budget or not set(budget) <= BUDGET_KEYS:
            p.fail("budget", f"budget is an object with some of {', '.join(sorted(BUDGET_KEYS))}, e.g. "
                             '{"max_accuracy_drop": 0.005} (fraction points) or {"min_cosine": 0.99}.')
        for key, value in budget.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                p.fail("budget", f"budget.{key} must be a number.")
        evaluation = p.dataset(params, "evaluation_dataset", model=model, kind="evaluation", required=True,
                               why="Autotune measures every trial's accuracy or fidelity on an evaluation set.")
        return {
            "budget": budget,
            "objective": p.choice(params, "objective", "size", ["size", "latency"]),
            "evaluation_dataset": evaluation,
            "calibration_dataset": p.dataset(params, "calibration_dataset", model=model, kind="calibration",
                                             required=False),
        }

    def run(self, job, report):
        from registry import services as registry_services

        from .. import services as job_services
        from ..engine.validate import inspect_model

        version, params = job.version, job.params
        method = params["method"]
        with artifact_path(version) as src, tempfile.TemporaryDirectory(prefix="berth-compress-") as tmp:
            output, recipe, summary = self._compress(method, src, Path(tmp), params, version.model,
                                                     scaled(report, 3, 80))
            report(82, "Validating the compressed model")
            inspection = inspect_model(output, "onnx", progress=scaled(report, 82, 90))
            recipe = {**recipe, "engine": recipe.get("method"), "method": method, "job": job.id}
            _, suffix = METHODS[method]
            if method == "prune":
                suffix = f"pruned{round(params['sparsity'] * 100)}"
            child = registry_services.version_create_derived(
                parent=version, path=output, recipe=recipe, io_signature=inspection.io_signature,
                name=params["output_version"] or f"{version.version}-{suffix}",
                auto_suffix=params["output_version"] is None, created_by=job.created_by,
                detail=" ".join([f"Made by job {job.id} ({method})."] + summary.get("notes", [])[:3]),
            )
        job_services.job_set_output(job=job, version=child)
        summary.update(output_version=child.ref, size_bytes=child.size_bytes,
                       size_ratio=round(child.size_bytes / version.size_bytes, 4))
        if params.get("then_benchmark") is not None:
            follow = job_services.job_create(kind="benchmark", version=child, target=job.target,
                                             params=params["then_benchmark"], created_by=job.created_by)
            summary["benchmark_job"] = follow.id
            report(99, f"Queued benchmark job {follow.id} for {child.ref}")
        report(100, f"Created {child.ref} ({summary['size_ratio']:.2f}× the size of {version.version})")
        return summary

    def _compress(self, method, src, tmp, params, model, progress):
        """Run the engine; returns (output path, engine recipe, result summary)."""
        from ..engine import autotune, prune, quantize

        dst = tmp / "model.onnx"
        int8 = {key: params[key] for key in ("weight_type", "per_channel", "reduce_range", "op_types") if key in params}
        if method == "dynamic_int8":
            result = quantize.quantize_dynamic(src, dst, progress=progress, **int8)
        elif method == "static_int8":
            result = quantize.quantize_static(
                src, dst, calibration=load_dataset(model, params["calibration_dataset"]),
                method=params["calibration_method"], activation_type=params["activation_type"],
                max_samples=params["max_samples"], progress=progress, **int8)
        elif method == "fp16":
            result = quantize.convert_fp16(src, dst, keep_io_types=params["keep_io_types"], progress=progress)
        elif method == "optimize":
            result = quantize.optimize_graph(src, dst, level=params["level"], progress=progress)
        elif method == "prune":
            result = prune.prune_magnitude(src, dst, sparsity=params["sparsity"], progress=progress)
            return result.output_path, result.recipe, {
                "notes": result.notes, "sparsity": result.sparsity, "tensors_pruned": result.tensors_pruned,
                "compressed_size_bytes": result.compressed_size_bytes}
        else:
            calibration = load_dataset(model, params["calibration_dataset"]) if params["calibration_dataset"] else None
            tuned = autotune.autotune(src, tmp / "trials", calibration=calibration,
                                      evaluation=load_dataset(model, params["evaluation_dataset"]),
                                      budget=params["budget"], objective=params["objective"], progress=progress)
            trials = [_trial_summary(t) for t in tuned.trials]
            if tuned.best is None:
                raise BerthError(f"{tuned.reason} Trials: " + "; ".join(
                    f"#{t['number']} {t['settings']}: {t['outcome']}" for t in trials))
            recipe = {**tuned.best.recipe, "autotune": {"budget": params["budget"], "objective": params["objective"],
                                                         "chosen_trial": tuned.best.number, "trials": trials}}
            return tuned.best.output_path, recipe, {"notes": [tuned.reason], "trials": trials, "source": tuned.source}
        return result.output_path, result.recipe, {"notes": result.notes}


def _trial_summary(trial):
    if trial.error:
        outcome = f"failed: {trial.error}"
    else:
        quality = (f"accuracy drop {trial.accuracy_drop * 100:.2f} pt" if trial.accuracy_drop is not None
                   else f"cosine min {trial.cosine_min:.4f}" if trial.cosine_min is not None else "no quality figure")
        outcome = (f"{trial.size_bytes:,} bytes, p50 {trial.p50_ms:.3f} ms, {quality}, "
                   f"{'within' if trial.within_budget else 'outside'} budget")
    return {"number": trial.number, "settings": trial.describe(), "params": trial.params, "size_bytes": trial.size_bytes,
            "p50_ms": trial.p50_ms, "accuracy": trial.accuracy, "accuracy_drop": trial.accuracy_drop,
            "cosine_mean": trial.cosine_mean, "cosine_min": trial.cosine_min, "max_abs_diff": trial.max_abs_diff,
            "within_budget": trial.within_budget, "error": trial.error, "outcome": outcome}
