"""Registry reads that need more than a one-line query."""

from django.db.models import Count, Prefetch, Q

from common.errors import NotFound

from .models import Alias, HardwareTarget, Model, ModelVersion, PromotionGate, Upload


def model_list(*, query=""):
    models = (
        Model.objects.select_related("owner")
        .annotate(version_count=Count("versions"))
        .prefetch_related(Prefetch("aliases", queryset=Alias.objects.select_related("version")))
    )
    if query:
        models = models.filter(Q(name__icontains=query) | Q(description__icontains=query))
    return models


def model_get(name):
    model = Model.objects.select_related("owner").filter(name=name).first()
    if model is None:
        raise NotFound(f"There is no model named {name!r}.")
    return model


def model_versions(model):
    """All versions of a model, with what the lineage tree and tables show."""
    return (
        model.versions.select_related("parent", "created_by")
        .prefetch_related(Prefetch("aliases", queryset=Alias.objects.only("name", "version_id")))
        .order_by("-created", "-id")
    )


def version_get(model_name, version):
    found = (
        ModelVersion.objects.select_related("model", "parent__model", "created_by")
        .filter(model__name=model_name, version=version)
        .first()
    )
    if found is None:
        raise NotFound(f"There is no version {version!r} of model {model_name!r}.")
    return found


def version_by_ref(ref, *, field="version"):
    """A version from ``<id>`` or ``<model>:<version>``."""
    ref = str(ref or "").strip()
    if ref.isdigit():
        found = ModelVersion.objects.select_related("model").filter(pk=int(ref)).first()
    elif ":" in ref:
        model_name, _, version = ref.partition(":")
        found = ModelVersion.objects.select_related("model").filter(model__name=model_name, version=version).first()
    else:
        raise NotFound(f"Give the version as <model>:<version> or its numeric id, not {ref!r}.", field=field)
    if found is None:
        raise NotFound(f"There is no version {ref!r}.", field=field)
    return found


def version_lineage(version):
    """(ancestors from the root down, children) of a version."""
    ancestors = []
    node = version.parent
    seen = set()
    while node is not None and node.pk not in seen:
        seen.add(node.pk)
        ancestors.append(node)
        node = node.parent
    children = list(version.children.select_related("model").order_by("created"))
    return list(reversed(ancestors)), children


def lineage_tree(versions):
    """Versions as a forest: [(version, [(child, [...]), ...]), ...], roots newest first."""
    by_parent = {}
    ids = {v.pk for v in versions}
    for v in versions:
        parent = v.parent_id if v.parent_id in ids else None
        by_parent.setdefault(parent, []).append(v)

    def build(parent_id):
        return [(v, build(v.pk)) for v in by_parent.get(parent_id, [])]

    return build(None)


def target_get(slug, *, field="target"):
    target = HardwareTarget.objects.filter(slug=slug).first()
    if target is None:
        raise NotFound(f"There is no hardware target {slug!r}.", field=field)
    return target


def upload_get(upload_id, *, user):
    """An upload of this user (admins see all); NotFound otherwise, so ids reveal nothing."""
    from common.access import OTHERS, permits

    uploads = Upload.objects.all() if permits(user, "upload", OTHERS) else Upload.objects.filter(created_by=user)
    try:
        upload = uploads.filter(pk=upload_id).first()
    except (ValueError, TypeError):
        upload = None
    if upload is None:
        raise NotFound("There is no such upload (or it belongs to someone else).")
    return upload


# --- promotion gates and the alias log -------------------------------------------------------
# Gates are judged on benchmark results, which jobs owns: jobs.gates evaluates them.


def model_gates(model):
    return list(model.gates.select_related("target", "created_by").order_by("kind", "id"))


def gate_get(model, gate_id):
    gate = PromotionGate.objects.select_related("target").filter(model=model, pk=gate_id).first()
    if gate is None:
        raise NotFound(f"Model {model.name} has no promotion gate {gate_id}.")
    return gate


def alias_events(model, *, alias=""):
    """The model's alias log, newest first."""
    events = model.alias_events.select_related("user", "from_version__model", "to_version__model")
    return events.filter(alias=alias) if alias else events


def registration_check(*, model, version, sha256="", create_model=True):
    """Would registering ``model``:``version`` (with bytes of ``sha256``, when the caller knows it)
    go through? What the upload page asks before sending a large file: ``{"ok", "field",
    "message", "existing_url"}``; the registration itself decides again."""
    found = Model.objects.filter(name=model).first()
    if found is None:
        if create_model:
            return {"ok": True, "field": None, "message": f"A new model {model} will be created.", "existing_url": None}
        return {
            "ok": False,
            "field": "model",
            "existing_url": None,
            "message": f"There is no model named {model}: pick an existing one or let the upload create it.",
        }
    existing = found.versions.filter(version=version).first()
    if existing is None:
        return {"ok": True, "field": None, "message": f"{model}:{version} is free.", "existing_url": None}
    if sha256 and existing.sha256 == sha256.lower():
        return {
            "ok": True,
            "field": None,
            "existing_url": existing.get_absolute_url(),
            "message": f"{model}:{version} is already registered with these very bytes; nothing new will be stored.",
        }
    if sha256:
        message = version_clash_message(existing, sha256.lower())
    else:
        message = (
            f"Version {version} of {model} already exists (sha256 {existing.sha256[:12]}…). Versions are "
            "immutable: pick a new version string, unless this is that very file."
        )
    return {"ok": False, "field": "version", "message": message, "existing_url": existing.get_absolute_url()}


def version_clash_message(existing, sha256=""):
    """Why ``existing`` blocks registering other bytes (``sha256``, when known) under its name."""
    yours = f", yours {sha256[:12]}…" if sha256 else ""
    return (
        f"Version {existing.version} of {existing.model.name} already exists with different content "
        f"(sha256 {existing.sha256[:12]}…{yours}). Versions are immutable: register these bytes "
        "under a new version string."
    )
