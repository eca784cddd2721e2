"""Benchmark comparisons: versions × targets side by side at one batch size, each figure with
its ratio to a baseline and a verdict that is only "better" or "worse" when the difference is
larger than what was measured to be noise; and a recommendation under a latency budget.

``benchmark_comparison`` reads everything in a fixed number of queries, whatever the number of
versions and targets. Only results of the model alone (scope session_run) are compared: an
end-to-end request benchmark (scope request) also times a server and a socket, so it never
stands beside them (monitoring.comparable compares it with production's request latency).
"""

import math
from dataclasses import dataclass, field

from common.errors import BerthError, NotFound

from .engine.decision import Candidate, decide
from .engine.gpu import TIMING_MODES  # how a GPU benchmark timed its runs: only like modes compare
from .engine.quality import LIMIT_PARAMS, read_quality, task_limit_params
from .models import BenchmarkResult
from .selectors import serving_profiles

PERCENTILES = ("p50", "p95", "p99")
Z95 = 1.959964
# (key, label, unit, better when higher)
METRICS = [
    ("p50_ms", "p50", "ms", False),
    ("p95_ms", "p95", "ms", False),
    ("p99_ms", "p99", "ms", False),
    ("throughput", "throughput", "items/s", True),
    ("size_bytes", "size", "bytes", False),
    ("peak_memory_bytes", "peak memory", "bytes", False),
    ("load_time_ms", "load time", "ms", False),
    ("device_memory_bytes", "GPU memory", "bytes", False),
    ("accuracy", "accuracy", "", True),
]
# The newest serving profile of each version × target (jobs.selectors.serving_profiles): its
# recommended configuration and what it measured; None where there is none or none kept p99
# within its budget. Not at the comparison's batch size: the profile chooses the batching.
SERVING_COLUMNS = [
    "serving_profile_job",
    "serving_p99_budget_ms",
    "serving_max_batch_size",
    "serving_max_queue_delay_us",
    "serving_threads",
    "serving_concurrency",
    "serving_throughput",
    "serving_p50_ms",
    "serving_p99_ms",
]
# The columns of table(), in order.
TABLE_COLUMNS = [
    "version",
    "target",
    "batch_size",
    "baseline",
    "status",
    *[f"{key}{suffix}" for key, *_ in METRICS for suffix in ("", "_ratio", "_verdict")],
    "accuracy_delta",
    "evaluation_set",
    "evaluation_samples",
    "quality_measure",
    "quality_value",
    "quality_reference",
    "quality_delta",
    "quality_within_noise",
    "qualifies",
    "quality_note",
    *SERVING_COLUMNS,
]
# Figures measured once, with no spread to judge a difference by: their ratios are shown
# uncoloured.
UNJUDGED = {"peak_memory_bytes", "load_time_ms", "device_memory_bytes"}


@dataclass
class Figure:
    value: float | None
    ratio: float | None = None
    verdict: str | None = None  # better, worse, noise (within the measured spread), baseline, or None


@dataclass
class Row:
    version: object
    target: object
    result: BenchmarkResult | None
    baseline: object | None  # the version this row is compared with, on the same target
    figures: dict = field(default_factory=dict)
    accuracy_delta: float | None = None  # accuracy minus the baseline's, in fraction points
    quality: dict = field(default_factory=dict)  # engine.quality.read_quality of the result
    judgement: object = None  # engine.decision.Judgement against the recommendation's reference
    serving_profile: dict | None = None  # the newest serving profile here (selectors.serving_profile_summary)

    @property
    def missing(self):
        return self.result is None

    @property
    def unstable(self):
        return self.result is not None and not self.result.stable

    @property
    def is_baseline(self):
        return self.baseline is not None and self.baseline.pk == self.version.pk


@dataclass
class Recommendation:
    target: object
    budget_ms: float | None
    decision: object  # engine.decision.Decision: measure, limit, reference, excluded
    choice: Row | None
    runner_up: Row | None
    reason: str
    considered: int
    summary: str = ""  # the reason without the excluded versions (the page lists them)

    @property
    def max_drop(self):
        """The accuracy limit in fraction points, when the decision was on accuracy."""
        measure = self.decision.measure
        return self.decision.limit if measure is not None and measure.param == "max_drop_pt" else None


@dataclass
class Comparison:
    model: object
    versions: list
    all_versions: list
    targets: list
    all_targets: list
    batch_size: int
    batch_sizes: list
    percentile: str
    timing_mode: str
    baseline_choice: object | None  # a version chosen as the baseline for every target, or None: each root
    budget_ms: float | None
    max_drop: float | None
    rows: list
    recommendations: list
    results_by_batch: dict  # (version id, target id) → {batch size: result}, for the batch-size chart
    history: list  # every version's result at this batch size, per target, for the trend chart
    task: str = "other"
    limits: dict = field(default_factory=dict)  # limit parameter → value as given (max_drop_pt: 0.5)
    reference: str | None = None  # the version quality is judged against, as chosen; None: the rule's

    @property
    def limit_fields(self):
        """The limit inputs that fit the model's task: [(parameter, label, value given)]."""
        return [(param, LIMIT_PARAMS[param][0], self.limits.get(param)) for param in task_limit_params(self.task)]


def benchmark_comparison(
    *,
    model_name,
    versions=None,
    targets=None,
    batch_size=None,
    percentile="p95",
    baseline=None,
    budget_ms=None,
    max_drop=None,
    limits=None,
    reference=None,
    threads=None,
    timing_mode="host",
):
    """Build the comparison of ``versions`` (version strings) on ``targets`` (slugs); empty
    means every version / target with results. ``baseline`` (a version string) is compared
    against on every target for the ratios; None: each version's root (its fp32 original).
    Only results timed in ``timing_mode`` take part, so a device-resident GPU figure is never
    compared with one that copied its inputs.

    Recommendations follow engine.decision: quality is judged by the model's task measure
    against ``reference`` (a version string; None: the rule's choice), within ``limits``
    ({parameter of quality.LIMIT_PARAMS: value as the page reads it, e.g. max_drop_pt: 0.5}).
    ``max_drop`` (fraction points, 0.005 = 0.5 pt) is the same as limits max_drop_pt."""
    from registry.models import HardwareTarget, Model

    model = Model.objects.filter(name=model_name).first()
    if model is None:
        raise NotFound(f"There is no model named {model_name!r}.", field="model")
    if percentile not in PERCENTILES:
        raise BerthError(f"percentile must be one of {', '.join(PERCENTILES)}.", field="percentile")
    if timing_mode not in TIMING_MODES:
        raise BerthError(f"timing_mode must be one of {', '.join(TIMING_MODES)}.", field="timing_mode")
    all_versions = list(model.versions.order_by("created", "id"))
    by_id = {v.pk: v for v in all_versions}
    by_name = {v.version: v for v in all_versions}
    results = list(
        BenchmarkResult.objects.filter(
            version__model=model, threads=threads, timing_mode=timing_mode, scope=BenchmarkResult.Scope.SESSION_RUN
        )
        .defer("samples", "environment")
        .order_by("-job_id")
    )
    newest = {}  # (version, target, batch) → the newest job's result
    for result in results:
        newest.setdefault((result.version_id, result.target_id, result.batch_size), result)
    batch_sizes = sorted({key[2] for key in newest})
    if batch_size is None:
        batch_size = batch_sizes[0] if batch_sizes else 1
    # Serving profiles count as measurements: a version profiled but not benchmarked has a row.
    profiles = serving_profiles(versions=all_versions)
    measured_targets = {key[1] for key in newest} | {target_id for _, target_id in profiles}
    all_targets = list(HardwareTarget.objects.order_by("slug"))
    if targets:
        unknown = set(targets) - {t.slug for t in all_targets}
        if unknown:
            raise NotFound(f"There is no hardware target {sorted(unknown)[0]!r}.", field="targets")
        targets = [t for t in all_targets if t.slug in set(targets)]
    else:
        targets = [t for t in all_targets if t.pk in measured_targets]
    if versions:
        missing = [v for v in versions if v not in by_name]
        if missing:
            raise NotFound(f"Model {model.name} has no version {missing[0]!r}.", field="versions")
        versions = [by_name[v] for v in dict.fromkeys(versions)]
    else:
        measured_versions = {key[0] for key in newest} | {version_id for version_id, _ in profiles}
        versions = [v for v in all_versions if v.pk in measured_versions]
    baseline_choice = None
    if baseline:
        baseline_choice = by_name.get(baseline)
        if baseline_choice is None:
            raise NotFound(f"Model {model.name} has no version {baseline!r}.", field="baseline")

    if reference and reference not in by_name:
        raise NotFound(f"Model {model.name} has no version {reference!r}.", field="reference")
    limits = {key: value for key, value in (limits or {}).items() if value is not None}
    if max_drop is not None:
        limits.setdefault("max_drop_pt", max_drop * 100)
    converted = {key: LIMIT_PARAMS[key][1](value) for key, value in limits.items()}

    def baseline_for(version):
        return baseline_choice or _root(version, by_id)

    rows = []
    for target in targets:
        for version in versions:
            base = baseline_for(version)
            row = Row(
                version=version,
                target=target,
                result=newest.get((version.pk, target.pk, batch_size)),
                baseline=base,
                serving_profile=profiles.get((version.pk, target.pk)),
            )
            base_result = newest.get((base.pk, target.pk, batch_size)) if base else None
            _fill(row, base, base_result)
            if row.result is not None:
                row.quality = read_quality(
                    row.result.quality, accuracy=row.result.accuracy, fidelity=row.result.fidelity
                )
            rows.append(row)
    args = (model.task, converted, budget_ms, reference or None)
    recommendations = [
        _recommend(target, [r for r in rows if r.target == target], args, percentile) for target in targets
    ]
    results_by_batch = {}
    for (version_id, target_id, size), result in newest.items():
        results_by_batch.setdefault((version_id, target_id), {})[size] = result
    history = [(by_id[v], t, r) for (v, t, size), r in newest.items() if size == batch_size]
    return Comparison(
        model=model,
        versions=versions,
        all_versions=all_versions,
        targets=targets,
        all_targets=all_targets,
        batch_size=batch_size,
        batch_sizes=batch_sizes,
        percentile=percentile,
        timing_mode=timing_mode,
        baseline_choice=baseline_choice,
        budget_ms=budget_ms,
        max_drop=max_drop,
        rows=rows,
        recommendations=recommendations,
        results_by_batch=results_by_batch,
        history=history,
        task=model.task,
        limits=limits,
        reference=reference or None,
    )


def _root(version, by_id):
    node, seen = version, set()
    while node.parent_id and node.parent_id in by_id and node.pk not in seen:
        seen.add(node.pk)
        node = by_id[node.parent_id]
    return node


def _value(row_or_result, version, key):
    if key == "size_bytes":
        return version.size_bytes
    return getattr(row_or_result, key) if row_or_result is not None else None


def _fill(row, base, base_result):
    result = row.result
    for key, _label, _unit, higher_is_better in METRICS:
        value = _value(result, row.version, key) if result is not None or key == "size_bytes" else None
        figure = Figure(value)
        base_value = (
            _value(base_result, base, key)
            if base is not None and (base_result is not None or key == "size_bytes")
            else None
        )
        if value is not None and base_value:
            figure.ratio = value / base_value
            if row.is_baseline:
                figure.verdict = "baseline"
            elif key not in UNJUDGED and result is not None and (base_result is not None or key == "size_bytes"):
                figure.verdict = _verdict(key, value, base_value, result, base_result, higher_is_better)
        row.figures[key] = figure
    if (
        result is not None
        and result.accuracy is not None
        and base_result is not None
        and base_result.accuracy is not None
    ):
        row.accuracy_delta = result.accuracy - base_result.accuracy


def _verdict(key, value, base_value, result, base_result, higher_is_better):
    if value == base_value:
        return "noise"
    if not _significant(key, value, base_value, result, base_result):
        return "noise"
    return "better" if (value > base_value) == higher_is_better else "worse"


def _significant(key, value, base_value, result, base_result):
    """Whether two figures differ by more than their measured spread."""
    if key == "size_bytes":
        return True
    if key == "accuracy":
        return abs(value - base_value) > Z95 * math.hypot(_accuracy_error(result), _accuracy_error(base_result))
    return abs(value - base_value) > spread(result, key) + spread(base_result, key)


def spread(result, key):
    """Half-width of what a figure may be off by: its 95 % confidence interval from this run,
    or, when larger, the disagreement of the last three measuring windows (run-to-run noise)."""
    value = getattr(result, key)
    stat = {"p50_ms": "p50", "p95_ms": "p95", "p99_ms": "p99", "throughput": "mean"}.get(key)
    interval = (result.intervals or {}).get(stat)
    half = (interval[1] - interval[0]) / 2 if interval else 0.0
    if key == "throughput" and interval and result.mean_ms:
        half = value * half / result.mean_ms  # relative error of the mean carries over
    windows = list(result.windows or [])[-3:]
    if len(windows) >= 2:
        mean = sum(windows) / len(windows)
        half = max(half, value * (max(windows) - min(windows)) / (2 * mean))
    return half


def _accuracy_error(result):
    samples = (result.fidelity or {}).get("samples") or 0
    if not samples or result.accuracy is None:
        return 0.0
    return math.sqrt(max(result.accuracy * (1 - result.accuracy), 1e-12) / samples)


def _recommend(target, rows, comparison_args, percentile):
    """The decision rule (engine.decision.decide) on this target's rows."""
    task, limits, budget_ms, reference = comparison_args
    key = f"{percentile}_ms"
    candidates = [
        Candidate(
            name=r.version.version,
            ref=r.version.ref,
            size=r.version.size_bytes,
            item=r,
            latency=getattr(r.result, key) if r.result is not None else None,
            spread=spread(r.result, key) if r.result is not None else 0.0,
            quality=r.quality or {},
        )
        for r in rows
    ]
    decision = decide(
        candidates, task=task, limits=limits, budget_ms=budget_ms, reference=reference, percentile=percentile
    )
    for r in rows:
        r.judgement = decision.judgements.get(r.version.version)
    reason, summary = decision.reason, decision.summary
    if decision.considered == 0:
        reason = summary = f"Nothing is measured on {target.slug} at this batch size."
    elif decision.choice is None:
        reason = f"None qualifies on {target.slug}: " + reason.removeprefix("None qualifies: ")
        summary = f"None qualifies on {target.slug}."
    elif decision.choice.item.unstable:
        reason += " Note: its measurement was unstable."
        summary += " Note: its measurement was unstable."
    return Recommendation(
        target=target,
        budget_ms=budget_ms,
        decision=decision,
        choice=decision.choice.item if decision.choice else None,
        runner_up=decision.runner_up.item if decision.runner_up else None,
        reason=reason,
        considered=decision.considered,
        summary=summary,
    )


def best_variants(*, max_drop, limit, batch_size=1):
    """For the most recently benchmarked models: each target's recommendation at ``batch_size``
    by the decision rule (the task's measure; ``max_drop``, fraction points, as the accuracy
    limit; the other measures' default limits), as [(model name, recommendation)]."""
    names = []
    for name in (
        BenchmarkResult.objects.filter(batch_size=batch_size, scope=BenchmarkResult.Scope.SESSION_RUN)
        .order_by("-created")
        .values_list("version__model__name", flat=True)
    ):
        if name not in names:
            names.append(name)
        if len(names) >= limit:
            break
    return [
        (name, recommendation)
        for name in names
        for recommendation in benchmark_comparison(
            model_name=name, batch_size=batch_size, max_drop=max_drop
        ).recommendations
    ]


# --- the table as data (page, CSV, JSON and API all use this) -------------------------------


def table(comparison):
    """The comparison table as flat rows: exactly the columns the page shows."""
    decisions = {r.target.pk: r.decision for r in comparison.recommendations}
    out = []
    for row in comparison.rows:
        entry = {
            "version": row.version.version,
            "target": row.target.slug,
            "batch_size": comparison.batch_size,
            "baseline": row.baseline.version if row.baseline else None,
            "status": "missing" if row.missing else ("unstable" if row.unstable else "ok"),
        }
        for key, _label, _unit, _better in METRICS:
            figure = row.figures[key]
            entry[key] = figure.value
            entry[f"{key}_ratio"] = round(figure.ratio, 4) if figure.ratio is not None else None
            entry[f"{key}_verdict"] = figure.verdict
        entry["accuracy_delta"] = row.accuracy_delta
        entry.update(_quality_columns(row, decisions.get(row.target.pk)))
        entry.update(_serving_columns(row.serving_profile))
        out.append(entry)
    return out


def _serving_columns(profile):
    """The row's serving profile: its job, budget, and the recommended configuration's figures."""
    best = (profile or {}).get("recommended") or {}
    return {
        "serving_profile_job": profile["job"].pk if profile else None,
        "serving_p99_budget_ms": profile["budget_ms"] if profile else None,
        **{f"serving_{key}": best.get(key) for key in (c.removeprefix("serving_") for c in SERVING_COLUMNS[2:])},
    }


def _quality_columns(row, decision):
    """The row's quality as the recommendation judged it: measure, value, reference, delta."""
    evaluation_set = (row.quality or {}).get("evaluation_set") or {}
    judgement = row.judgement
    measure = decision.measure if decision else None
    return {
        "evaluation_set": evaluation_set.get("name"),
        "evaluation_samples": evaluation_set.get("samples") or ((row.quality or {}).get("samples") or None),
        "quality_measure": measure.key if measure else None,
        "quality_value": judgement.value if judgement else None,
        "quality_reference": decision.reference.name if decision and decision.reference else None,
        "quality_delta": judgement.delta if judgement else None,
        "quality_within_noise": judgement.within_noise if judgement and judgement.known else None,
        "qualifies": judgement.qualifies if judgement and measure else None,
        "quality_note": judgement.text if judgement else "",
    }


def comparison_payload(comparison, rows=None):
    """What the API answers: the page's table rows and recommendations, and what they are of."""
    return {
        "model": comparison.model.name,
        "batch_size": comparison.batch_size,
        "batch_sizes": comparison.batch_sizes,
        "percentile": comparison.percentile,
        "timing_mode": comparison.timing_mode,
        "baseline": comparison.baseline_choice.version if comparison.baseline_choice else None,
        "versions": [v.version for v in comparison.versions],
        "targets": [t.slug for t in comparison.targets],
        "task": comparison.task,
        "limits": comparison.limits,
        "reference": comparison.reference,
        "rows": rows if rows is not None else table(comparison),
        "recommendations": [recommendation_payload(r) for r in comparison.recommendations],
    }


def recommendation_payload(r):
    decision, reference = r.decision, r.decision.reference
    measure = decision.measure
    evaluation_set = reference.evaluation_set if reference else None
    return {
        "target": r.target.slug,
        "budget_ms": r.budget_ms,
        "max_accuracy_drop": r.max_drop,
        "choice": r.choice.version.version if r.choice else None,
        "runner_up": r.runner_up.version.version if r.runner_up else None,
        "measure": measure.key if measure else None,
        "limit": decision.limit,
        "limit_text": decision.limit_text,
        "reference": reference.name if reference else None,
        "reference_chosen": reference.chosen if reference else False,
        "reference_value": reference.value if reference else None,
        "evaluation_set": (
            {"name": evaluation_set.get("name"), "samples": evaluation_set.get("samples") or reference.samples}
            if evaluation_set
            else None
        ),
        "excluded": [{"version": name, "reason": why} for name, why in decision.excluded],
        "reason": r.reason,
    }
