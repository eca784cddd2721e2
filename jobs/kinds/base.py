"""What every kind of job has: parameter checks before queueing, the work, and what to undo
when it fails. Kinds run inside jobs.services.job_run, which owns the job's state."""

import contextlib

import numpy as np

from common.errors import BerthError
from registry.models import ModelVersion


class JobKind:
    # Whether the job runs on its target's queue (target.<slug>) rather than "default".
    runs_on_target = False
    # Seconds: (soft, hard). The soft limit raises inside the job so it fails cleanly.
    time_limits = (3600, 3900)

    def clean_params(self, params, *, version, target):
        """Check and complete ``params``; raise BerthError (field ``params.<key>``) if wrong."""
        return params

    def before_create(self, *, version):
        pass

    def run(self, job, report):
        """Do the work; return the job's result (a JSON object)."""
        raise NotImplementedError

    def on_failure(self, job, error):
        pass


def require_target(target, kind):
    if target is None:
        raise BerthError(f"A {kind} job runs on a hardware target: give target (e.g. cpu).", field="target")
    if not target.active:
        raise BerthError(f"Hardware target {target.slug} is inactive.", field="target")
    if not target.provider_usable:
        raise BerthError(
            f"Hardware target {target.slug} has no usable execution provider "
            f"({target.execution_provider or 'none'} on {target.device}); fix it in the admin.",
            field="target",
        )


def require_ready_onnx(version, what):
    if version.status != ModelVersion.Status.READY:
        raise BerthError(
            f"Version {version.ref} is {version.status}; only ready versions can be {what}.", field="version"
        )
    if version.format != ModelVersion.Format.ONNX:
        raise BerthError(
            f"Version {version.ref} is {version.get_format_display()}; {what} needs ONNX. "
            "Convert it first (a convert job).",
            field="version",
        )


def scaled(report, start, end):
    """A progress callback mapping an engine's 0-100 onto ``start``-``end`` of the job's."""

    def progress(percent, message="", partial=None):
        report(start + (end - start) * max(0, min(100, percent)) / 100, message, partial)

    return progress


@contextlib.contextmanager
def artifact_path(version):
    """A local path to the version's artifact, its sha256 checked first."""
    from registry import storage

    with storage.local_copy(version.artifact.name, sha256=version.sha256, suffix=".onnx") as path:
        yield path


def load_dataset(model, name):
    """A dataset's arrays ({name: array}), sha256-checked, never unpickled."""
    from registry import storage
    from registry.models import Dataset

    dataset = Dataset.objects.get(model=model, name=name)
    with storage.local_copy(dataset.file.name, sha256=dataset.sha256, suffix=".npz") as path:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}


def onnx_reference(version):
    """The nearest ready ONNX ancestor: what a variant's accuracy is compared with."""
    node = version.parent
    seen = set()
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        if node.format == ModelVersion.Format.ONNX and node.status == ModelVersion.Status.READY:
            return node
        node = node.parent
    return None


def require_usable_provider(target):
    """Refuse a job for a provider that every live worker on the target's queue proved unusable at start
    (onnxruntime lists providers whose libraries are missing), naming each worker's reason. With no live
    worker the job is accepted and waits for one, as any job does."""
    from ..selectors import live_workers

    if target is None:
        return
    provider = target.execution_provider
    workers = [w for w in live_workers() if target.queue in w.queues]
    if not workers or any(provider in w.providers for w in workers):
        return
    reasons = "; ".join(f"{w.hostname}: {w.provider_problems.get(provider, 'not installed')}" for w in workers)
    raise BerthError(
        f"No live worker on {target.queue} can use {provider} ({reasons}). Install the provider's "
        "libraries on a worker and restart it, or pick another target.",
        field="target",
    )


def worker_provider_options(target, version, model_path):
    """``target``'s provider options completed on this worker for ``version``'s artifact at ``model_path``:
    TensorRT's engine cache folder and, in int8 mode, its calibration table from the model's newest calibration
    dataset (jobs.engine.gpu.runtime_provider_options). None when there are none."""
    from django.conf import settings

    from registry.models import Dataset

    from ..engine.errors import EngineError
    from ..engine.gpu import runtime_provider_options

    def calibration():
        newest = Dataset.objects.filter(model=version.model, kind="calibration").order_by("-created").first()
        if newest is None:
            raise EngineError(
                f"TensorRT int8 on {target.slug} needs a calibration table: attach a calibration "
                f"dataset to model {version.model.name}."
            )
        return load_dataset(version.model, newest.name)

    options = runtime_provider_options(
        target.execution_provider,
        target.provider_options,
        cache_dir=settings.BERTH_ENGINE_CACHE_DIR,
        artifact_sha256=version.sha256,
        model_path=model_path,
        calibration=calibration,
    )
    return options or None
