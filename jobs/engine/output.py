"""What every compression engine shares: the output file checked and described, no half-written
file left behind, and the tool versions a recipe records. Plain Python: no Django."""

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EngineError, first_line


@dataclass
class CompressionResult:
    output_path: str
    size_bytes: int
    recipe: dict
    notes: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)  # method-specific figures for the job's result


def tool_versions():
    import onnx
    import onnxruntime

    return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def source_and_output(src, dst):
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise EngineError(f"Model file not found: {src}")
    if src.resolve() == dst.resolve():
        raise EngineError("The output path must differ from the source model's path.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    return src, dst


@contextlib.contextmanager
def removed_on_error(dst):
    """No half-written output is left behind when an engine fails."""
    try:
        yield
    except BaseException:
        Path(dst).unlink(missing_ok=True)
        raise


def check_output(dst, recipe, notes, progress):
    """Check the written file (one file, ONNX checker, onnxruntime session) and describe it."""
    import onnx
    import onnxruntime as ort

    progress(85, "Checking the output")
    model = onnx.load(str(dst), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise EngineError(
            "The output was written with external data; it must be a single file. "
            "Models over 2 GB are not supported by this engine."
        )
    try:
        onnx.checker.check_model(str(dst), full_check=True)
    except Exception as exc:
        raise EngineError(
            f"The output fails the ONNX checker: {first_line(exc)}. Try other parameters or another method."
        ) from exc
    try:
        ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise EngineError(
            f"onnxruntime cannot load the output: {first_line(exc)}. Try other parameters or another method."
        ) from exc
    progress(100, "Done")
    return CompressionResult(output_path=str(dst), size_bytes=os.path.getsize(dst), recipe=recipe, notes=notes)
