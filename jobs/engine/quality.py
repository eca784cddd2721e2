"""Quality measures, declared once per task: what a benchmark measures of a version's outputs,
and what comparisons, recommendations and promotion gates judge it by. Plain Python: no Django.

Two kinds of measure:

- on labels ("labels"): an absolute figure on a labelled evaluation set (accuracy, MAE). It is
  compared across versions, whatever their lineage, but only on the same evaluation set.
- against a reference model ("parent"): fidelity of the outputs to the version they were
  measured against (top-1 agreement, cosine, relative error). It is only comparable between
  versions measured against the same reference; the reference itself is exact by definition.

A benchmark stores what it measured as ``quality`` (see ``benchmark_quality``):
``{"evaluation_set": {"name", "sha256", "samples"} | None, "reference": "model:version" | None,
"samples": n, "metrics": {key: {"value", "samples", "interval": [low, high] | None}}}``.
"""

import math
from dataclasses import dataclass

Z95 = 1.959964


@dataclass(frozen=True)
class Measure:
    key: str
    label: str
    higher_is_better: bool
    basis: str  # "labels" or "parent" (see the module docstring)
    # How a limit reads: "drop" — at most `limit` (fraction points) below the reference;
    # "rise" — at most `limit` (a fraction) above the reference's value; "min" / "max" — an
    # absolute floor / ceiling on the value.
    limit_kind: str
    param: str  # the query parameter (compare page and API) that carries its limit
    default_limit: float
    percent: bool  # shown as a percentage
    exact: float | None = None  # its value for the reference itself (parent basis)

    def show(self, value):
        if value is None:
            return "unknown"
        return f"{value * 100:.2f} %" if self.percent else f"{value:.4g}"

    def limit_text(self, limit):
        """The limit in the task's terms: "at most 0.50 pt accuracy drop", "cosine ≥ 0.99"."""
        if self.limit_kind == "drop":
            return f"at most {limit * 100:.2f} pt {self.label} drop"
        if self.limit_kind == "rise":
            return f"{self.label} at most {limit * 100:.2g} % above the reference's"
        sign = "≥" if self.limit_kind == "min" else "≤"
        return f"{self.label} {sign} {self.show(limit) if self.percent else f'{limit:g}'}"


MEASURES = {m.key: m for m in (
    Measure("accuracy", "accuracy", True, "labels", "drop", "max_drop_pt", 0.005, True),
    Measure("agreement", "top-1 agreement", True, "parent", "drop", "max_drop_pt", 0.005, True, exact=1.0),
    Measure("mae", "MAE", False, "labels", "rise", "max_relative_error_pct", 0.01, False),
    Measure("relative_error", "relative error", False, "parent", "max", "max_relative_error_pct", 0.01, True,
            exact=0.0),
    Measure("cosine", "cosine", True, "parent", "min", "min_cosine", 0.99, False, exact=1.0),
    Measure("max_relative_error", "max relative error", False, "parent", "max", "max_relative_error_pct", 0.01,
            True, exact=0.0),
)}

# Per task, the measures a decision uses, in order of preference: the first one measured for
# any compared version is the one every version is judged by.
TASKS = {
    "classification": ("accuracy", "agreement"),
    "regression": ("mae", "relative_error"),
    "embedding": ("cosine",),
    "other": ("accuracy", "max_relative_error"),
}

# Query parameters that carry limits: (name, label on the page, how the number reads → the
# measure's limit).
LIMIT_PARAMS = {
    "max_drop_pt": ("Max accuracy drop (pt)", lambda v: v / 100),
    "max_relative_error_pct": ("Max relative error (%)", lambda v: v / 100),
    "min_cosine": ("Min cosine", lambda v: v),
}


def task_measures(task):
    return [MEASURES[key] for key in TASKS.get(task, TASKS["other"])]


def task_limit_params(task):
    """The limit parameters a model of ``task`` is judged by, in order."""
    return list(dict.fromkeys(m.param for m in task_measures(task)))


def binomial_half_width(value, samples):
    """Half-width of the 95 % confidence interval of a proportion measured on ``samples``."""
    if not samples or value is None:
        return 0.0
    return Z95 * math.sqrt(max(value * (1 - value), 0.25 / samples) / samples)


def interval_half(figure):
    interval = figure.get("interval") if figure else None
    return (interval[1] - interval[0]) / 2 if interval else 0.0


def read_quality(quality, *, accuracy=None, fidelity=None):
    """``quality`` as stored, completed from the older fields for benchmarks stored before it
    (``accuracy`` on the evaluation set and the ``fidelity`` dict against the parent)."""
    quality = dict(quality or {})
    metrics = dict(quality.get("metrics") or {})
    fidelity = fidelity or {}
    samples = quality.get("samples") or fidelity.get("samples") or 0
    if "accuracy" not in metrics and accuracy is not None:
        metrics["accuracy"] = {"value": accuracy, "samples": samples,
                               "interval": _clip(accuracy, binomial_half_width(accuracy, samples))}
    if "agreement" not in metrics and fidelity.get("agreement") is not None and fidelity.get("reference"):
        value = fidelity["agreement"]
        metrics["agreement"] = {"value": value, "samples": samples,
                                "interval": _clip(value, binomial_half_width(value, samples))}
    if "cosine" not in metrics and fidelity.get("cosine_mean") is not None and fidelity.get("reference"):
        metrics["cosine"] = {"value": fidelity["cosine_mean"], "samples": samples, "interval": None,
                             "worst": fidelity.get("cosine_min")}
    quality["metrics"] = metrics
    quality.setdefault("reference", fidelity.get("reference"))
    quality.setdefault("evaluation_set", None)
    quality["samples"] = samples
    return quality


def _clip(value, half):
    return [max(0.0, value - half), min(1.0, value + half)]
