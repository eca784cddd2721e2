"""Registry reads that need more than a one-line query."""

from collections import namedtuple

from django.db.models import Count, Prefetch, Q

from dashboard.errors import NotFound
from jobs.models import BenchmarkResult, Job

from .models import GATED_ALIASES, Alias, HardwareTarget, Model, ModelVersion, PromotionGate, Upload


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
    from dashboard.access import OTHERS, permits

    uploads = Upload.objects.all() if permits(user, "upload", OTHERS) else Upload.objects.filter(created_by=user)
    try:
        upload = uploads.filter(pk=upload_id).first()
    except (ValueError, TypeError):
        upload = None
    if upload is None:
        raise NotFound("There is no such upload (or it belongs to someone else).")
    return upload


# --- promotion gates and the alias log -------------------------------------------------------

NO_BENCHMARK = "no benchmark"
NO_ACCURACY = "no accuracy delta"
FailingGates = namedtuple("FailingGates", "model version results")


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


def gate_results(version, *, gates=None):
    """Each gate of the version's model evaluated on the version's benchmarks (two queries):
    a list of dicts with gate, kind, description, passed, measured (ms or fraction, or
    "no benchmark"), reason, job (the benchmark job measured), stable (p95 gates)."""
    gates = model_gates(version.model) if gates is None else gates
    if not gates:
        return []
    rows = _benchmark_rows([version.pk]).get(version.pk, [])
    return [_evaluate(gate, version, rows) for gate in gates]


def failing_gates():
    """[(model, version, failing results)] for every model whose gated alias (production)
    points at a version that fails one of the model's gates now. Three queries."""
    gates_by_model = {}
    for gate in PromotionGate.objects.select_related("target").order_by("kind", "id"):
        gates_by_model.setdefault(gate.model_id, []).append(gate)
    if not gates_by_model:
        return []
    aliases = list(Alias.objects.filter(model_id__in=gates_by_model, name__in=GATED_ALIASES)
                   .select_related("model", "version__model").order_by("model__name", "name"))
    rows = _benchmark_rows([alias.version_id for alias in aliases])
    failing = []
    for alias in aliases:
        results = [_evaluate(gate, alias.version, rows.get(alias.version_id, []))
                   for gate in gates_by_model[alias.model_id]]
        failed = [result for result in results if not result["passed"]]
        if failed:
            failing.append(FailingGates(alias.model, alias.version, failed))
    return failing


def _benchmark_rows(version_ids):
    """{version id: benchmark rows as dicts, newest job first} with only what gates read."""
    rows = (BenchmarkResult.objects.filter(version_id__in=version_ids)
            .order_by("-job_id", "batch_size", "threads", "id")
            .values("version_id", "target_id", "target__slug", "job_id", "batch_size", "threads", "p95_ms",
                    "accuracy_delta", "stable"))
    by_version = {}
    for row in rows:
        by_version.setdefault(row["version_id"], []).append(row)
    return by_version


def _evaluate(gate, version, rows):
    result = {"gate": gate.pk, "kind": gate.kind, "description": gate.description, "threshold": gate.threshold,
              "target": gate.target.slug if gate.target_id else None,
              "batch_size": gate.batch_size if gate.kind == PromotionGate.Kind.MAX_P95_MS else None,
              "passed": False, "measured": NO_BENCHMARK, "reason": "", "job": None, "measured_on": None,
              "stable": None}
    if gate.kind == PromotionGate.Kind.MAX_P95_MS:
        return _evaluate_p95(gate, version, rows, result)
    return _evaluate_accuracy(gate, version, rows, result)


def _evaluate_p95(gate, version, rows, result):
    matching = [r for r in rows if r["target_id"] == gate.target_id and r["batch_size"] == gate.batch_size]
    if not matching:
        result["reason"] = (f"no benchmark of {version.version} on {gate.target.slug} at batch {gate.batch_size}; "
                            "run one first")
        return result
    # The newest job that measured this batch size; of its thread counts, the runtime's
    # default (what serving uses), else the fastest.
    newest = [r for r in matching if r["job_id"] == matching[0]["job_id"]]
    row = next((r for r in newest if r["threads"] is None), None) or min(newest, key=lambda r: r["p95_ms"])
    threads = f" with {row['threads']} threads" if row["threads"] is not None else ""
    passed = row["p95_ms"] <= gate.threshold
    result.update(passed=passed, measured=row["p95_ms"], job=row["job_id"], stable=row["stable"],
                  measured_on=gate.target.slug)
    comparison = "within" if passed else "exceeds"
    result["reason"] = (f"p95 {_ms(row['p95_ms'])} ms on {gate.target.slug} at batch {gate.batch_size}{threads} "
                        f"{comparison} {gate.threshold:g} ms (benchmark job #{row['job_id']})")
    if not row["stable"]:
        result["reason"] += "; the measurement was unstable, benchmark again for a reliable figure"
    return result


def _evaluate_accuracy(gate, version, rows, result):
    if version.parent_id is None:
        result.update(passed=True, measured=0.0)
        result["reason"] = f"{version.version} is an original (no parent): it has no accuracy to lose against one"
        return result
    known = [r for r in rows if r["accuracy_delta"] is not None
             and (gate.target_id is None or r["target_id"] == gate.target_id)]
    if not known:
        where = f" on {gate.target.slug}" if gate.target_id else ""
        measured = "" if rows else " and no benchmark at all"
        result["measured"] = NO_ACCURACY if rows else NO_BENCHMARK
        result["reason"] = (f"no accuracy delta of {version.version} against its parent{where}{measured}: it is "
                            "measured by a benchmark on a labelled evaluation set; run one first")
        return result
    row = known[0]
    delta = row["accuracy_delta"]
    passed = delta >= -gate.threshold
    result.update(passed=passed, measured=delta, job=row["job_id"], measured_on=row["target__slug"])
    comparison = "within" if passed else "exceeds"
    result["reason"] = (f"accuracy {delta * 100:+.2f} pt against the parent on {row['target__slug']} "
                        f"{comparison} the allowed drop of {gate.threshold * 100:.2f} pt "
                        f"(benchmark job #{row['job_id']})")
    return result


def _ms(value):
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"
