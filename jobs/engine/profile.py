"""Reference profiles for drift: the features a serving runtime counts per request, with bin
edges and reference counts taken from a reference dataset. Plain Python: no Django.

Features: for each input, every column of a 2-D input with few columns, otherwise the mean and
standard deviation of each row; and the prediction: its class (argmax) for class scores, else
the first value. Bins: edges at the reference values' tail and decile quantiles, plus outer bins
beyond them (berth.core.drift.profile_edges: 22 bins for a continuous feature); a value v falls
in bin ``searchsorted(edges, v, side="left")`` (e[i-1] < v <= e[i]), exactly as berth-serve
counts. Profiles built before the tail edges (10 decile bins) keep working; a new profile job
rebuilds them.
"""

from dataclasses import dataclass, field

import numpy as np

from berth.core.drift import profile_edges
from berth.core.dtypes import numpy_dtype

from .errors import EngineError, first_line
from .progress import no_progress

MAX_COLUMNS = 16
MAX_CLASSES = 1000
MIN_ROWS = 10


@dataclass
class FeatureProfile:
    name: str
    kind: str  # mean, std, column, class, value
    tensor: str
    column: int | None = None
    classes: int | None = None
    edges: list = field(default_factory=list)
    counts: list = field(default_factory=list)


def bin_counts(values, edges):
    """Counts per bin: len(edges) + 1 bins, bin i holding edges[i-1] < v <= edges[i]."""
    index = np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), side="left")
    return np.bincount(index, minlength=len(edges) + 1).tolist()


def row_values(kind, array, column=None):
    """A feature's value per row (axis 0) of a tensor."""
    rows = np.asarray(array, dtype=np.float64).reshape(len(array), -1)
    if kind == "mean":
        return rows.mean(axis=1)
    if kind == "std":
        return rows.std(axis=1)
    if kind == "column":
        return rows[:, column]
    if kind == "class":
        return np.asarray(array).reshape(len(array), -1).argmax(axis=1)
    if kind == "value":
        return rows[:, 0]
    raise EngineError(f"Unknown feature kind {kind!r}.")


def build_profile(
    model_path, *, inputs, dataset, providers=("CPUExecutionProvider",), batch_size=256, progress=no_progress
):
    """Profile the reference ``dataset`` ({input name: array}) for the model at ``model_path``
    whose signature inputs are ``inputs``. Returns a list of FeatureProfile."""
    import onnxruntime as ort

    missing = [spec["name"] for spec in inputs if spec["name"] not in dataset]
    if missing:
        raise EngineError(f"The reference dataset has no array for input {missing[0]!r}.")
    rows = len(dataset[inputs[0]["name"]])
    if rows < MIN_ROWS:
        raise EngineError(f"The reference dataset has {rows} rows; a drift profile needs at least {MIN_ROWS}.")
    features = []
    for spec in inputs:
        array = np.asarray(dataset[spec["name"]])
        if array.ndim == 2 and array.shape[1] <= MAX_COLUMNS:
            for column in range(array.shape[1]):
                features.append(
                    _binned(
                        f"{spec['name']}[{column}]",
                        "column",
                        spec["name"],
                        row_values("column", array, column),
                        column=column,
                    )
                )
        else:
            for kind in ("mean", "std"):
                features.append(_binned(f"{spec['name']}.{kind}", kind, spec["name"], row_values(kind, array)))
    progress(40, f"Running the model on {rows} reference rows")
    try:
        session = ort.InferenceSession(str(model_path), providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own types
        raise EngineError(f"onnxruntime cannot load the model: {first_line(exc)}") from exc
    output = session.get_outputs()[0]
    batches = []
    feeds_types = {arg.name: arg.type for arg in session.get_inputs()}
    for start in range(0, rows, batch_size):
        feeds = {
            spec["name"]: np.asarray(
                dataset[spec["name"]][start : start + batch_size], dtype=_numpy_type(feeds_types[spec["name"]])
            )
            for spec in inputs
        }
        try:
            batches.append(session.run([output.name], feeds)[0])
        except Exception as exc:
            raise EngineError(
                f"The model fails on reference rows {start}-{start + batch_size - 1}: {first_line(exc)}"
            ) from exc
        progress(40 + 55 * min(rows, start + batch_size) // rows, "")
    predictions = np.concatenate(batches)
    width = int(np.prod(predictions.shape[1:])) if predictions.ndim > 1 else 1
    if predictions.ndim >= 2 and 2 <= width <= MAX_CLASSES:
        classes = row_values("class", predictions)
        features.append(
            FeatureProfile(
                "prediction", "class", output.name, classes=width, counts=np.bincount(classes, minlength=width).tolist()
            )
        )
    else:
        values = row_values("value", predictions.reshape(len(predictions), -1))
        features.append(_binned("prediction", "value", output.name, values))
    return features


def _binned(name, kind, tensor, values, column=None):
    try:
        edges = profile_edges(values)
    except ValueError as exc:
        raise EngineError(f"Feature {name}: {exc}") from exc
    return FeatureProfile(name, kind, tensor, column=column, edges=edges, counts=bin_counts(values, edges))


def _numpy_type(ort_type):
    return numpy_dtype(ort_type, "float32")
