"""Real ONNX models built with onnx.helper, small enough to build in a test, and the reference
features berth-serve bins for a classifier: no Django here, so the benches that drive a running
Berth or berth-serve (bench/load.py, bench/serving.py) build the same things."""

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


def reference_features(x, *, bins, columns, classes):
    """The spec's reference features of a classifier with input ``x`` (rows × columns, float)
    and output ``logits``: the mean and the std of a row and each of ``columns``, on ``bins`` bins
    cut at quantiles of ``x`` (repeated edges once), then the predicted class of ``classes``."""
    q = np.linspace(0, 1, bins + 1)[1:-1]
    features = [
        {"name": "x.mean", "input": "x", "kind": "mean", "edges": np.quantile(x.mean(1), q).tolist()},
        {"name": "x.std", "input": "x", "kind": "std", "edges": np.quantile(x.std(1), q).tolist()},
    ]
    features += [
        {
            "name": f"x[{c}]",
            "input": "x",
            "kind": "column",
            "column": c,
            "edges": np.unique(np.quantile(x[:, c], q)).tolist(),
        }
        for c in columns
    ]
    features.append({"name": "prediction", "kind": "class", "output": "logits", "classes": classes})
    return features
