from common.errors import BerthError

from . import params as p
from .base import JobKind, artifact_path, load_dataset, require_ready_onnx, scaled


class ProfileKind(JobKind):
    """The reference profile of a version (feature bin edges and counts for drift), from the
    model's reference dataset."""

    time_limits = (900, 960)

    def clean_params(self, params, *, version, target):
        require_ready_onnx(version, "profiled")
        p.only_known(params, {"reference_dataset"}, "profile")
        return {
            "reference_dataset": p.dataset(
                params,
                "reference_dataset",
                model=version.model,
                kind="reference",
                required=True,
                why="A drift profile is built from reference data.",
            )
        }

    def run(self, job, report):
        from registry import services as registry_services
        from registry.models import Dataset

        from ..engine.profile import build_profile

        version = job.version
        dataset = Dataset.objects.get(model=version.model, name=job.params["reference_dataset"])
        arrays = load_dataset(version.model, dataset.name)
        with artifact_path(version) as path:
            features = build_profile(
                path, inputs=version.io_signature["inputs"], dataset=arrays, progress=scaled(report, 5, 95)
            )
        if not features:
            raise BerthError("The reference dataset gave no feature to profile.")
        registry_services.profile_store(version=version, dataset=dataset, features=features)
        report(100, f"Profiled {len(features)} features on {dataset.rows} rows of {dataset.name}")
        return {"features": [f.name for f in features], "dataset": dataset.name, "rows": dataset.rows}
