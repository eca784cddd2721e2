from common.errors import BerthError

from .base import JobKind


class ValidateKind(JobKind):
    """Load the version safely, read its signature, run one inference: ready or invalid."""

    time_limits = (300, 360)

    def clean_params(self, params, *, version, target):
        if params:
            raise BerthError("A validate job takes no parameters.", field="params")
        return {}

    def before_create(self, *, version):
        from registry import services as registry_services

        registry_services.version_mark_validating(version=version)

    def run(self, job, report):
        from registry import services as registry_services
        from registry import storage

        from ..engine.validate import ModelInvalid, inspect_model

        version = job.version
        report(5, "Checking the stored file's sha256")
        try:
            with storage.local_copy(version.artifact.name, sha256=version.sha256) as path:
                inspection = inspect_model(
                    path, version.format, input_shapes=version.metadata.get("input_shapes"), progress=report
                )
        except ModelInvalid as exc:
            raise BerthError(str(exc)) from exc
        registry_services.version_mark_ready(
            version=version, io_signature=inspection.io_signature, detail=inspection.summary()
        )
        return {
            "io_signature": inspection.io_signature,
            "inference_ms": inspection.inference_ms,
            "notes": inspection.notes,
        }

    def on_failure(self, job, error):
        from registry import services as registry_services

        registry_services.version_mark_invalid(version=job.version, reason=error)
