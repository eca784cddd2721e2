"""Models, versions (registration, derived variants, validation results), datasets and hardware
targets."""

from django.conf import settings
from django.db import IntegrityError, transaction

from berth.core.sniff import SniffError, read_npz_arrays, sniff_model_file
from common import audit
from common.errors import BerthError, Conflict, InvalidModelFile, NotFound

from .. import storage, uploads
from ..signals import validation_requested
from ..models import Dataset, HardwareTarget, Model, ModelVersion
from . import promotion
from .base import full_clean

VALIDATION_WAITING = "Waiting for the validate job."


# --- models ----------------------------------------------------------------------------------


def model_create(*, name, description="", task=Model.Task.OTHER, owner=None):
    if Model.objects.filter(name=name).exists():
        raise Conflict(f"A model named {name!r} already exists.", field="name")
    model = Model(name=name, description=description, task=task, owner=owner)
    full_clean(model, exclude=["owner"])
    try:
        with transaction.atomic():
            model.save()
    except IntegrityError as exc:
        raise Conflict(f"A model named {name!r} already exists.", field="name") from exc
    return model


# --- versions --------------------------------------------------------------------------------


def version_register(
    *,
    model_name,
    version,
    artifact,
    created_by,
    metadata=None,
    tags=None,
    parent=None,
    alias=None,
    create_model=False,
    task=None,
    description="",
    recipe=None,
    io_signature=None,
    status_detail="",
):
    """Register ``artifact`` (an uploads.IncomingArtifact) as ``model_name:version``.

    Returns ``(ModelVersion, created)``. Registering the same version with the same bytes
    again returns the existing version (created=False); other bytes raise Conflict (409).
    The format is sniffed from the content: pickles, unknown and corrupt files raise
    InvalidModelFile (422). Validation is requested (registry.signals: the jobs app queues the
    validate job in this transaction), unless
    the caller already validated the file and gives its ``io_signature`` (jobs that derive
    versions do): then the version is ready at once. ``parent`` is a ModelVersion or a
    version string (``model:version`` for another model).
    """
    model = Model.objects.filter(name=model_name).first()
    if model is None and not create_model:
        raise NotFound(
            f"There is no model named {model_name!r}. Create it first (POST /api/v1/models/) "
            "or register with create_model=true.",
            field="model",
        )
    if model is not None:
        existing = model.versions.filter(version=version).first()
        if existing is not None:
            return _existing_or_conflict(existing, artifact.sha256), False
    try:
        sniffed = sniff_model_file(artifact.path, parse_max_bytes=settings.BERTH_INTAKE_PARSE_MAX_BYTES)
    except SniffError as exc:
        raise InvalidModelFile(str(exc), field="artifact") from exc
    parent_version = (
        parent if isinstance(parent, ModelVersion) else (_resolve_parent(model, parent) if parent else None)
    )

    try:
        with transaction.atomic():
            if model is None:
                model = model_create(
                    name=model_name, description=description, task=task or Model.Task.OTHER, owner=created_by
                )
            name = storage.new_name("artifacts", model.name, sniffed.format)
            mv = ModelVersion(
                model=model,
                version=version,
                parent=parent_version,
                format=sniffed.format,
                artifact=name,
                sha256=artifact.sha256,
                size_bytes=artifact.size,
                metadata=metadata or {},
                tags=list(tags or []),
                created_by=created_by,
                recipe=recipe or {},
                io_signature=io_signature or {},
                status=ModelVersion.Status.VALIDATING if io_signature is None else ModelVersion.Status.READY,
                status_detail=status_detail or (VALIDATION_WAITING if io_signature is None else ""),
            )
            full_clean(mv, exclude=["artifact", "parent", "created_by", "recipe", "io_signature"])
            mv.save()
            audit.record(
                audit.Action.REGISTER,
                mv.ref,
                user=created_by,
                details={
                    "sha256": mv.sha256,
                    "size_bytes": mv.size_bytes,
                    "format": mv.format,
                    "parent": parent_version.ref if parent_version else None,
                    "recipe": recipe or {},
                },
            )
            if alias:
                promotion.alias_set(model=model, name=alias, version=mv, user=created_by)
            if io_signature is None:
                validation_requested.send(sender=ModelVersion, version=mv, user=created_by)
            # Last step, so that a failed insert leaves the incoming file where it was.
            stored_name = storage.store(artifact, name)
            if stored_name != name:
                ModelVersion.objects.filter(pk=mv.pk).update(artifact=stored_name)
                mv.artifact.name = stored_name
    except IntegrityError:
        existing = ModelVersion.objects.filter(model__name=model_name, version=version).first()
        if existing is None:
            raise
        return _existing_or_conflict(existing, artifact.sha256), False
    return mv, True


def version_create_derived(*, parent, path, recipe, io_signature, name, created_by, auto_suffix=True, detail=""):
    """Register a file a job made from ``parent`` (a compressed or converted variant) as a ready
    child version with its ``recipe``. With ``auto_suffix`` a taken ``name`` becomes name-2,
    name-3, …; otherwise a taken name is a Conflict."""
    incoming = uploads.incoming_copy(path)
    try:
        for attempt in range(1, 100):
            candidate = name if attempt == 1 else f"{name}-{attempt}"
            if auto_suffix and parent.model.versions.filter(version=candidate).exists():
                continue
            try:
                version, _ = version_register(
                    model_name=parent.model.name,
                    version=candidate,
                    artifact=incoming,
                    created_by=created_by,
                    parent=parent,
                    recipe=recipe,
                    io_signature=io_signature,
                    status_detail=detail,
                    tags=["derived"],
                    metadata={"derived_from": parent.ref},
                )
            except Conflict:
                if not auto_suffix:
                    raise
                continue
            return version
        raise Conflict(f"Could not find a free version name starting with {name!r}.", field="params.output_version")
    finally:
        incoming.path.unlink(missing_ok=True)


def _existing_or_conflict(existing, sha256):
    if existing.sha256 == sha256:
        return existing
    from ..selectors import version_clash_message

    raise Conflict(version_clash_message(existing, sha256), field="version")


def _resolve_parent(model, parent):
    """``parent`` is a version string of the same model or ``model:version``."""
    model_name, _, version = parent.rpartition(":")
    if not model_name:
        if model is None:
            raise BerthError(
                "A new model has no versions to be a parent; give the parent as model:version.", field="parent"
            )
        model_name = model.name
    found = ModelVersion.objects.filter(model__name=model_name, version=version).first()
    if found is None:
        raise BerthError(f"Parent version {model_name}:{version} does not exist.", field="parent")
    return found


def version_mark_validating(*, version):
    """Back to validating (a new validate job was queued); a version registered without a
    signature is created in this state."""
    ModelVersion.objects.filter(pk=version.pk).exclude(
        status=ModelVersion.Status.VALIDATING, status_detail=VALIDATION_WAITING
    ).update(status=ModelVersion.Status.VALIDATING, status_detail=VALIDATION_WAITING)


def version_mark_ready(*, version, io_signature, detail=""):
    ModelVersion.objects.filter(pk=version.pk).update(
        status=ModelVersion.Status.READY, io_signature=io_signature, status_detail=detail
    )


def version_mark_invalid(*, version, reason, io_signature=None):
    fields = {"status": ModelVersion.Status.INVALID, "status_detail": reason}
    if io_signature is not None:
        fields["io_signature"] = io_signature
    ModelVersion.objects.filter(pk=version.pk).update(**fields)


# --- datasets --------------------------------------------------------------------------------


def dataset_attach(*, version, name, kind, incoming, created_by):
    """Attach an .npz dataset to the version's model. Its arrays are checked against the
    version's input signature (when known); ``labels`` is optional. Returns (dataset, created)."""
    if kind not in Dataset.Kind.values:
        raise BerthError(f"Unknown dataset kind {kind!r}; use one of {', '.join(Dataset.Kind.values)}.", field="kind")
    existing = Dataset.objects.filter(model=version.model, name=name).first()
    if existing is not None:
        if existing.sha256 == incoming.sha256 and existing.kind == kind:
            return existing, False
        raise Conflict(
            f"Model {version.model.name} already has a dataset named {name!r} with other content.", field="name"
        )
    try:
        arrays = read_npz_arrays(incoming.path)
    except SniffError as exc:
        raise BerthError(str(exc), field="file") from exc
    rows = _dataset_rows(arrays)
    _check_dataset_inputs(version, arrays)
    with transaction.atomic():
        file_name = storage.new_name("datasets", version.model.name, "npz")
        dataset = Dataset(
            model=version.model,
            version=version,
            name=name,
            kind=kind,
            file=file_name,
            sha256=incoming.sha256,
            size_bytes=incoming.size,
            rows=rows,
            arrays=arrays,
            created_by=created_by,
        )
        full_clean(dataset, exclude=["file", "version", "created_by"])
        dataset.save()
        stored = storage.store(incoming, file_name)
        if stored != file_name:
            Dataset.objects.filter(pk=dataset.pk).update(file=stored)
    return dataset, True


def _dataset_rows(arrays):
    lengths = {name: (spec["shape"][0] if spec["shape"] else None) for name, spec in arrays.items()}
    if None in lengths.values():
        scalar = next(n for n, v in lengths.items() if v is None)
        raise BerthError(f"Array {scalar!r} is a scalar; every array needs one row per example.", field="file")
    if len(set(lengths.values())) != 1:
        raise BerthError(
            f"Arrays have different numbers of rows: {lengths}. Every array needs one row per example.", field="file"
        )
    rows = next(iter(lengths.values()))
    if rows == 0:
        raise BerthError("The dataset has no rows.", field="file")
    return rows


def _check_dataset_inputs(version, arrays):
    inputs = [i["name"] for i in version.io_signature.get("inputs", [])]
    if not inputs:
        return
    missing = [name for name in inputs if name not in arrays]
    unknown = [name for name in arrays if name not in inputs and name != "labels"]
    if missing or unknown:
        raise BerthError(
            f"The dataset's arrays must be named after the model's inputs ({', '.join(inputs)}) plus an optional "
            f"'labels'. Missing: {', '.join(missing) or 'none'}; unexpected: {', '.join(unknown) or 'none'}.",
            field="file",
        )


# --- hardware targets ------------------------------------------------------------------------


def target_create(
    *,
    slug,
    name="",
    device=HardwareTarget.Device.CPU,
    execution_provider="",
    provider_options=None,
    description="",
    active=True,
    preset="",
):
    """A hardware target; ``preset`` (registry.presets) fills device, provider and options."""
    from ..presets import PRESETS, preset_target

    if HardwareTarget.objects.filter(slug=slug).exists():
        raise Conflict(f"A hardware target {slug!r} already exists.", field="slug")
    if preset:
        if preset not in PRESETS:
            raise BerthError(f"Unknown preset {preset!r}; use one of {', '.join(PRESETS)}.", field="preset")
        if not isinstance(provider_options or {}, dict):
            raise BerthError("provider_options must be a JSON object.", field="provider_options")
        device, execution_provider, provider_options = preset_target(preset, provider_options)
    if device not in HardwareTarget.PROVIDERS_BY_DEVICE:
        raise BerthError(f"Unknown device {device!r}; use cpu or cuda.", field="device")
    allowed = HardwareTarget.PROVIDERS_BY_DEVICE[device]
    execution_provider = execution_provider or allowed[0]
    if execution_provider not in allowed:
        raise BerthError(
            f"{execution_provider} cannot run on a {device} target; use one of {', '.join(allowed)}.",
            field="execution_provider",
        )
    if not isinstance(provider_options or {}, dict):
        raise BerthError("provider_options must be a JSON object.", field="provider_options")
    target = HardwareTarget(
        slug=slug,
        name=name or slug,
        device=device,
        execution_provider=execution_provider,
        provider_options=provider_options or {},
        description=description,
        active=active,
    )
    full_clean(target)
    with transaction.atomic():
        target.save()
    return target


# --- reference profiles ----------------------------------------------------------------------


def profile_store(*, version, dataset, features):
    """Replace the version's reference profile with ``features`` (engine FeatureProfiles)."""
    from ..models import ReferenceProfile

    with transaction.atomic():
        ReferenceProfile.objects.filter(version=version).delete()
        ReferenceProfile.objects.bulk_create(
            [
                ReferenceProfile(
                    version=version,
                    dataset=dataset,
                    name=f.name,
                    kind=f.kind,
                    tensor=f.tensor,
                    column=f.column,
                    classes=f.classes,
                    edges=f.edges,
                    counts=f.counts,
                )
                for f in features
            ]
        )
