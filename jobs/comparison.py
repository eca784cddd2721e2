"""Benchmark comparisons: versions × targets side by side at one batch size, each figure with
its ratio to a baseline and a verdict that is only "better" or "worse" when the difference is
larger than what was measured to be noise; and a recommendation under a latency budget.

``benchmark_comparison`` reads everything in a fixed number of queries, whatever the number of
versions and targets.
"""

import math
from dataclasses import dataclass, field

from dashboard.errors import BerthError, NotFound

from .models import BenchmarkResult

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
# The columns of table(), in order.
TABLE_COLUMNS = ["version", "target", "batch_size", "baseline", "status",
                 *[f"{key}{suffix}" for key, *_ in METRICS for suffix in ("", "_ratio", "_verdict")],
                 "accuracy_delta"]
# Figures measured once, with no spread to judge a difference by: their ratios are shown
# uncoloured.
UNJUDGED = {"peak_memory_bytes", "load_time_ms", "device_memory_bytes"}
# How a GPU benchmark timed its runs (jobs.engine.gpu.TimingMode.label); only like modes are compared.
TIMING_MODES = ("host", "device", "device+graph")


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
    max_drop: float | None  # fraction points
    choice: Row | None
    runner_up: Row | None
    reason: str
    considered: int


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


def benchmark_comparison(*, model_name, versions=None, targets=None, batch_size=None, percentile="p95",
                         baseline=None, budget_ms=None, max_drop=None, threads=None, timing_mode="host"):
    """Build the comparison of ``versions`` (version strings) on ``targets`` (slugs); empty
    means every version / target with results. ``baseline`` (a version string) is compared
    against on every target; None: each version's root (its fp32 original). ``max_drop`` is in
    fraction points (0.005 = 0.5 pt). Only results timed in ``timing_mode`` take part, so a device-resident
    GPU figure is never compared with one that copied its inputs."""
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
        BenchmarkResult.objects.filter(version__model=model, threads=threads, timing_mode=timing_mode)
        .defer("samples", "environment").order_by("-job_id")
    )
    newest = {}  # (version, target, batch) → the newest job's result
    for result in results:
        newest.setdefault((result.version_id, result.target_id, result.batch_size), result)
    batch_sizes = sorted({key[2] for key in newest})
    if batch_size is None:
        batch_size = batch_sizes[0] if batch_sizes else 1
    measured_targets = {key[1] for key in newest}
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
        measured_versions = {key[0] for key in newest}
        versions = [v for v in all_versions if v.pk in measured_versions]
    baseline_choice = None
    if baseline:
        baseline_choice = by_name.get(baseline)
        if baseline_choice is None:
            raise NotFound(f"Model {model.name} has no version {baseline!r}.", field="baseline")

    def baseline_for(version):
        return baseline_choice or _root(version, by_id)

    rows = []
    for target in targets:
        for version in versions:
            base = baseline_for(version)
            row = Row(version=version, target=target, result=newest.get((version.pk, target.pk, batch_size)),
                      baseline=base)
            base_result = newest.get((base.pk, target.pk, batch_size)) if base else None
            _fill(row, base, base_result)
            rows.append(row)
    recommendations = [_recommend(target, [r for r in rows if r.target == target], budget_ms, max_drop, percentile)
                       for target in targets]
    results_by_batch = {}
    for (version_id, target_id, size), result in newest.items():
        results_by_batch.setdefault((version_id, target_id), {})[size] = result
    history = [(by_id[v], t, r) for (v, t, size), r in newest.items() if size == batch_size]
    return Comparison(model=model, versions=versions, all_versions=all_versions, targets=targets,
                      all_targets=all_targets, batch_size=batch_size, batch_sizes=batch_sizes, percentile=percentile,
                      timing_mode=timing_mode,
                      baseline_choice=baseline_choice, budget_ms=budget_ms, max_drop=max_drop, rows=rows,
                      recommendations=recommendations, results_by_batch=results_by_batch, history=history)


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
        base_value = _value(base_result, base, key) if base is not None and (base_result is not None
                                                                              or key == "size_bytes") else None
        if value is not None and base_value:
            figure.ratio = value / base_value
            if row.is_baseline:
                figure.verdict = "baseline"
            elif key not in UNJUDGED and result is not None and (base_result is not None or key == "size_bytes"):
                figure.verdict = _verdict(key, value, base_value, result, base_result, higher_is_better)
        row.figures[key] = figure
    if result is not None and result.accuracy is not None and base_result is not None \
            and base_result.accuracy is not None:
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


def _recommend(target, rows, budget_ms, max_drop, percentile):
    key = f"{percentile}_ms"
    measured = [r for r in rows if r.result is not None]
    if not measured:
        return Recommendation(target, budget_ms, max_drop, None, None,
                              f"Nothing is measured on {target.slug} at this batch size.", 0)
    qualifying, misses = [], []
    for row in measured:
        latency = getattr(row.result, key)
        if budget_ms is not None and latency > budget_ms:
            misses.append(f"{row.version.version}: {percentile} {_ms(latency)} > {_ms(budget_ms)}")
            continue
        if max_drop is not None and not row.is_baseline:
            if row.accuracy_delta is None:
                misses.append(f"{row.version.version}: accuracy against {row.baseline.version} unknown")
                continue
            if -row.accuracy_delta > max_drop + 1e-12:
                misses.append(f"{row.version.version}: accuracy {_pt(row.accuracy_delta)} (limit −{max_drop * 100:.2f} pt)")
                continue
        qualifying.append(row)
    if not qualifying:
        return Recommendation(target, budget_ms, max_drop, None, None,
                              f"None qualifies on {target.slug}: " + "; ".join(misses) + ".", len(measured))
    qualifying.sort(key=lambda r: (getattr(r.result, key), r.version.size_bytes))
    choice = qualifying[0]
    runner_up = qualifying[1] if len(qualifying) > 1 else None
    tie = ""
    if runner_up is not None and abs(getattr(choice.result, key) - getattr(runner_up.result, key)) <= (
            spread(choice.result, key) + spread(runner_up.result, key)):
        if runner_up.version.size_bytes < choice.version.size_bytes:
            choice, runner_up = runner_up, choice
        tie = (f" {choice.version.version} and {runner_up.version.version} are within noise of each other on "
               f"{percentile}; the smaller file wins.")
    return Recommendation(target, budget_ms, max_drop, choice, runner_up, _reason(choice, percentile, budget_ms,
                                                                                  max_drop) + tie, len(measured))


def _reason(row, percentile, budget_ms, max_drop):
    latency = getattr(row.result, f"{percentile}_ms")
    parts = [f"{percentile} {_ms(latency)}" + (f" within the {_ms(budget_ms)} budget" if budget_ms else "")]
    if row.accuracy_delta is not None and not row.is_baseline:
        parts.append(f"accuracy {_pt(row.accuracy_delta)} against {row.baseline.version}"
                     + (f" (limit −{max_drop * 100:.2f} pt)" if max_drop is not None else ""))
    size = row.figures.get("size_bytes")
    if size and size.ratio and not row.is_baseline:
        parts.append(f"{size.ratio:.2f}× the size of {row.baseline.version}")
    if row.unstable:
        parts.append("note: its measurement was unstable")
    return "; ".join(parts) + "."


def format_ms(value):
    """Milliseconds with four significant figures or so: 0.016, 4.000, 10.00, 120.5."""
    return f"{value:.3f}" if value < 10 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _ms(value):
    return f"{format_ms(value)} ms"


def _pt(delta):
    return f"{delta * 100:+.2f} pt"


def best_variants(*, max_drop, limit, batch_size=1):
    """For the most recently benchmarked models: each target's recommendation at ``batch_size``
    (fastest p95 losing at most ``max_drop`` accuracy), as [(model name, recommendation)]."""
    names = []
    for name in (BenchmarkResult.objects.filter(batch_size=batch_size).order_by("-created")
                 .values_list("version__model__name", flat=True)):
        if name not in names:
            names.append(name)
        if len(names) >= limit:
            break
    return [(name, recommendation)
            for name in names
            for recommendation in benchmark_comparison(model_name=name, batch_size=batch_size,
                                                       max_drop=max_drop).recommendations]


# --- the table as data (page, CSV, JSON and API all use this) -------------------------------

def table(comparison):
    """The comparison table as flat rows: exactly the columns the page shows."""
    out = []
    for row in comparison.rows:
        entry = {"version": row.version.version, "target": row.target.slug, "batch_size": comparison.batch_size,
                 "baseline": row.baseline.version if row.baseline else None,
                 "status": "missing" if row.missing else ("unstable" if row.unstable else "ok")}
        for key, _label, _unit, _better in METRICS:
            figure = row.figures[key]
            entry[key] = figure.value
            entry[f"{key}_ratio"] = round(figure.ratio, 4) if figure.ratio is not None else None
            entry[f"{key}_verdict"] = figure.verdict
        entry["accuracy_delta"] = row.accuracy_delta
        out.append(entry)
    return out


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
        "rows": rows if rows is not None else table(comparison),
        "recommendations": [
            {"target": r.target.slug, "budget_ms": r.budget_ms, "max_accuracy_drop": r.max_drop,
             "choice": r.choice.version.version if r.choice else None,
             "runner_up": r.runner_up.version.version if r.runner_up else None,
             "reason": r.reason}
            for r in comparison.recommendations
        ],
    }
