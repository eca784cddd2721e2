"""Weight-only int4: the float weights of MatMul nodes stored as 4-bit blocks with a scale (and a
zero point unless symmetric) per block, run by onnxruntime's MatMulNBits kernel, which
dequantizes on the fly. Activations stay float32, so it needs no calibration data; it pays
where a model is dominated by large MatMul weights (transformers, MLPs). Plain Python: no Django.
"""

from .errors import EngineError, first_line
from .output import check_output, removed_on_error, source_and_output, tool_versions
from .progress import no_progress

BLOCK_SIZES = (16, 32, 64, 128)


def check_params(params, io_signature):
    """Before queueing: MatMulNBits takes power-of-two blocks of 16 to 128 rows."""
    if params["block_size"] not in BLOCK_SIZES:
        return (
            "block_size",
            f"block_size must be one of {', '.join(map(str, BLOCK_SIZES))}, not {params['block_size']}.",
        )
    return None


def quantize_int4_weights(src, dst, *, block_size=32, symmetric=True, progress=no_progress):
    """Quantize every MatMul whose weight is a constant with at least ``block_size`` rows."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    if block_size not in BLOCK_SIZES:
        raise EngineError(f"block_size must be one of {', '.join(map(str, BLOCK_SIZES))}, not {block_size!r}.")
    if not isinstance(symmetric, bool):
        raise EngineError(f"symmetric must be true or false, not {symmetric!r}.")
    src, dst = source_and_output(src, dst)
    with removed_on_error(dst):
        progress(10, "Loading the model")
        model = onnx.load(str(src))
        progress(30, f"Quantizing MatMul weights to int4 in blocks of {block_size}")
        try:
            rewritten = _gemm_as_matmul(model)
            quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=block_size, is_symmetric=symmetric)
            quantizer.process()
        except Exception as exc:
            raise EngineError(f"The int4 quantization failed: {first_line(exc)}") from exc
        quantized = sum(node.op_type == "MatMulNBits" for node in quantizer.model.model.graph.node)
        if not quantized:
            raise EngineError(
                f"No MatMul has a constant float weight with at least {block_size} rows, so nothing can be "
                "stored as int4. Try a smaller block_size, or int8 for convolutions."
            )
        quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
        recipe = {
            "method": "quantize_int4_weights",
            "quantizer": "onnxruntime.quantization.matmul_nbits_quantizer.MatMulNBitsQuantizer",
            "bits": 4,
            "block_size": block_size,
            "symmetric": symmetric,
            "quantized_matmuls": quantized,
            "gemm_rewritten_as_matmul": rewritten,
            "tools": tool_versions(),
        }
        notes = [f"{quantized} MatMul weight(s) stored as int4; other operators are unchanged."]
        return check_output(dst, recipe, notes, progress)


def _gemm_as_matmul(model):
    """MatMulNBits replaces MatMul only, while exporters write a dense layer as Gemm: rewrite each
    plain Gemm (alpha = beta = 1, A not transposed) whose weight is a constant as MatMul + Add,
    with the weight stored transposed where Gemm had transB. Returns how many were rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    rewritten = 0
    for node in list(graph.node):
        if node.op_type != "Gemm" or node.input[1] not in initializers:
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attributes.get("alpha", 1.0) != 1.0 or attributes.get("beta", 1.0) != 1.0 or attributes.get("transA", 0):
            continue
        weight = initializers[node.input[1]]
        if attributes.get("transB", 0):
            transposed = numpy_helper.from_array(numpy_helper.to_array(weight).T.copy(), weight.name + "_t")
            graph.initializer.append(transposed)
            weight_name = transposed.name
        else:
            weight_name = weight.name
        product = node.output[0] + "_matmul" if len(node.input) > 2 else node.output[0]
        replacement = [helper.make_node("MatMul", [node.input[0], weight_name], [product], name=node.name + "_matmul")]
        if len(node.input) > 2:
            replacement.append(
                helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "_add")
            )
        position = list(graph.node).index(node)
        graph.node.remove(node)
        for offset, new in enumerate(replacement):
            graph.node.insert(position + offset, new)
        rewritten += 1
    used = {name for node in graph.node for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    return rewritten
