"""Load a model safely, read its input/output signature and run one inference on generated
inputs. Plain Python: no Django.

The signature is ``{"inputs": [...], "outputs": [...]}``, each tensor
``{"name", "dtype", "shape", "dynamic_axes"}`` where a shape entry is an int, a symbol name
(a dynamic axis) or None (unknown).
"""

import os
import time
from dataclasses import dataclass, field

import numpy as np

from berth.core.dtypes import ORT_TYPES

from .errors import EngineError, first_line
from .progress import no_progress


class ModelInvalid(EngineError):
    """The model cannot be used; the message says why."""


@dataclass
class Inspection:
    io_signature: dict
    inference_ms: float | None
    notes: list = field(default_factory=list)

    def summary(self):
        """One line for the version page: the test inference's time and the notes."""
        parts = list(self.notes)
        if self.inference_ms is not None:
            parts.insert(0, f"Test inference on generated inputs: {self.inference_ms:.1f} ms (cold).")
        return " ".join(parts)


def inspect_model(path, fmt, *, input_shapes=None, progress=no_progress):
    """Inspect the model at ``path`` of format ``fmt`` (onnx / torchscript / exported_program).

    ``input_shapes`` ({input name: [dims]}) fills in shapes a TorchScript file does not record.
    Raises ModelInvalid with a reason a user can act on.
    """
    inspectors = {
        "onnx": _inspect_onnx,
        "torchscript": _inspect_torchscript,
        "exported_program": _inspect_exported_program,
    }
    if fmt not in inspectors:
        raise ModelInvalid(f"Unknown format {fmt!r}.")
    return inspectors[fmt](path, input_shapes or {}, progress)


def _tensor(name, dtype, shape):
    return {
        "name": name,
        "dtype": dtype,
        "shape": shape,
        "dynamic_axes": [i for i, d in enumerate(shape) if not isinstance(d, int)] if shape is not None else [],
    }


def example_inputs(inputs, *, batch=1, other_dynamic=16, seed=0):
    """Generated inputs for a signature: random normal floats, ones for integers and booleans,
    dynamic axes set to ``batch`` (axis 0) or ``other_dynamic``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        shape = [
            d if isinstance(d, int) else (batch if axis == 0 else other_dynamic)
            for axis, d in enumerate(spec["shape"] or [])
        ]
        dtype = np.dtype(spec["dtype"])
        if dtype.kind == "f":
            feeds[spec["name"]] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[spec["name"]] = np.ones(shape, dtype=dtype)
    return feeds


# --- ONNX ------------------------------------------------------------------------------------


def _ort_value_info(arg):
    if arg.type not in ORT_TYPES:
        raise ModelInvalid(f"{arg.name!r} has type {arg.type}; Berth handles numeric and boolean tensors only.")
    shape = [d if isinstance(d, int) else (d or None) for d in arg.shape] if arg.shape is not None else None
    return _tensor(arg.name, ORT_TYPES[arg.type], shape)


def _inspect_onnx(path, input_shapes, progress):
    """Structure walk (flat memory), the ONNX checker on the path (so files near 2 GB work),
    then onnxruntime: the signature is what the runtime will actually expect."""
    import onnx
    import onnxruntime as ort

    from berth.core.sniff import OnnxWireError, walk_onnx

    progress(10, "Checking the ONNX structure")
    try:
        structure = walk_onnx(path)
    except OnnxWireError as exc:
        raise ModelInvalid(f"The ONNX file cannot be parsed: {exc}") from exc
    if structure["external_tensors"]:
        raise ModelInvalid(
            "The ONNX model references external data files, which a single-file artifact does not carry."
        )
    try:
        onnx.checker.check_model(path)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise ModelInvalid(f"The ONNX checker rejects the model: {first_line(exc)}") from exc

    progress(40, "Creating an onnxruntime session")
    try:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
        raise ModelInvalid(f"onnxruntime cannot load the model: {first_line(exc)}") from exc
    signature = {
        "inputs": [_ort_value_info(arg) for arg in session.get_inputs()],
        "outputs": [_ort_value_info(arg) for arg in session.get_outputs()],
    }
    progress(60, "Running one inference on generated inputs")
    feeds = example_inputs(signature["inputs"])
    started = time.perf_counter()
    try:
        outputs = session.run(None, feeds)
    except Exception as exc:
        raise ModelInvalid(
            f"Test inference failed on generated inputs of shapes "
            f"{ {k: list(v.shape) for k, v in feeds.items()} }: {first_line(exc)}"
        ) from exc
    elapsed_ms = (time.perf_counter() - started) * 1000
    notes = [f"{structure['nodes']} nodes, {structure['initializers']} initializers."]
    return Inspection(signature, elapsed_ms, notes + _finiteness_notes(signature["outputs"], outputs))


# --- TorchScript and torch.export -----------------------------------------------------------


def import_torch():
    # Defence in depth: any torch.load reached while loading an upload is forced to
    # weights_only=True, even where torch's own loader asks for full unpickling.
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    import torch

    return torch


def _torch_dtype_name(torch, dtype):
    return str(dtype).replace("torch.", "") if dtype is not None else None


def _inspect_torchscript(path, input_shapes, progress):
    torch = import_torch()
    progress(10, "Loading the TorchScript archive")
    try:
        module = torch.jit.load(path, map_location="cpu", _restore_shapes=True)
    except Exception as exc:
        raise ModelInvalid(f"torch.jit.load cannot load the archive: {first_line(exc)}") from exc
    module.eval()
    inputs = []
    notes = []
    for value in list(module.graph.inputs())[1:]:  # the first input is the module itself
        name = value.debugName().split(".")[0]
        value_type = value.type()
        if not isinstance(value_type, torch._C.TensorType):
            raise ModelInvalid(f"forward() takes {name!r} of type {value_type}; Berth handles tensor inputs only.")
        sizes = value_type.sizes()
        dtype = _torch_dtype_name(torch, value_type.dtype())
        if name in input_shapes:
            sizes = list(input_shapes[name])
            notes.append(f"shape of {name!r} from metadata input_shapes")
        elif sizes is not None:
            notes.append(f"shape of {name!r} as recorded when the module was traced")
        inputs.append(_tensor(name, dtype or "float32", list(sizes) if sizes is not None else None))

    missing = [spec["name"] for spec in inputs if spec["shape"] is None]
    if missing:
        signature = {"inputs": inputs, "outputs": []}
        notes.append(
            f"Test inference skipped: the archive records no shape for {', '.join(missing)} (a scripted module). "
            'Register with metadata {"input_shapes": {"' + missing[0] + '": [1, ...]}} to enable it.'
        )
        return Inspection(signature, None, notes)

    progress(50, "Running one inference on generated inputs")
    feeds = example_inputs(inputs)
    started = time.perf_counter()
    try:
        with torch.no_grad():
            result = module(*[torch.from_numpy(feeds[spec["name"]]) for spec in inputs])
    except Exception as exc:
        raise ModelInvalid(f"Test inference failed on generated inputs: {first_line(exc)}") from exc
    elapsed_ms = (time.perf_counter() - started) * 1000
    outputs = _flatten_outputs(torch, result)
    signature = {
        "inputs": inputs,
        "outputs": [
            _tensor(f"output_{i}", _torch_dtype_name(torch, t.dtype), list(t.shape)) for i, t in enumerate(outputs)
        ],
    }
    notes += _finiteness_notes(signature["outputs"], [t.numpy() for t in outputs])
    return Inspection(signature, elapsed_ms, notes)


def _inspect_exported_program(path, input_shapes, progress):
    torch = import_torch()
    progress(10, "Loading the exported program")
    try:
        program = torch.export.load(path)
    except Exception as exc:
        raise ModelInvalid(f"torch.export.load cannot load the archive: {first_line(exc)}") from exc
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    inputs = []
    for name in program.graph_signature.user_inputs:
        value = placeholders[name].meta.get("val")
        if not isinstance(value, torch.Tensor):
            raise ModelInvalid(f"Input {name!r} is not a tensor; Berth handles tensor inputs only.")
        shape = [int(d) if isinstance(d, int) else str(d) for d in value.shape]
        inputs.append(_tensor(name, _torch_dtype_name(torch, value.dtype), shape))

    progress(50, "Running one inference on generated inputs")
    # A dynamic axis exported with a minimum (often 2: export specialises 0 and 1) must be fed
    # a size inside its range.
    lowest = max([2] + [int(r.lower) for r in program.range_constraints.values() if str(r.lower).isdigit()])
    feeds = example_inputs(inputs, batch=lowest, other_dynamic=max(16, lowest))
    started = time.perf_counter()
    try:
        with torch.no_grad():
            result = program.module()(*[torch.from_numpy(feeds[spec["name"]]) for spec in inputs])
    except Exception as exc:
        raise ModelInvalid(f"Test inference failed on generated inputs: {first_line(exc)}") from exc
    elapsed_ms = (time.perf_counter() - started) * 1000
    outputs = _flatten_outputs(torch, result)
    output_node = next(node for node in program.graph.nodes if node.op == "output")
    output_values = (
        [getattr(arg, "meta", {}).get("val") for arg in output_node.args[0]][-len(outputs) :] if outputs else []
    )
    names = list(program.graph_signature.user_outputs)
    signature = {"inputs": inputs, "outputs": []}
    for i, tensor in enumerate(outputs):
        declared = output_values[i] if i < len(output_values) else None
        shape = (
            [int(d) if isinstance(d, int) else str(d) for d in declared.shape]
            if isinstance(declared, torch.Tensor)
            else list(tensor.shape)
        )
        name = names[i] if i < len(names) else f"output_{i}"
        signature["outputs"].append(_tensor(name, _torch_dtype_name(torch, tensor.dtype), shape))
    return Inspection(signature, elapsed_ms, _finiteness_notes(signature["outputs"], [t.numpy() for t in outputs]))


def _flatten_outputs(torch, result):
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (list, tuple)):
        flat = []
        for item in result:
            flat.extend(_flatten_outputs(torch, item))
        return flat
    if isinstance(result, dict):
        return _flatten_outputs(torch, list(result.values()))
    raise ModelInvalid(f"forward() returned {type(result).__name__}; Berth handles tensors (or tuples of tensors).")


def _finiteness_notes(specs, arrays):
    """Random inputs can legitimately overflow a model, so non-finite outputs are a warning."""
    return [
        f"Warning: output {spec['name']!r} contains NaN or infinity on generated (random normal) inputs."
        for spec, array in zip(specs, arrays)
        if np.asarray(array).dtype.kind == "f" and not np.isfinite(np.asarray(array)).all()
    ]
