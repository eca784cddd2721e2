"""Measure an ONNX model on data: top-1 accuracy when the data has labels, and fidelity to a
reference model (usually the parent a compressed version was made from). Plain Python: no Django.

Accuracies and deltas are fractions (0.975, -0.004); cosines are per sample, over the flattened
first output.
"""

from dataclasses import dataclass, field

import numpy as np

from berth.core.dtypes import numpy_dtype

from .errors import EngineError, first_line
from .progress import no_progress


@dataclass
class EvaluationResult:
    samples: int
    metric: str  # "top1_accuracy" when labels were scored, else "output_fidelity"
    accuracy: float | None = None
    reference_accuracy: float | None = None
    accuracy_delta: float | None = None  # this model's accuracy minus the reference's
    cosine_mean: float | None = None
    cosine_min: float | None = None
    max_abs_diff: float | None = None
    agreement: float | None = None  # share of samples whose top-1 class equals the reference's
    relative_error: float | None = None  # mean |output − reference| over mean |reference|
    max_relative_error: float | None = None  # max |output − reference| over max |reference|
    # Every quality metric of the task, with sample counts and confidence intervals
    # (quality.measure_outputs).
    metrics: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def evaluate(
    model_path,
    *,
    dataset,
    reference_path=None,
    providers=("CPUExecutionProvider",),
    provider_options=None,
    batch_size=64,
    task=None,
    progress=no_progress,
):
    """Run ``model_path`` (and ``reference_path``, if given) on ``dataset`` ({input name: array,
    samples along axis 0}, plus optional "labels") and compare; ``task`` (the model's) says
    what the labels are (quality.measure_outputs).

    Needs labels or a reference: with neither there is nothing to measure.
    """
    labels = dataset.get("labels") if isinstance(dataset, dict) else None
    if labels is None and reference_path is None:
        raise EngineError("Nothing to measure: give the dataset a 'labels' array or pass a reference model.")
    span = 90 if reference_path is None else 45
    outputs, notes = run_model(
        model_path,
        dataset,
        providers=providers,
        provider_options=provider_options,
        batch_size=batch_size,
        progress=lambda p, m="": progress(int(p * span / 100), m),
    )
    reference = None
    if reference_path is not None:
        reference, _ = run_model(
            reference_path,
            dataset,
            providers=providers,
            provider_options=provider_options,
            batch_size=batch_size,
            progress=lambda p, m="": progress(45 + int(p * 45 / 100), f"Reference: {m}"),
        )
    result = compare_outputs(outputs, reference=reference, labels=labels, task=task)
    result.notes[:0] = notes
    progress(100, "Done")
    return result


def run_model(
    model_path,
    dataset,
    *,
    providers=("CPUExecutionProvider",),
    provider_options=None,
    batch_size=64,
    progress=no_progress,
):
    """The model's first output on every sample of ``dataset``, as float32 (fp16 outputs are
    cast). Returns (outputs, notes)."""
    import onnxruntime as ort

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise EngineError(f"batch_size must be a whole number of at least 1, not {batch_size!r}.")
    if not isinstance(dataset, dict) or not dataset:
        raise EngineError("The dataset must be a dict of arrays, one per model input (samples along axis 0).")
    providers = list(providers)
    unavailable = [p for p in providers if p not in ort.get_available_providers()]
    if unavailable:
        raise EngineError(
            f"{', '.join(unavailable)} is not available in this onnxruntime build (available: "
            f"{', '.join(ort.get_available_providers())}). Run the job on a worker for that target."
        )
    try:
        session = ort.InferenceSession(str(model_path), providers=providers, provider_options=provider_options)
    except Exception as exc:
        raise EngineError(f"onnxruntime cannot load {model_path}: {first_line(exc)}") from exc
    specs = session_input_specs(session)
    arrays = check_feeds(specs, dataset, what="evaluation data")
    rows = len(next(iter(arrays.values())))
    fixed = specs[0]["shape"][0] if specs[0]["shape"] and isinstance(specs[0]["shape"][0], int) else None
    batch = fixed or batch_size
    output = session.get_outputs()[0]
    notes = []
    if len(session.get_outputs()) > 1:
        notes.append(
            f"The model has {len(session.get_outputs())} outputs; only the first, {output.name!r}, is measured."
        )
    chunks = []
    for start in range(0, rows, batch):
        feeds = {name: array[start : start + batch] for name, array in arrays.items()}
        got = len(next(iter(feeds.values())))
        if got < batch and fixed:  # a frozen batch size: pad with the last row, then drop the padding
            feeds = {name: np.concatenate([a, np.repeat(a[-1:], batch - got, axis=0)]) for name, a in feeds.items()}
        try:
            result = session.run([output.name], feeds)[0]
        except Exception as exc:
            raise EngineError(f"Inference failed on rows {start}-{start + got - 1}: {first_line(exc)}") from exc
        if not isinstance(result, np.ndarray):
            raise EngineError(f"The first output {output.name!r} is not a tensor; Berth measures tensor outputs.")
        chunks.append(result[:got])
        progress(int(100 * min(rows, start + batch) / rows), f"{min(rows, start + batch)} of {rows} samples")
    return np.concatenate(chunks).astype(np.float32, copy=False), notes


def model_input_specs(model_path):
    """[{"name", "dtype" (numpy), "shape" (ints, or a symbol/None for dynamic axes)}] as
    onnxruntime reads them."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EngineError(f"onnxruntime cannot load the model: {first_line(exc)}") from exc
    return session_input_specs(session)


def session_input_specs(session):
    return [{"name": arg.name, "dtype": numpy_dtype(arg.type), "shape": arg.shape} for arg in session.get_inputs()]


def check_feeds(specs, data, *, what):
    """The arrays of ``data`` for each input of ``specs``, cast to the input's type, after
    checking names, ranks, fixed dimensions and that all have the same number of rows."""
    described = "; ".join(
        f"{s['name']} {list(s['shape'] or [])} {np.dtype(s['dtype']).name if s['dtype'] else '?'}" for s in specs
    )
    missing = [s["name"] for s in specs if s["name"] not in data]
    if missing:
        raise EngineError(
            f"The {what} lacks input(s) {', '.join(missing)}. The model expects: {described}. "
            "Give one array per model input, samples along axis 0."
        )
    arrays = {}
    for spec in specs:
        array = np.asarray(data[spec["name"]])
        shape = spec["shape"]
        if shape is not None and array.ndim != len(shape):
            raise EngineError(
                f"In the {what}, {spec['name']!r} has shape {list(array.shape)} but the model expects "
                f"{len(shape)} dimensions ({list(shape)}): reshape it, samples along axis 0."
            )
        wrong = [
            axis
            for axis, dim in enumerate(shape or [])
            if axis > 0 and isinstance(dim, int) and array.shape[axis] != dim
        ]
        if wrong:
            raise EngineError(
                f"In the {what}, {spec['name']!r} has shape {list(array.shape)} but the model expects "
                f"{list(shape)}: dimension {wrong[0]} differs."
            )
        dtype = spec["dtype"]
        if dtype is not None and array.dtype != dtype:
            if not np.can_cast(array.dtype, dtype, casting="same_kind"):
                raise EngineError(
                    f"In the {what}, {spec['name']!r} is {array.dtype} but the model expects {np.dtype(dtype).name}."
                )
            array = array.astype(dtype)
        arrays[spec["name"]] = array
    rows = {name: len(array) for name, array in arrays.items()}
    if len(set(rows.values())) > 1:
        raise EngineError(f"The {what} arrays have different numbers of rows ({rows}); they must match.")
    if not next(iter(rows.values()), 0):
        raise EngineError(f"The {what} is empty.")
    return arrays


def compare_outputs(outputs, *, reference=None, labels=None, task=None):
    """Top-1 accuracy (when ``labels`` fit the output as class scores, and the task is not
    regression or embedding, whose labels mean something else) and, with ``reference`` outputs
    of the same shape, cosine / max abs difference / top-1 agreement / relative errors; and
    every metric of the task in ``metrics``."""
    from .quality import measure_outputs

    outputs = np.asarray(outputs, dtype=np.float32)
    samples = len(outputs)
    result = EvaluationResult(samples=samples, metric="output_fidelity")
    class_scores = outputs.ndim == 2 and outputs.shape[1] >= 2
    if labels is not None and len(labels) != samples:
        raise EngineError(f"'labels' has {len(labels)} rows but the inputs have {samples}; they must match.")
    if labels is not None and task not in ("regression", "embedding"):
        labels = np.asarray(labels)
        if _fits_as_classes(labels, outputs):
            result.accuracy = _top1(outputs, labels)
            result.metric = "top1_accuracy"
        else:
            result.notes.append(
                f"Labels were given but the output (shape {list(outputs.shape)}) does not look "
                "like class scores for them: accuracy not computed."
            )
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float32)
        if reference.shape != outputs.shape:
            raise EngineError(
                f"The model's output has shape {list(outputs.shape)} but the reference's has "
                f"{list(reference.shape)}: they cannot be compared."
            )
        if result.accuracy is not None:
            result.reference_accuracy = _top1(reference, labels)
            result.accuracy_delta = result.accuracy - result.reference_accuracy
        a = outputs.reshape(samples, -1).astype(np.float64)
        b = reference.reshape(samples, -1).astype(np.float64)
        finite = np.isfinite(a).all(axis=1) & np.isfinite(b).all(axis=1)
        cosines = _cosines(np.where(finite[:, None], a, 0.0), np.where(finite[:, None], b, 0.0))
        cosines[~finite] = 0.0
        if not finite.all():
            result.notes.append(f"{int((~finite).sum())} sample(s) have NaN or infinite outputs (cosine counted as 0).")
        result.cosine_mean = float(cosines.mean()) if samples else None
        result.cosine_min = float(cosines.min()) if samples else None
        result.max_abs_diff = float(np.abs(a - b).max()) if a.size else 0.0
        if class_scores:
            result.agreement = float((outputs.argmax(axis=1) == reference.argmax(axis=1)).mean())
    result.metrics = measure_outputs(outputs, task=task or "classification", labels=labels, reference=reference)
    for key in ("relative_error", "max_relative_error"):
        setattr(result, key, (result.metrics.get(key) or {}).get("value"))
    return result


def _fits_as_classes(labels, outputs):
    if not (outputs.ndim == 2 and outputs.shape[1] >= 2 and labels.ndim == 1):
        return False
    if labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0):
        return False
    return labels.dtype.kind in "iuf" and labels.min() >= 0 and labels.max() < outputs.shape[1]


def _top1(outputs, labels):
    return float((outputs.argmax(axis=1) == labels.astype(np.int64)).mean())


def _cosines(a, b):
    """Row-wise cosine similarity; two all-zero rows count as identical, one as unrelated."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both = (na > 0) & (nb > 0)
    cosines = np.where((na == 0) & (nb == 0), 1.0, 0.0)
    cosines[both] = (a[both] * b[both]).sum(axis=1) / (na[both] * nb[both])
    return cosines
