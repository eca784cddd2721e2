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

import numpy as np

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


MEASURES = {
    m.key: m
    for m in (
        Measure("accuracy", "accuracy", True, "labels", "drop", "max_drop_pt", 0.005, True),
        Measure("agreement", "top-1 agreement", True, "parent", "drop", "max_drop_pt", 0.005, True, exact=1.0),
        Measure("mae", "MAE", False, "labels", "rise", "max_relative_error_pct", 0.01, False),
        Measure(
            "relative_error", "relative error", False, "parent", "max", "max_relative_error_pct", 0.01, True, exact=0.0
        ),
        Measure("cosine", "cosine", True, "parent", "min", "min_cosine", 0.99, False, exact=1.0),
        Measure(
            "max_relative_error",
            "max relative error",
            False,
            "parent",
            "max",
            "max_relative_error_pct",
            0.01,
            True,
            exact=0.0,
        ),
    )
}

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
        metrics["accuracy"] = {
            "value": accuracy,
            "samples": samples,
            "interval": _clip(accuracy, binomial_half_width(accuracy, samples)),
        }
    if "agreement" not in metrics and fidelity.get("agreement") is not None and fidelity.get("reference"):
        value = fidelity["agreement"]
        metrics["agreement"] = {
            "value": value,
            "samples": samples,
            "interval": _clip(value, binomial_half_width(value, samples)),
        }
    if "cosine" not in metrics and fidelity.get("cosine_mean") is not None and fidelity.get("reference"):
        metrics["cosine"] = {
            "value": fidelity["cosine_mean"],
            "samples": samples,
            "interval": None,
            "worst": fidelity.get("cosine_min"),
        }
    quality["metrics"] = metrics
    quality.setdefault("reference", fidelity.get("reference"))
    quality.setdefault("evaluation_set", None)
    quality["samples"] = samples
    return quality


def _clip(value, half):
    return [max(0.0, value - half), min(1.0, value + half)]


# --- measuring ------------------------------------------------------------------------------

# Metrics measured on labels: an evaluation set is named with them.
LABEL_METRICS = ("accuracy", "top5_accuracy", "mae", "rmse", "recall_at_1", "recall_at_5")
# What the version page shows, in order: (key, label, percent).
SHOWN = (
    ("accuracy", "top-1", True),
    ("top5_accuracy", "top-5", True),
    ("agreement", "agreement", True),
    ("mae", "MAE", False),
    ("rmse", "RMSE", False),
    ("recall_at_1", "recall@1", True),
    ("recall_at_5", "recall@5", True),
    ("cosine", "cosine", False),
    ("relative_error", "rel. error", True),
    ("max_relative_error", "max rel. error", True),
    ("max_abs_error", "max abs error", False),
)


def measure_outputs(outputs, *, task, labels=None, reference=None):
    """Every quality metric that fits ``task`` and the data, as
    {key: {"value", "samples", "interval": [low, high] | None, ...}}.

    ``outputs`` / ``reference``: the model's and the reference model's first output, samples
    along axis 0. ``labels``: one per sample — class indices (classification, other), target
    values (regression) or retrieval labels (embedding: samples with the same label are
    relevant to each other).
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    n = len(outputs)
    metrics = {}
    if n == 0:
        return metrics
    flat = outputs.reshape(n, -1)
    if labels is not None:
        labels = np.asarray(labels)
        if task == "regression":
            metrics.update(_regression(flat, labels))
        elif task == "embedding":
            metrics.update(_retrieval(flat, labels))
        elif _class_labels(labels, outputs):
            metrics.update(_classification(outputs, labels))
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float64).reshape(n, -1)
        metrics.update(_fidelity(flat, reference, class_scores=outputs.ndim == 2 and outputs.shape[1] >= 2))
    return metrics


def _proportion(hits):
    value = float(hits.mean())
    half = binomial_half_width(value, len(hits))
    return {"value": value, "samples": int(len(hits)), "interval": _clip(value, half)}


def _mean_with_interval(values, scale=1.0):
    n = len(values)
    value = float(values.mean()) / scale
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(n) / scale if n > 1 else 0.0
    return {"value": value, "samples": int(n), "interval": [value - half, value + half]}


def _class_labels(labels, outputs):
    if not (outputs.ndim == 2 and outputs.shape[1] >= 2 and labels.ndim == 1 and len(labels) == len(outputs)):
        return False
    if labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0):
        return False
    return labels.dtype.kind in "iuf" and labels.min() >= 0 and labels.max() < outputs.shape[1]


def _classification(outputs, labels):
    labels = labels.astype(np.int64)
    metrics = {"accuracy": _proportion(outputs.argmax(axis=1) == labels)}
    if outputs.shape[1] > 5:
        top5 = np.argsort(-outputs, axis=1)[:, :5]
        metrics["top5_accuracy"] = _proportion((top5 == labels[:, None]).any(axis=1))
    return metrics


def _regression(flat, labels):
    targets = labels.reshape(len(flat), -1).astype(np.float64)
    if targets.shape != flat.shape:
        return {}
    errors = np.abs(flat - targets).mean(axis=1)
    squared = ((flat - targets) ** 2).mean(axis=1)
    return {
        "mae": _mean_with_interval(errors),
        "rmse": {"value": float(math.sqrt(squared.mean())), "samples": len(flat), "interval": None},
    }


def _retrieval(flat, labels):
    """recall@k: the share of samples (with at least one other sample of their label) whose k
    nearest neighbours by cosine include one of the same label."""
    if labels.ndim != 1 or len(labels) != len(flat) or labels.dtype.kind not in "iub":
        return {}
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    unit = flat / np.where(norms > 0, norms, 1.0)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    same = labels[:, None] == labels[None, :]
    np.fill_diagonal(same, False)
    queries = same.any(axis=1)
    if not queries.any():
        return {}
    order = np.argsort(-similarity, axis=1)
    metrics = {}
    for k in (1, 5):
        if k < len(flat):
            found = np.take_along_axis(same, order[:, :k], axis=1).any(axis=1)
            metrics[f"recall_at_{k}"] = _proportion(found[queries])
    return metrics


def _fidelity(flat, reference, *, class_scores):
    n = len(flat)
    finite = np.isfinite(flat).all(axis=1) & np.isfinite(reference).all(axis=1)
    a = np.where(finite[:, None], flat, 0.0)
    b = np.where(finite[:, None], reference, 0.0)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both = (na > 0) & (nb > 0)
    cosines = np.where((na == 0) & (nb == 0), 1.0, 0.0)
    cosines[both] = (a[both] * b[both]).sum(axis=1) / (na[both] * nb[both])
    cosines[~finite] = 0.0
    cosine = _mean_with_interval(cosines)
    cosine["interval"] = [max(-1.0, cosine["interval"][0]), min(1.0, cosine["interval"][1])]
    cosine["worst"] = float(cosines.min())
    differences = np.abs(a - b)
    scale = float(np.abs(b).mean())
    peak = float(np.abs(b).max())
    metrics = {"cosine": cosine, "max_abs_error": {"value": float(differences.max()), "samples": n, "interval": None}}
    if scale > 0:
        metrics["relative_error"] = _mean_with_interval(differences.mean(axis=1), scale=scale)
        metrics["relative_error"]["interval"][0] = max(0.0, metrics["relative_error"]["interval"][0])
    if peak > 0:
        metrics["max_relative_error"] = {"value": float(differences.max()) / peak, "samples": n, "interval": None}
    if not finite.all():
        for figure in metrics.values():
            figure["non_finite"] = int((~finite).sum())
    if class_scores:
        metrics["agreement"] = _proportion(flat.argmax(axis=1) == reference.argmax(axis=1))
    return metrics


def summary(quality):
    """The stored quality for people: [(label, value text)] of what was measured."""
    metrics = (quality or {}).get("metrics") or {}
    shown = []
    for key, label, percent in SHOWN:
        figure = metrics.get(key)
        if figure and figure.get("value") is not None:
            value = figure["value"]
            text = f"{value * 100:.2f} %" if percent else f"{value:.4g}"
            interval = figure.get("interval")
            if interval:
                half = (interval[1] - interval[0]) / 2
                text += f" ±{half * 100:.2f} pt" if percent else f" ±{half:.2g}"
            if figure.get("worst") is not None:
                text += f" (worst {figure['worst']:.4g})"
            shown.append((label, text))
    return shown
