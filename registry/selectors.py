"""Registry reads that need more than a one-line query."""

from django.db.models import Count, Prefetch, Q

from dashboard.errors import NotFound
from jobs.models import Job

from .models import Alias, HardwareTarget, Model, ModelVersion, Upload


def model_list(*, query=""):
    models = Model.objects.select_related("owner").annotate(version_count=Count("versions")).prefetch_related(
        Prefetch("aliases", queryset=Alias.objects.select_related("version"))
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


def version_jobs(version, limit=20):
    return list(Job.objects.filter(version=version).select_related("target").order_by("-created")[:limit])


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
    from dashboard.access import is_admin

    uploads = Upload.objects.all() if is_admin(user) else Upload.objects.filter(created_by=user)
    try:
        upload = uploads.filter(pk=upload_id).first()
    except (ValueError, TypeError):
        upload = None
    if upload is None:
        raise NotFound("There is no such upload (or it belongs to someone else).")
    return upload
