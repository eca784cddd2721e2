import tempfile
from pathlib import Path

from common.errors import BerthError
from registry.models import ModelVersion

from . import params as p
from .base import JobKind, artifact_path, require_target, scaled


class ConvertKind(JobKind):
    """TorchScript or torch.export → ONNX (dynamic batch, parity-checked) as a child version."""

    runs_on_target = True
    time_limits = (1800, 1900)

    def clean_params(self, params, *, version, target):
        require_target(target, "convert")
        if version.format == ModelVersion.Format.ONNX:
            raise BerthError(f"Version {version.ref} is already ONNX.", field="version")
        if version.status != ModelVersion.Status.READY:
            raise BerthError(f"Version {version.ref} is {version.status}; convert a ready version.", field="version")
        inputs = version.io_signature.get("inputs") or []
        if not inputs or any(spec.get("shape") is None for spec in inputs):
            raise BerthError(
                f"The input shapes of {version.ref} are unknown (a scripted TorchScript module records none). "
                'Register it with metadata {"input_shapes": {"<input>": [1, ...]}} and convert that version.',
                field="version",
            )
        p.only_known(params, {"opset", "dynamic_batch", "output_version"}, "convert")
        return {
            "opset": p.integer(params, "opset", 18, low=17, high=21),
            "dynamic_batch": p.boolean(params, "dynamic_batch", True),
            "output_version": p.version_name(params),
        }

    def run(self, job, report):
        from registry import services as registry_services

        from .. import services as job_services
        from ..engine.export import export_to_onnx
        from ..engine.validate import inspect_model

        version, params = job.version, job.params
        with artifact_path(version) as src, tempfile.TemporaryDirectory(prefix="berth-convert-") as tmp:
            result = export_to_onnx(
                src,
                version.format,
                Path(tmp) / "model.onnx",
                inputs=version.io_signature["inputs"],
                opset=params["opset"],
                dynamic_batch=params["dynamic_batch"],
                progress=scaled(report, 5, 75),
            )
            report(80, "Validating the ONNX model")
            inspection = inspect_model(result.output_path, "onnx", progress=scaled(report, 80, 90))
            recipe = {
                **result.recipe,
                "method": "convert",
                "from_format": version.format,
                "parity_max_abs_diff": result.parity_max_abs_diff,
                "job": job.id,
            }
            child = registry_services.version_create_derived(
                parent=version,
                path=result.output_path,
                recipe=recipe,
                io_signature=inspection.io_signature,
                name=params["output_version"] or f"{version.version}-onnx",
                auto_suffix=params["output_version"] is None,
                created_by=job.created_by,
                detail=" ".join(
                    [
                        f"Converted by job {job.id}; parity max abs diff {result.parity_max_abs_diff:.2e}.",
                        inspection.summary(),
                    ]
                ),
            )
        job_services.job_set_output(job=job, version=child)
        report(100, f"Created {child.ref}")
        return {
            "output_version": child.ref,
            "size_bytes": child.size_bytes,
            "opset": result.opset,
            "parity_max_abs_diff": result.parity_max_abs_diff,
            "notes": result.notes,
        }
