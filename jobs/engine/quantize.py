"""Compress an ONNX model with onnxruntime: int8 quantization (dynamic, or static QDQ with
calibration), fp16 conversion and offline graph optimization. Plain Python: no Django.

Every function writes one self-contained .onnx file (no external data), checks it with the ONNX
checker and an onnxruntime session, and returns a CompressionResult whose ``recipe`` records the
method, every parameter used and the tool versions, so a child version says exactly how it was
made. Sizes are in bytes.
"""

import tempfile
from pathlib import Path

import numpy as np

from .errors import EngineError, first_line
from .evaluate import check_feeds, model_input_specs
from .output import check_output, removed_on_error, source_and_output, tool_versions
from .progress import no_progress

WEIGHT_TYPES = ("qint8", "quint8")
ACTIVATION_TYPES = ("quint8", "qint8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
OPTIMIZATION_LEVELS = ("basic", "extended", "all")

# What onnxruntime's calibrators use; quantize_static cannot change the bin counts, so the recipe
# records them as they are.
CALIBRATOR_OPTIONS = {
    "minmax": {"symmetric": False, "moving_average": False},
    "entropy": {"num_bins": 128, "num_quantized_bins": 128, "symmetric": False},
    "percentile": {"num_bins": 2048, "percentile": 99.999, "symmetric": True},
}


# --- int8 ------------------------------------------------------------------------------------


def quantize_dynamic(
    src,
    dst,
    *,
    weight_type="qint8",
    per_channel=True,
    reduce_range=False,
    op_types=None,
    pre_processed=False,
    progress=no_progress,
):
    """Weights to int8 ahead of time, activations quantized on the fly at run time; needs no data.

    ``op_types`` limits quantization to those operator types (e.g. ["MatMul", "Gemm"]); None
    quantizes every type onnxruntime supports. ``pre_processed=True`` skips quant_pre_process when
    ``src`` already went through ``prepare_for_quantization``.
    """
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    weight = _quant_type(_choice("weight_type", weight_type, WEIGHT_TYPES))
    op_types = _op_types(op_types)
    _flags(per_channel=per_channel, reduce_range=reduce_range)
    src, dst = source_and_output(src, dst)
    extra_options = {"MatMulConstBOnly": True}
    with tempfile.TemporaryDirectory(prefix="berth-quantize-") as tmp, removed_on_error(dst):
        progress(5, "Pre-processing the model for quantization")
        prepared, pre_process = _prepared(src, Path(tmp), pre_processed)
        _require_op_types(prepared, op_types)
        progress(40, "Quantizing weights to int8")
        try:
            ort_quantize_dynamic(
                str(prepared),
                str(dst),
                op_types_to_quantize=op_types,
                per_channel=per_channel,
                reduce_range=reduce_range,
                weight_type=weight,
                use_external_data_format=False,
                extra_options=dict(extra_options),
            )
        except Exception as exc:  # onnxruntime raises plain exceptions of many types
            raise EngineError(
                f"onnxruntime's quantize_dynamic failed on this model: {first_line(exc)}. "
                "Try op_types=['MatMul', 'Gemm'] or static quantization."
            ) from exc
        recipe = {
            "method": "quantize_dynamic",
            "activations": "uint8, quantized per batch at run time",
            "weight_type": weight_type,
            "per_channel": bool(per_channel),
            "reduce_range": bool(reduce_range),
            "op_types": op_types,
            "format": "integer operators",
            "extra_options": extra_options,
            "pre_process": pre_process,
            "tools": tool_versions(),
        }
        notes = ["Activations are quantized at run time for each batch; weights are stored as int8."]
        return check_output(dst, recipe, notes + _quantized_notes(dst), progress)


def quantize_static(
    src,
    dst,
    *,
    calibration,
    method="minmax",
    per_channel=True,
    reduce_range=False,
    activation_type="quint8",
    weight_type="qint8",
    op_types=None,
    max_samples=128,
    pre_processed=False,
    progress=no_progress,
):
    """Weights and activations to int8 in QDQ format, activation ranges calibrated on data.

    ``calibration`` maps each model input name to an array with samples along axis 0 (other keys,
    such as "labels", are ignored); at most ``max_samples`` rows are used, in batches.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    calibrate_method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[_choice("method", method, CALIBRATION_METHODS)]
    activation = _quant_type(_choice("activation_type", activation_type, ACTIVATION_TYPES))
    weight = _quant_type(_choice("weight_type", weight_type, WEIGHT_TYPES))
    op_types = _op_types(op_types)
    _flags(per_channel=per_channel, reduce_range=reduce_range)
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 1:
        raise EngineError(f"max_samples must be a whole number of at least 1, not {max_samples!r}.")
    if not isinstance(calibration, dict) or not calibration:
        raise EngineError(
            "Static quantization needs calibration data: a dict of arrays, one per model input "
            "(samples along axis 0). Use quantize_dynamic when no data is at hand."
        )
    src, dst = source_and_output(src, dst)
    extra_options = (
        {"CalibPercentile": CALIBRATOR_OPTIONS["percentile"]["percentile"]} if method == "percentile" else {}
    )
    with tempfile.TemporaryDirectory(prefix="berth-quantize-") as tmp, removed_on_error(dst):
        progress(5, "Pre-processing the model for quantization")
        prepared, pre_process = _prepared(src, Path(tmp), pre_processed)
        _require_op_types(prepared, op_types)
        batches, used, notes = calibration_batches(prepared, calibration, max_samples=max_samples)
        progress(30, f"Calibrating activation ranges on {used['samples']} samples ({method})")
        try:
            ort_quantize_static(
                str(prepared),
                str(dst),
                _array_reader(batches),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=activation,
                weight_type=weight,
                use_external_data_format=False,
                calibrate_method=calibrate_method,
                calibration_providers=["CPUExecutionProvider"],
                extra_options=dict(extra_options),
            )
        except Exception as exc:
            if "Too many bins" in str(exc):  # a tensor whose calibration values are (nearly) constant
                raise EngineError(
                    f"{method} calibration cannot build a histogram of a tensor whose values are "
                    "(nearly) constant on this data. Use method='minmax', or op_types=['MatMul', "
                    "'Gemm'] to calibrate fewer tensors."
                ) from exc
            raise EngineError(
                f"onnxruntime's quantize_static failed on this model: {first_line(exc)}. "
                "Check that the calibration arrays are real model inputs, or try quantize_dynamic."
            ) from exc
        recipe = {
            "method": "quantize_static",
            "format": "QDQ",
            "activation_type": activation_type,
            "weight_type": weight_type,
            "per_channel": bool(per_channel),
            "reduce_range": bool(reduce_range),
            "op_types": op_types,
            "calibration": {
                "method": method,
                **used,
                "options": CALIBRATOR_OPTIONS[method],
                "providers": ["CPUExecutionProvider"],
            },
            "extra_options": extra_options,
            "pre_process": pre_process,
            "tools": tool_versions(),
        }
        if activation_type == "quint8" and weight_type == "qint8" and not reduce_range:
            notes.append(
                "On x86 CPUs without VNNI, uint8 x int8 products can saturate; if accuracy drops, "
                "try reduce_range=True or weight_type='quint8' (onnxruntime's own advice)."
            )
        return check_output(dst, recipe, notes + _quantized_notes(dst), progress)


def prepare_for_quantization(src, dst):
    """onnxruntime's quant_pre_process (shape inference and light optimization) from ``src`` to
    ``dst``; returns what was done, for the recipe. Symbolic shape inference is tried first and
    skipped when it fails (BERT-like graphs need that)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    _no_partial_model_dumps()
    done = {
        "tool": "onnxruntime.quantization.quant_pre_process",
        "skip_optimization": False,
        "skip_onnx_shape": False,
        "skip_symbolic_shape": False,
    }
    src, dst = Path(src).resolve(), Path(dst).resolve()
    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        return done
    except Exception as first:
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        except Exception as exc:
            raise EngineError(
                f"Pre-processing for quantization failed: {first_line(exc)}. Check that the "
                "model passes the ONNX checker and loads in onnxruntime."
            ) from exc
        return {**done, "skip_symbolic_shape": True, "symbolic_shape_error": first_line(first)}


class _OnnxWithoutDumps:
    """The onnx module, except that save_model does nothing."""

    def __getattr__(self, name):
        import onnx

        return getattr(onnx, name)

    @staticmethod
    def save_model(*args, **kwargs):
        pass


def _no_partial_model_dumps():
    """When symbolic shape inference gives up, onnxruntime saves its partial model, weights and
    all, as sym_shape_infer_temp.onnx in the current directory (the worker's: gigabytes of
    litter, under a name two jobs would share). Its module gets an onnx that saves nothing."""
    from onnxruntime.tools import symbolic_shape_infer

    if not isinstance(symbolic_shape_infer.onnx, _OnnxWithoutDumps):
        symbolic_shape_infer.onnx = _OnnxWithoutDumps()


def calibration_batches(model_path, data, *, max_samples=128, batch_size=32):
    """Split ``data`` ({input name: array, samples on axis 0}) into feeds for the model at
    ``model_path``: arrays checked against the model's inputs and cast to their types. Returns
    (list of feed dicts, what was used for the recipe, notes)."""
    specs = model_input_specs(model_path)
    arrays = check_feeds(specs, data, what="calibration data")
    rows = len(next(iter(arrays.values())))
    fixed = specs[0]["shape"][0] if specs[0]["shape"] and isinstance(specs[0]["shape"][0], int) else None
    batch = fixed or max(1, min(batch_size, rows, max_samples))
    samples = min(rows, max_samples) // batch * batch if fixed else min(rows, max_samples)
    if samples == 0:
        raise EngineError(
            f"The model takes batches of exactly {batch} samples but the calibration data has "
            f"{rows} rows: give at least {batch}."
        )
    batches = [
        {name: array[start : start + batch] for name, array in arrays.items()} for start in range(0, samples, batch)
    ]
    notes = [f"Calibrated on {samples} of {rows} samples, in batches of {batch}."]
    ignored = sorted(set(data) - set(arrays))
    if ignored:
        notes.append(f"Calibration arrays that are not model inputs were ignored: {', '.join(ignored)}.")
    return (
        batches,
        {"inputs": sorted(arrays), "samples": samples, "batch_size": batch, "max_samples": max_samples},
        notes,
    )


def _array_reader(batches):
    from onnxruntime.quantization import CalibrationDataReader

    class ArrayReader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(batches)

        def get_next(self):
            return next(self._batches, None)

    return ArrayReader()


# --- fp16 and graph optimization -------------------------------------------------------------


def convert_fp16(src, dst, *, keep_io_types=True, progress=no_progress):
    """Float32 weights and computation to float16. With ``keep_io_types`` the inputs and outputs
    stay float32 (Cast nodes at the edges), so callers feed the same arrays as before."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST
    from onnxruntime.transformers.onnx_model import OnnxModel

    _flags(keep_io_types=keep_io_types)
    src, dst = source_and_output(src, dst)
    options = {
        "keep_io_types": bool(keep_io_types),
        "use_symbolic_shape_infer": True,
        "op_block_list": sorted(DEFAULT_OP_BLOCK_LIST),
        "min_positive_val": 1e-7,
        "max_finite_val": 1e4,
        "force_fp16_initializers": False,
    }
    with removed_on_error(dst):
        progress(10, "Loading the model")
        model = onnx.load(str(src))
        floats = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
        if not floats:
            raise EngineError("The model has no float32 weights to convert to float16.")
        clamped = sum(int((np.abs(onnx.numpy_helper.to_array(t)) > options["max_finite_val"]).any()) for t in floats)
        progress(30, "Converting float32 to float16")
        try:
            wrapped = OnnxModel(model)
            wrapped.convert_float_to_float16(**options)
            wrapped.save_model_to_file(str(dst), use_external_data_format=False)
        except Exception as exc:
            raise EngineError(f"The float16 conversion failed: {first_line(exc)}") from exc
        converter = "onnxruntime.transformers.onnx_model.OnnxModel.convert_float_to_float16"
        recipe = {"method": "convert_fp16", "converter": converter, **options, "tools": tool_versions()}
        notes = [
            (
                "On CPU, onnxruntime has few float16 kernels: expect a file about half the size but no speed-up "
                "(often a slow-down); float16 pays on GPU targets."
            )
        ]
        if clamped:
            notes.append(
                f"{clamped} weight tensor(s) hold values beyond ±{options['max_finite_val']:g}, "
                "which the conversion clamps: check the accuracy."
            )
        return check_output(dst, recipe, notes, progress)


def optimize_graph(src, dst, *, level="basic", progress=no_progress):
    """onnxruntime's graph optimizations (constant folding, fusions) applied once and saved.

    "basic" keeps standard ONNX operators; "extended" adds onnxruntime-only fused operators;
    "all" also adds layout changes tied to this CPU.
    """
    import onnx
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    _choice("level", level, OPTIMIZATION_LEVELS)
    src, dst = source_and_output(src, dst)
    with removed_on_error(dst):
        progress(10, f"Optimizing the graph ({level})")
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[level]
        options.optimized_model_filepath = str(dst)
        options.log_severity_level = 3  # the "hardware specific" warning for "all" is in the notes instead
        try:
            ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EngineError(f"onnxruntime cannot load the model to optimize it: {first_line(exc)}") from exc
        before = len(onnx.load(str(src), load_external_data=False).graph.node)
        after = onnx.load(str(dst), load_external_data=False).graph
        custom = sorted({f"{node.domain}.{node.op_type}" for node in after.node if node.domain not in ("", "ai.onnx")})
        recipe = {
            "method": "optimize_graph",
            "level": level,
            "providers": ["CPUExecutionProvider"],
            "tools": tool_versions(),
        }
        notes = [
            f"{before} nodes before, {len(after.node)} after.",
            (
                "onnxruntime applies these optimizations itself when it loads a model, so inference is not "
                "faster in onnxruntime; what is saved is the optimization time at session start."
            ),
        ]
        if custom:
            notes.append(f"onnxruntime-only operators: {', '.join(custom)}; the model runs in onnxruntime only.")
        if level == "all":
            notes.append(
                "Level 'all' may include layout changes specific to this CPU: use the file on the same "
                "kind of machine only."
            )
        return check_output(dst, recipe, notes, progress)


# --- shared helpers --------------------------------------------------------------------------


def _choice(name, value, allowed):
    if value not in allowed:
        raise EngineError(f"Unknown {name} {value!r}: use one of {', '.join(map(repr, allowed))}.")
    return value


def _flags(**flags):
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise EngineError(f"{name} must be true or false, not {value!r}.")


def _quant_type(name):
    from onnxruntime.quantization import QuantType

    return {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[name]


def _op_types(op_types):
    if op_types is None:
        return None
    if isinstance(op_types, str) or not all(isinstance(t, str) and t for t in op_types) or not op_types:
        raise EngineError(
            f"op_types must be a non-empty list of ONNX operator names such as ['MatMul', 'Gemm'], "
            f"or None for all, not {op_types!r}."
        )
    return list(op_types)


def _prepared(src, tmp, pre_processed):
    if pre_processed:
        return src, {"tool": "onnxruntime.quantization.quant_pre_process", "done_by": "caller"}
    prepared = tmp / "prepared.onnx"
    return prepared, prepare_for_quantization(src, prepared)


def _require_op_types(model_path, op_types):
    if op_types is None:
        return
    import onnx

    present = {node.op_type for node in onnx.load(str(model_path), load_external_data=False).graph.node}
    if not present & set(op_types):
        raise EngineError(
            f"The model has no operator of type {', '.join(op_types)}, so nothing would be quantized. "
            f"It has: {', '.join(sorted(present))}."
        )


def _quantized_notes(dst):
    """Which operator types were quantized; an error when nothing was."""
    import onnx

    graph = onnx.load(str(dst), load_external_data=False).graph
    int8 = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    weights = [t for t in graph.initializer if t.data_type in int8 and len(t.dims) >= 2]
    int8_names = {t.name for t in graph.initializer if t.data_type in int8}
    producers = {output: node.op_type for node in graph.node for output in node.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    integer_ops = {
        "MatMulInteger": "MatMul",
        "DynamicQuantizeMatMul": "MatMul",
        "ConvInteger": "Conv",
        "MatMulIntegerToFloat": "MatMul",
        "DynamicQuantizeLSTM": "LSTM",
    }
    types = set()
    for node in graph.node:
        if node.op_type in integer_ops:
            types.add(integer_ops[node.op_type])
        elif node.op_type.startswith("QLinear"):
            types.add(node.op_type[len("QLinear") :])
        elif node.op_type not in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
            # QDQ: dequantized inputs and a requantized output; or an op reading int8 weights (Gather)
            qdq = any(producers.get(name) == "DequantizeLinear" for name in node.input) and any(
                "QuantizeLinear" in consumers.get(name, ()) for name in node.output
            )
            if qdq or int8_names.intersection(node.input):
                types.add(node.op_type)
    if not types and not weights:
        raise EngineError(
            "Nothing was quantized: the model has no operator that onnxruntime quantizes "
            "(such as MatMul, Gemm or Conv with constant weights)."
        )
    return [
        (
            f"{len(weights)} weight tensor(s) stored as 8-bit integers; quantized operator types: "
            f"{', '.join(sorted(types)) or 'none'}."
        )
    ]
