"""Convert a TorchScript archive or a torch.export program (.pt2) to ONNX, check the result
with the ONNX checker and prove it computes what the source computes. Plain Python: no Django.

TorchScript goes through the legacy (TorchScript-based) exporter when the torch.export-based
one refuses a ScriptModule, which torch 2.13 does; the recipe records which exporter ran.
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import EngineError, first_line
from .progress import no_progress
from .validate import example_inputs, import_torch

MIN_OPSET = 17
PARITY_TOLERANCE = 1e-3
# Above this, protobuf cannot hold the model in one file and the weights go to a .data file.
SINGLE_FILE_LIMIT = 1_800_000_000
# Batch sizes the parity check uses: the traced one, then others to prove the dynamic axis.
EXAMPLE_BATCH = 2
PARITY_BATCHES = (EXAMPLE_BATCH, 3, 5, 4, 7, 6, 8)


@dataclass
class ExportResult:
    output_path: str
    size_bytes: int  # the .onnx file plus its external data, if any
    opset: int
    parity_max_abs_diff: float
    input_names: list
    output_names: list
    recipe: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def export_to_onnx(
    src, fmt, dst, *, inputs, opset=18, dynamic_batch=True, parity_samples=3, output_names=None, progress=no_progress
):
    """Export the model at ``src`` (``fmt`` "torchscript" or "exported_program") to ONNX at ``dst``.

    ``inputs`` is the source's signature inputs (name, dtype, shape; non-int dims are dynamic).
    With ``dynamic_batch`` axis 0 of every input and output is dynamic. ``output_names``
    defaults to ``output_<i>`` for TorchScript and the program's own names for .pt2.
    The parity check runs source and ONNX (onnxruntime, CPU) on ``parity_samples`` generated
    inputs of different batch sizes and fails above 1e-3 max abs difference.
    Raises EngineError with a reason when loading, export, the checker or parity fails.
    """
    if fmt not in ("torchscript", "exported_program"):
        raise EngineError(f"Cannot export format {fmt!r} to ONNX; give a TorchScript archive or a .pt2 program.")
    if opset < MIN_OPSET:
        raise EngineError(f"Opset {opset} is too old; use {MIN_OPSET} or later.")
    if not inputs:
        raise EngineError("The signature has no inputs; the model must be inspected before export.")
    torch = import_torch()
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    input_names = [spec["name"] for spec in inputs]
    example_batch = EXAMPLE_BATCH if dynamic_batch else _fixed_batch(inputs)
    example = _torch_inputs(torch, inputs, example_batch, seed=0)
    recipe = {
        "source_format": fmt,
        "opset": opset,
        "dynamic_batch": dynamic_batch,
        "example_batch": example_batch,
        "torch": torch.__version__,
    }
    notes = []

    progress(5, "Loading the source model")
    if fmt == "torchscript":
        reference, output_names = _export_torchscript(
            torch, src, dst, example, input_names, output_names, opset, dynamic_batch, recipe, notes, progress
        )
    else:
        reference, output_names = _export_program(
            torch, src, dst, example, input_names, output_names, opset, dynamic_batch, recipe, notes, progress
        )

    progress(60, "Checking the ONNX model")
    import onnx

    try:
        onnx.checker.check_model(str(dst), full_check=True)
    except Exception as exc:
        raise EngineError(f"The exported model fails the ONNX checker: {first_line(exc)}") from exc
    model = onnx.load(str(dst), load_external_data=False)
    actual_opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    output_names = [o.name for o in model.graph.output]
    recipe["output_names"] = output_names
    recipe["onnx"] = onnx.__version__

    progress(70, "Comparing torch and onnxruntime outputs")
    batches = PARITY_BATCHES[: max(1, parity_samples)] if dynamic_batch else (example_batch,) * max(1, parity_samples)
    diff = _parity(torch, reference, dst, inputs, batches)
    recipe["parity_batches"] = list(batches)
    notes.append(f"Parity on batches {', '.join(map(str, batches))}: max abs difference {diff:.3g}.")
    if diff > PARITY_TOLERANCE:
        raise EngineError(
            f"The ONNX model disagrees with the source: max abs difference {diff:.3g} (tolerance {PARITY_TOLERANCE:g})."
        )
    progress(100, "Exported")
    size = dst.stat().st_size + sum(p.stat().st_size for p in _external_files(dst, model))
    return ExportResult(str(dst), size, int(actual_opset), float(diff), input_names, output_names, recipe, notes)


# --- exporters -------------------------------------------------------------------------------


def _export_torchscript(
    torch, src, dst, example, input_names, output_names, opset, dynamic_batch, recipe, notes, progress
):
    try:
        module = torch.jit.load(str(src), map_location="cpu")
    except Exception as exc:
        raise EngineError(f"torch.jit.load cannot load the archive: {first_line(exc)}") from exc
    module.eval()
    with torch.no_grad():
        try:
            outputs = _flatten(torch, module(*example))
        except Exception as exc:
            raise EngineError(f"The TorchScript module fails on generated inputs: {first_line(exc)}") from exc
    output_names = list(output_names or [f"output_{i}" for i in range(len(outputs))])
    external = _external_data(torch, module, notes)

    # Both exporters take these; each adds its own way of saying which axes are dynamic.
    arguments = dict(verbose=False, opset_version=opset, input_names=input_names, output_names=output_names)
    progress(20, "Exporting with the torch.export-based exporter")
    try:
        _quietly(
            torch.onnx.export,
            module,
            example,
            str(dst),
            dynamo=True,
            external_data=external,
            dynamic_shapes=_dynamic_shapes(torch, example) if dynamic_batch else None,
            **arguments,
        )
        recipe["exporter"] = "dynamo"
    except Exception as exc:  # the exporter raises many types; any of them means "try the legacy one"
        recipe["dynamo_error"] = _reason(exc)
        progress(35, "Exporting with the TorchScript-based exporter")
        axes = {name: {0: "batch"} for name in input_names + output_names} if dynamic_batch else None
        try:
            _quietly(
                torch.onnx.export,
                module,
                example,
                str(dst),
                dynamo=False,
                dynamic_axes=axes,
                **arguments,
            )
        except Exception as legacy_exc:
            raise EngineError(
                f"torch.onnx.export failed: {first_line(legacy_exc)} "
                f"(the torch.export-based exporter said: {recipe['dynamo_error']})"
            ) from legacy_exc
        recipe["exporter"] = "torchscript"
        notes.append(
            "Exported with the TorchScript-based exporter (dynamo=False): "
            "the torch.export-based exporter does not take a ScriptModule."
        )
    return module, output_names


def _export_program(torch, src, dst, example, input_names, output_names, opset, dynamic_batch, recipe, notes, progress):
    try:
        program = torch.export.load(str(src))
    except Exception as exc:
        raise EngineError(f"torch.export.load cannot load the program: {first_line(exc)}") from exc
    if dynamic_batch and not _batch_is_dynamic(torch, program):
        # A program saved with a fixed batch is traced again, with a dynamic first axis,
        # from its own graph (guards off: they pin the saved sizes).
        progress(15, "Re-exporting the program with a dynamic batch axis")
        try:
            program = torch.export.export(
                program.module(check_guards=False), example, dynamic_shapes=_dynamic_shapes(torch, example)
            )
        except Exception as exc:
            raise EngineError(
                "The program was exported with a fixed batch size and cannot be given a dynamic "
                f"batch axis ({first_line(exc)}). Export it with dynamic_shapes, or convert "
                "without a dynamic batch."
            ) from exc
        recipe["reexported_dynamic_batch"] = True
        notes.append("The program had a fixed batch size; it was re-exported with a dynamic batch axis.")
    external = _external_data(torch, program, notes)

    progress(25, "Exporting with the torch.export-based exporter")
    options = {
        "dynamo": True,
        "verbose": False,
        "opset_version": opset,
        "input_names": input_names,
        "output_names": output_names,
        "external_data": external,
    }
    try:
        # dynamic_shapes only names the program's own dynamic axis 0 "batch" (instead of s31).
        _quietly(
            torch.onnx.export,
            program,
            (),
            str(dst),
            **options,
            dynamic_shapes=_dynamic_shapes(torch, example) if dynamic_batch else None,
        )
    except Exception:
        try:
            _quietly(torch.onnx.export, program, (), str(dst), **options)
        except Exception as exc:
            raise EngineError(f"torch.onnx.export failed: {_reason(exc)}") from exc
    recipe["exporter"] = "dynamo"
    return program.module(), output_names


def _batch_is_dynamic(torch, program):
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    for name in program.graph_signature.user_inputs:
        value = placeholders[name].meta.get("val")
        if isinstance(value, torch.Tensor) and value.dim() > 0 and isinstance(value.shape[0], int):
            return False
    return True


def _dynamic_shapes(torch, example):
    batch = torch.export.Dim("batch")
    return tuple({0: batch} if tensor.dim() > 0 else None for tensor in example)


def _external_data(torch, model, notes):
    """Weights go to a side file only when one protobuf could not hold them."""
    state = model.state_dict() if callable(model.state_dict) else model.state_dict  # a property on programs
    size = sum(t.numel() * t.element_size() for t in state.values() if isinstance(t, torch.Tensor))
    if size > SINGLE_FILE_LIMIT:
        notes.append(f"Weights of {size / 1e9:.1f} GB are written to an external data file beside the .onnx.")
        return True
    return False


def _quietly(function, *args, **kwargs):
    # The exporters warn about deprecations and missing torchvision ops on every call.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


# --- parity ----------------------------------------------------------------------------------


def _parity(torch, reference, path, inputs, batches):
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EngineError(f"onnxruntime cannot load the exported model: {first_line(exc)}") from exc
    worst = 0.0
    for index, batch in enumerate(batches):
        feeds = example_inputs(inputs, batch=batch, seed=index)
        with torch.no_grad():
            try:
                expected = [
                    t.numpy() for t in _flatten(torch, reference(*[torch.from_numpy(feeds[s["name"]]) for s in inputs]))
                ]
            except Exception as exc:
                raise EngineError(f"The source model fails at batch {batch}: {first_line(exc)}") from exc
        try:
            actual = session.run(None, feeds)
        except Exception as exc:
            raise EngineError(f"The exported model fails at batch {batch}: {first_line(exc)}") from exc
        if len(actual) != len(expected):
            raise EngineError(f"The exported model has {len(actual)} outputs, the source {len(expected)}.")
        for want, got in zip(expected, actual):
            if want.shape != got.shape:
                raise EngineError(
                    f"At batch {batch} the exported model returns shape {list(got.shape)}, "
                    f"the source {list(want.shape)}."
                )
            want64, got64 = want.astype(np.float64), got.astype(np.float64)
            if not np.array_equal(np.isfinite(want64), np.isfinite(got64)):
                raise EngineError(f"At batch {batch} NaN or infinity appear in one output and not the other.")
            finite = np.isfinite(want64)
            if finite.any():
                worst = max(worst, float(np.max(np.abs(want64[finite] - got64[finite]))))
    return worst


# --- helpers ---------------------------------------------------------------------------------


def _fixed_batch(inputs):
    for spec in inputs:
        shape = spec.get("shape") or []
        if shape and isinstance(shape[0], int):
            return shape[0]
    return 1


def _torch_inputs(torch, inputs, batch, seed):
    for spec in inputs:
        if spec.get("shape") is None:
            raise EngineError(
                f"Input {spec['name']!r} has no known shape; give its shape in the signature "
                '(metadata {"input_shapes": ...}) before converting.'
            )
    feeds = example_inputs(inputs, batch=batch, seed=seed)
    return tuple(torch.from_numpy(feeds[spec["name"]]) for spec in inputs)


def _flatten(torch, result):
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (list, tuple)):
        return [t for item in result for t in _flatten(torch, item)]
    if isinstance(result, dict):
        return _flatten(torch, list(result.values()))
    raise EngineError(f"forward() returned {type(result).__name__}; Berth exports tensors (or tuples of tensors).")


def _external_files(path, model):
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    names = {ExternalDataInfo(t).location for t in model.graph.initializer if uses_external_data(t)}
    return [path.parent / name for name in sorted(names) if (path.parent / name).is_file()]


def _reason(exc):
    """The exporter's message is a long report; keep its exception summary."""
    text = str(exc)
    marker = "## Exception summary"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:500] if lines else type(exc).__name__
