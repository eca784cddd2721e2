"""Global magnitude pruning of an ONNX model's weight matrices. Plain Python: no Django.

The smallest-magnitude weights across all MatMul / Gemm / Conv weight initializers are set to
zero, no fine-tuning. The file stays dense: it is the same size, and dense kernels run no faster.
What shrinks is the compressed size (for storage and transfer), and the zeros are a starting point
for sparse runtimes or fine-tuning elsewhere. Sizes in bytes, sparsities as fractions.
"""

import zlib
from dataclasses import dataclass, field

import numpy as np

from .errors import EngineError
from .progress import no_progress
from .output import check_output, removed_on_error, source_and_output, tool_versions

# Which input of each operator is its weight.
WEIGHT_INPUTS = {"MatMul": (1,), "Gemm": (1,), "Conv": (1,), "ConvTranspose": (1,)}


@dataclass
class PruneResult:
    output_path: str
    size_bytes: int
    compressed_size_bytes: int  # zlib level 6 of the whole file
    sparsity: float  # achieved share of zeros over the pruned tensors
    tensors_pruned: int
    recipe: dict
    notes: list = field(default_factory=list)

    @property
    def summary(self):
        """Figures for the job's result."""
        return {
            "sparsity": self.sparsity,
            "tensors_pruned": self.tensors_pruned,
            "compressed_size_bytes": self.compressed_size_bytes,
        }


def prune_magnitude(src, dst, *, sparsity=0.5, min_elements=1024, progress=no_progress):
    """Zero the ``sparsity`` share of smallest-magnitude weights, ranked globally over the float
    weight initializers of MatMul / Gemm / Conv that have at least ``min_elements`` values (small
    tensors such as a first convolution or a classifier head are left whole). Biases and
    normalization parameters are never touched."""
    import onnx
    from onnx import numpy_helper

    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 < sparsity < 1:
        raise EngineError(
            f"sparsity must be a fraction between 0 and 1 (0.5 zeroes half the weights), not {sparsity!r}."
        )
    if isinstance(min_elements, bool) or not isinstance(min_elements, int) or min_elements < 1:
        raise EngineError(f"min_elements must be a whole number of at least 1, not {min_elements!r}.")
    src, dst = source_and_output(src, dst)
    with removed_on_error(dst):
        progress(5, "Loading the model")
        model = onnx.load(str(src))
        candidates = _weight_names(model.graph)
        floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)
        tensors = [
            t
            for t in model.graph.initializer
            if t.name in candidates and t.data_type in floats and int(np.prod(t.dims)) >= min_elements
        ]
        if not tensors:
            raise EngineError(
                f"No float weight of MatMul, Gemm or Conv has at least {min_elements} values, so "
                "nothing can be pruned. Lower min_elements, or prune the model before quantizing it."
            )

        progress(30, f"Ranking {sum(int(np.prod(t.dims)) for t in tensors):,} weights by magnitude")
        arrays = {t.name: numpy_helper.to_array(t) for t in tensors}
        magnitudes = np.concatenate([np.abs(a.astype(np.float32)).ravel() for a in arrays.values()])
        count = round(sparsity * magnitudes.size)
        # Exactly ``count`` zeros globally, ties at the threshold broken by position.
        order = np.argpartition(magnitudes, count - 1)[:count] if count else np.array([], dtype=np.int64)
        mask = np.ones(magnitudes.size, dtype=bool)
        mask[order] = False
        threshold = float(magnitudes[order].max()) if count else 0.0
        del magnitudes

        progress(60, "Writing the pruned model")
        per_tensor, start, zeros, total = {}, 0, 0, 0
        for tensor in tensors:
            array = arrays[tensor.name]
            keep = mask[start : start + array.size].reshape(array.shape)
            start += array.size
            pruned = np.where(keep, array, np.zeros((), dtype=array.dtype))
            tensor.CopyFrom(numpy_helper.from_array(pruned, tensor.name))
            per_tensor[tensor.name] = float((pruned == 0).mean())
            zeros += int((pruned == 0).sum())
            total += pruned.size
        try:
            onnx.save(model, str(dst), save_as_external_data=False)
        except (ValueError, OSError) as exc:
            raise EngineError(f"The pruned model cannot be written as one file: {exc}") from exc

        achieved = zeros / total
        recipe = {
            "method": "prune_magnitude",
            "scope": "global",
            "sparsity": float(sparsity),
            "min_elements": min_elements,
            "op_types": sorted(WEIGHT_INPUTS),
            "threshold": threshold,
            "tensors": sorted(per_tensor),
            "fine_tuned": False,
            "tools": tool_versions(),
        }
        low, high = min(per_tensor.items(), key=lambda kv: kv[1]), max(per_tensor.items(), key=lambda kv: kv[1])
        skipped = len(candidates) - len(tensors)
        notes = [
            (
                "The file stays dense: same size, and dense kernels run no faster. Only the compressed size shrinks "
                "(storage and transfer); a speed-up needs a sparse runtime or structured pruning."
            ),
            (
                f"{len(tensors)} tensor(s) pruned to {achieved:.1%} zeros overall; per tensor from {low[1]:.1%} "
                f"({low[0]}) to {high[1]:.1%} ({high[0]})."
            ),
            "No fine-tuning was done: measure the accuracy before using this version.",
        ]
        if skipped:
            notes.append(f"{skipped} smaller weight tensor(s) under {min_elements} values were left whole.")
        if high[1] > 0.95:
            notes.append(
                f"{high[0]} lost {high[1]:.0%} of its weights: global ranking can nearly empty a layer; "
                "check the accuracy or lower the sparsity."
            )
        result = check_output(dst, recipe, notes, progress)
    return PruneResult(
        output_path=result.output_path,
        size_bytes=result.size_bytes,
        compressed_size_bytes=compressed_size(dst),
        sparsity=achieved,
        tensors_pruned=len(tensors),
        recipe=recipe,
        notes=notes,
    )


def compressed_size(path, *, level=6):
    """Bytes of the file after zlib compression at ``level``, streamed (flat memory)."""
    compressor = zlib.compressobj(level)
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            size += len(compressor.compress(chunk))
    return size + len(compressor.flush())


def _weight_names(graph):
    """Initializer names used only as weights of the operators in WEIGHT_INPUTS (a tensor shared
    with another use, e.g. tied embeddings read by Gather, is left alone)."""
    initializers = {t.name for t in graph.initializer}
    weights, other = set(), set()
    for node in graph.node:
        for index, name in enumerate(node.input):
            if name not in initializers:
                continue
            if index in WEIGHT_INPUTS.get(node.op_type, ()):
                weights.add(name)
            else:
                other.add(name)
    return weights - other
