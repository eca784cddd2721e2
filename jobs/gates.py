"""Promotion gates judged on benchmark results: what each gate of a model measures of a version,
and which production versions fail their gates now.

Gates and aliases are the registry's, but their evaluation reads benchmark results, so it lives
here, above the registry: the jobs app hands ``gate_results`` to the registry when it is ready
(jobs/apps.py), and ``registry.services.alias_set`` asks it before moving a gated alias. Quality
gates are judged by the one decision rule of the comparisons (jobs.engine.decision)."""

from collections import namedtuple

from registry.models import GATED_ALIASES, Alias, Model, PromotionGate
from registry.selectors import model_gates

from .engine.decision import Candidate, describe_set, quality_gate
from .engine.quality import MEASURES, binomial_half_width, read_quality
from .models import BenchmarkResult

NO_BENCHMARK = "no benchmark"
NO_ACCURACY = "no accuracy delta"
FailingGates = namedtuple("FailingGates", "model version results")


def gate_results(version, *, gates=None):
    """Each gate of the version's model evaluated on the version's benchmarks (two queries, a
    third with a quality gate): a list of dicts with gate, kind, description, passed, measured
    (ms, fraction or cosine, or "no benchmark"), reason, job (the benchmark job measured),
    stable (p95 gates), and for quality gates the reference and evaluation set."""
    gates = model_gates(version.model) if gates is None else gates
    if not gates:
        return []
    rows = _benchmark_rows([version.pk]).get(version.pk, [])
    quality = _quality_rows([version.model_id]) if _has_quality_gate(gates) else {}
    return [_evaluate(gate, version, rows, quality.get(version.model_id, [])) for gate in gates]


def failing_gates():
    """[(model, version, failing results)] for every model whose gated alias (production)
    points at a version that fails one of the model's gates now. Four queries."""
    gates_by_model = {}
    for gate in PromotionGate.objects.select_related("target", "model").order_by("kind", "id"):
        gates_by_model.setdefault(gate.model_id, []).append(gate)
    if not gates_by_model:
        return []
    aliases = list(
        Alias.objects.filter(model_id__in=gates_by_model, name__in=GATED_ALIASES)
        .select_related("model", "version__model")
        .order_by("model__name", "name")
    )
    rows = _benchmark_rows([alias.version_id for alias in aliases])
    quality = _quality_rows([alias.model_id for alias in aliases if _has_quality_gate(gates_by_model[alias.model_id])])
    failing = []
    for alias in aliases:
        results = [
            _evaluate(gate, alias.version, rows.get(alias.version_id, []), quality.get(alias.model_id, []))
            for gate in gates_by_model[alias.model_id]
        ]
        failed = [result for result in results if not result["passed"]]
        if failed:
            failing.append(FailingGates(alias.model, alias.version, failed))
    return failing


def _has_quality_gate(gates):
    return any(gate.kind in PromotionGate.QUALITY_KINDS for gate in gates)


def _benchmark_rows(version_ids):
    """{version id: benchmark rows as dicts, newest job first} with only what gates read."""
    rows = (
        BenchmarkResult.objects.filter(version_id__in=version_ids, scope=BenchmarkResult.Scope.SESSION_RUN)
        .order_by("-job_id", "batch_size", "threads", "id")
        .values(
            "version_id",
            "target_id",
            "target__slug",
            "job_id",
            "batch_size",
            "threads",
            "p95_ms",
            "accuracy_delta",
            "stable",
        )
    )
    by_version = {}
    for row in rows:
        by_version.setdefault(row["version_id"], []).append(row)
    return by_version


def _quality_rows(model_ids):
    """{model id: the quality every benchmark measured of its versions, newest job first}: one
    row per job (quality does not depend on the batch size)."""
    if not model_ids:
        return {}
    rows = (
        BenchmarkResult.objects.filter(version__model_id__in=model_ids, scope=BenchmarkResult.Scope.SESSION_RUN)
        .order_by("-job_id", "batch_size", "id")
        .values(
            "version_id",
            "version__version",
            "version__model__name",
            "version__model_id",
            "target_id",
            "target__slug",
            "job_id",
            "accuracy",
            "fidelity",
            "quality",
        )
    )
    by_model, seen = {}, set()
    for row in rows:
        if row["job_id"] not in seen:
            seen.add(row["job_id"])
            by_model.setdefault(row["version__model_id"], []).append(row)
    return by_model


def _evaluate(gate, version, rows, quality_rows=()):
    result = {
        "gate": gate.pk,
        "kind": gate.kind,
        "description": gate.description,
        "threshold": gate.threshold,
        "target": gate.target.slug if gate.target_id else None,
        "batch_size": gate.batch_size if gate.kind == PromotionGate.Kind.MAX_P95_MS else None,
        "passed": False,
        "measured": NO_BENCHMARK,
        "reason": "",
        "job": None,
        "measured_on": None,
        "stable": None,
    }
    if gate.kind == PromotionGate.Kind.MAX_P95_MS:
        return _evaluate_p95(gate, version, rows, result)
    return _evaluate_quality(gate, version, rows, quality_rows, result)


def _evaluate_p95(gate, version, rows, result):
    matching = [r for r in rows if r["target_id"] == gate.target_id and r["batch_size"] == gate.batch_size]
    if not matching:
        result["reason"] = (
            f"no benchmark of {version.version} on {gate.target.slug} at batch {gate.batch_size}; run one first"
        )
        return result
    # The newest job that measured this batch size; of its thread counts, the runtime's
    # default (what serving uses), else the fastest.
    newest = [r for r in matching if r["job_id"] == matching[0]["job_id"]]
    row = next((r for r in newest if r["threads"] is None), None) or min(newest, key=lambda r: r["p95_ms"])
    threads = f" with {row['threads']} threads" if row["threads"] is not None else ""
    passed = row["p95_ms"] <= gate.threshold
    result.update(
        passed=passed, measured=row["p95_ms"], job=row["job_id"], stable=row["stable"], measured_on=gate.target.slug
    )
    comparison = "within" if passed else "exceeds"
    result["reason"] = (
        f"p95 {_ms(row['p95_ms'])} ms on {gate.target.slug} at batch {gate.batch_size}{threads} "
        f"{comparison} {gate.threshold:g} ms (benchmark job #{row['job_id']})"
    )
    if not row["stable"]:
        result["reason"] += "; the measurement was unstable, benchmark again for a reliable figure"
    return result


def _evaluate_quality(gate, version, rows, quality_rows, result):
    """A quality gate, judged by the one decision rule (jobs.engine.decision) among every
    measured version of the model: accuracy against the most accurate version on the same
    evaluation set (whatever its lineage); cosine and relative error against what they were
    measured against."""
    measure_key = _gate_measure(gate, version.model)
    measure = MEASURES[measure_key]
    candidates, jobs = _quality_candidates(quality_rows, gate.target_id)
    passed, judgement, reference = quality_gate(
        candidates, version=version.version, measure_key=measure_key, limit=gate.threshold
    )
    where = f" on {gate.target.slug}" if gate.target_id else ""
    if not judgement.known:
        mine = [r for r in rows if gate.target_id is None or r["target_id"] == gate.target_id]
        result["measured"] = NO_ACCURACY if mine else NO_BENCHMARK
        result["reason"] = (
            f"{version.version}{where}: {judgement.text}"
            + ("" if mine else "; no benchmark at all")
            + "; run a benchmark with an evaluation set first"
        )
        result["reference"] = reference.name if reference else None
        return result
    job, target = jobs.get(version.version, (None, None))
    measured = judgement.delta if measure.basis == "labels" else judgement.value
    evaluation_set = reference.evaluation_set if measure.basis == "labels" else None
    result.update(
        passed=passed,
        measured=measured,
        job=job,
        measured_on=target,
        reference=reference.name,
        evaluation_set=(evaluation_set or {}).get("name"),
    )
    verdict = "within" if passed else "fails"
    result["reason"] = (
        f"{judgement.text} ({'on ' + target if target else 'measured'}; benchmark job #{job}): "
        f"{verdict} {gate.description}"
    )
    if measure.basis == "labels":
        result["reason"] += f"; {reference.describe(measure)} on {describe_set(evaluation_set, reference.samples)}"
    return result


def _gate_measure(gate, model):
    if gate.kind == PromotionGate.Kind.MIN_COSINE:
        return "cosine"
    if gate.kind == PromotionGate.Kind.MAX_RELATIVE_ERROR:
        return "relative_error" if model.task == Model.Task.REGRESSION else "max_relative_error"
    return "accuracy"


def _quality_candidates(quality_rows, target_id):
    """Decision candidates from the model's benchmark quality rows (newest job first): each
    version's newest measurement, plus the accuracy its children's benchmarks measured of it
    (their reference) where it has none of its own. Returns (candidates, {version: (job, target)})."""
    candidates, jobs = {}, {}
    derived = {}
    for row in quality_rows:
        if target_id is not None and row["target_id"] != target_id:
            continue
        name = row["version__version"]
        quality = read_quality(row["quality"], accuracy=row["accuracy"], fidelity=row["fidelity"])
        if not quality["metrics"]:
            continue
        if name not in candidates:
            candidates[name] = Candidate(name=name, ref=f"{row['version__model__name']}:{name}", quality=quality)
            jobs[name] = (row["job_id"], row["target__slug"])
        fidelity = row["fidelity"] or {}
        parent_accuracy, parent = fidelity.get("reference_accuracy"), fidelity.get("reference")
        if parent_accuracy is not None and parent and quality.get("evaluation_set") is not None:
            samples = quality.get("samples") or 0
            half = binomial_half_width(parent_accuracy, samples)
            derived.setdefault(
                parent.split(":", 1)[-1],
                (
                    parent,
                    row,
                    {
                        "evaluation_set": quality["evaluation_set"],
                        "samples": samples,
                        "reference": None,
                        "metrics": {
                            "accuracy": {
                                "value": parent_accuracy,
                                "samples": samples,
                                "interval": [max(0.0, parent_accuracy - half), min(1.0, parent_accuracy + half)],
                            }
                        },
                    },
                ),
            )
    for name, (ref, row, quality) in derived.items():
        if name not in candidates:
            candidates[name] = Candidate(name=name, ref=ref, quality=quality)
            jobs[name] = (row["job_id"], row["target__slug"])
    return list(candidates.values()), jobs


def _ms(value):
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"
