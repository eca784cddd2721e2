import importlib
import tempfile
from pathlib import Path

from berth.compression import BY_NAME, COMMON, NAMES

from . import params as p
from .base import (
    JobKind,
    artifact_path,
    load_dataset,
    require_ready_onnx,
    require_target,
    scaled,
    worker_provider_options,
)


class CompressKind(JobKind):
    """A ready ONNX version compressed into a child version with its recipe, by one of the
    methods declared in berth.compression (int8, fp16, graph optimization, pruning, ...)."""

    runs_on_target = True
    time_limits = (3600, 3700)

    def clean_params(self, params, *, version, target):
        require_target(target, "compress")
        require_ready_onnx(version, "compressed")
        method = BY_NAME[p.choice(params, "method", None, list(NAMES))]
        p.only_known(params, {param.name for param in method.params} | set(COMMON), f"method {method.name}")
        cleaned = {"method": method.name, "output_version": p.version_name(params)}
        for param in method.params:
            cleaned[param.name] = clean_param(params, param, model=version.model, method=method)
            if param.kind == "dataset" and param.fits_inputs and cleaned[param.name]:
                p.dataset_fits(
                    param.name,
                    cleaned[param.name],
                    model=version.model,
                    version=version,
                    needs_labels=param.needs_labels,
                )
        if method.check:
            problem = _engine_function(method.check)(cleaned, version.io_signature)
            if problem:
                p.fail(*problem)
        if "then_benchmark" in params:
            from .benchmark import clean_measurement

            follow = params["then_benchmark"]
            if not isinstance(follow, dict):
                p.fail(
                    "then_benchmark",
                    'then_benchmark must be an object of benchmark parameters, e.g. {"batch_sizes": [1, 32]}.',
                )
            cleaned["then_benchmark"] = clean_measurement(follow, target=target)
        return cleaned

    def run(self, job, report):
        from registry import services as registry_services

        from .. import services as job_services
        from ..engine.validate import inspect_model

        version, params = job.version, job.params
        method = params["method"]
        with artifact_path(version) as src, tempfile.TemporaryDirectory(prefix="berth-compress-") as tmp:
            output, recipe, summary = self._compress(
                method, src, Path(tmp), params, version.model, scaled(report, 3, 80), target=job.target, version=version
            )
            report(82, "Validating the compressed model")
            inspection = inspect_model(output, "onnx", progress=scaled(report, 82, 90))
            recipe = {**recipe, "engine": recipe.get("method"), "method": method, "job": job.id}
            datasets = dataset_records(version.model, BY_NAME[method], params)
            if datasets:
                recipe["datasets"] = datasets
            suffix = BY_NAME[method].child_suffix(params)
            child = registry_services.version_create_derived(
                parent=version,
                path=output,
                recipe=recipe,
                io_signature=inspection.io_signature,
                name=params["output_version"] or f"{version.version}-{suffix}",
                auto_suffix=params["output_version"] is None,
                created_by=job.created_by,
                detail=" ".join([f"Made by job {job.id} ({method})."] + summary.get("notes", [])[:3]),
            )
        job_services.job_set_output(job=job, version=child)
        summary.update(
            output_version=child.ref,
            size_bytes=child.size_bytes,
            size_ratio=round(child.size_bytes / version.size_bytes, 4),
        )
        if params.get("then_benchmark") is not None:
            follow = job_services.job_create(
                kind="benchmark",
                version=child,
                target=job.target,
                params=params["then_benchmark"],
                created_by=job.created_by,
            )
            summary["benchmark_job"] = follow.id
            report(99, f"Queued benchmark job {follow.id} for {child.ref}")
        report(100, f"Created {child.ref} ({summary['size_ratio']:.2f}× the size of {version.version})")
        return summary

    def _compress(self, method, src, tmp, params, model, progress, target=None, version=None):
        """Run the method's engine; returns (output path, engine recipe, result summary)."""
        declared = BY_NAME[method]
        engine = _engine_function(declared.engine)
        arguments = {}
        for param in declared.params:
            value = params.get(param.name, param.default)
            if param.kind == "dataset":
                value = load_dataset(model, value) if value else None
            arguments[param.engine_arg] = value
        if declared.measures_on_target and target is not None:
            arguments.update(
                provider=target.execution_provider, provider_options=worker_provider_options(target, version, src)
            )
        if declared.takes_device:
            arguments["device"] = "cuda" if target is not None and target.device == "cuda" else "cpu"
        result = engine(src, tmp / "model.onnx", progress=progress, **arguments)
        return result.output_path, result.recipe, {"notes": result.notes, **getattr(result, "summary", {})}


def _engine_function(path):
    module, _, function = path.partition(":")
    return getattr(importlib.import_module(module), function)


def dataset_records(model, method, params):
    """{parameter: {"name", "sha256", "rows"}} of the datasets a method used: the child's recipe says
    exactly what it was made from."""
    from registry.models import Dataset

    names = {param.name: params.get(param.name) for param in method.params if param.kind == "dataset"}
    found = {d.name: d for d in Dataset.objects.filter(model=model, name__in=[n for n in names.values() if n])}
    return {
        key: {"name": name, "sha256": found[name].sha256, "rows": found[name].rows}
        for key, name in names.items()
        if name in found
    }


def clean_param(params, param, *, model, method):
    """One declared parameter checked (a 400 naming it when wrong) and completed with its default."""
    if param.kind == "bool":
        return p.boolean(params, param.name, param.default)
    if param.kind == "int":
        return p.integer(params, param.name, param.default, low=param.low, high=param.high)
    if param.kind == "float":
        return p.number(params, param.name, param.default, low=param.low, high=param.high)
    if param.kind == "choice":
        return p.choice(params, param.name, param.default, list(param.choices))
    if param.kind == "names":
        return p.string_list(params, param.name, param.default, list(param.choices))
    if param.kind == "dataset":
        return p.dataset(
            params,
            param.name,
            model=model,
            kind=param.dataset_kind,
            required=param.required,
            why=f"{method.label} needs {param.help}.",
        )
    if param.kind == "object":
        value = params.get(param.name, param.default)
        example = ", ".join(f'{{"{key}": ...}}' for key in param.choices[:2])
        if not isinstance(value, dict) or not value or not set(value) <= set(param.choices):
            p.fail(
                param.name,
                f"{param.name} is an object with some of {', '.join(sorted(param.choices))}, "
                f"e.g. {example}: {param.help}.",
            )
        for key, item in value.items():
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                p.fail(param.name, f"{param.name}.{key} must be a number.")
        return value
    raise ValueError(f"Unknown parameter kind {param.kind!r} in berth.compression")
