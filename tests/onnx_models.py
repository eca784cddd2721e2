"""Real ONNX models built with onnx.helper, small enough to build in a test: no Django here, so
the benches that drive a running Berth (bench/load.py) build the same files."""

import numpy as np


def tiny_onnx_bytes(features=4, classes=3, seed=0):
    """A real (tiny) ONNX classifier built with onnx.helper: y = softmax(x @ W + b), dynamic batch."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((features, classes)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(classes).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["z"]),
            helper.make_node("Softmax", ["z"], ["probs"], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="berth-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
