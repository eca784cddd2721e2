"""FP16, INT64 and BOOL tensors through JSON, on small models built with onnx.helper."""

import numpy as np
import pytest

from .conftest import Model, Serve, make_spec, write_bundle


def _model(op, onnx_type, dtype, extra_inputs=(), initializers=()):
    import onnx
    from onnx import helper

    graph = helper.make_graph(
        [helper.make_node(op, ["x", *extra_inputs], ["y"])],
        op.lower(),
        [helper.make_tensor_value_info("x", onnx_type, ["batch", 3])],
        [helper.make_tensor_value_info("y", onnx_type, ["batch", 3])],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    tensor = {"dtype": dtype, "shape": ["batch", 3], "dynamic_axes": [0]}
    return Model(model.SerializeToString(), {"inputs": [{"name": "x", **tensor}], "outputs": [{"name": "y", **tensor}]})


@pytest.fixture(scope="module")
def typed(tmp_path_factory):
    from onnx import TensorProto, helper

    models = {
        "fp16": _model(
            "Mul",
            TensorProto.FLOAT16,
            "float16",
            ["two"],
            [helper.make_tensor("two", TensorProto.FLOAT16, [], np.array([2], np.float16).view(np.uint16))],
        ),
        "int64": _model(
            "Add", TensorProto.INT64, "int64", ["one"], [helper.make_tensor("one", TensorProto.INT64, [], [1])]
        ),
        "bool": _model("Not", TensorProto.BOOL, "bool"),
    }
    deployments = [
        {
            "version": name,
            "weight": 100 if name == "fp16" else 0,
            "sha256": model.sha256,
            "size_bytes": len(model.raw),
            "format": "onnx",
            "artifact_url": f"artifacts/{model.sha256}.onnx",
            "io_signature": model.signature,
            "features": [],
        }
        for name, model in models.items()
    ]
    folder = tmp_path_factory.mktemp("typed")
    write_bundle(folder, make_spec(deployments, model="typed"), models.values())
    process = Serve(["--bundle", folder], folder / "serve.log").wait_ready()
    yield process, models
    process.stop()


def _infer(process, version, datatype, data, shape=(2, 3)):
    return process.client.post(
        f"/v2/models/typed/versions/{version}/infer",
        {"inputs": [{"name": "x", "shape": list(shape), "datatype": datatype, "data": data}]},
    )


def test_it_serves_fp16(typed):
    process, models = typed
    x = np.array([[0.1, 1.5, -2.25], [65504 / 2, 0.0, 3.0]], dtype=np.float16)
    status, body = _infer(process, "fp16", "FP16", x.tolist())
    assert status == 200, body
    (output,) = body["outputs"]
    assert output["datatype"] == "FP16" and output["shape"] == [2, 3]
    np.testing.assert_array_equal(np.array(output["data"], dtype=np.float16).reshape(2, 3), models["fp16"].run(x=x)[0])
    assert process.client.get("/v2/models/typed/versions/fp16")[1]["inputs"][0]["datatype"] == "FP16"


def test_it_serves_int64_and_refuses_fractions_and_overflow(typed):
    process, _ = typed
    status, body = _infer(process, "int64", "INT64", [1, 2, 3, 2**40, -5, 0])
    assert status == 200, body
    assert body["outputs"][0] == {
        "name": "y",
        "datatype": "INT64",
        "shape": [2, 3],
        "data": [2, 3, 4, 2**40 + 1, -4, 1],
    }
    status, body = _infer(process, "int64", "INT64", [1.5, 2, 3, 4, 5, 6])
    assert status == 400 and "input 'x'" in body["error"] and "integers" in body["error"]
    status, body = _infer(process, "int64", "INT64", [2**70, 2, 3, 4, 5, 6])
    assert status == 400 and "input 'x'" in body["error"]


def test_it_serves_bool(typed):
    process, _ = typed
    status, body = _infer(process, "bool", "BOOL", [[True, False, True], [False, False, True]])
    assert status == 200, body
    assert body["outputs"][0] == {
        "name": "y",
        "datatype": "BOOL",
        "shape": [2, 3],
        "data": [False, True, False, True, True, False],
    }
    status, body = _infer(process, "bool", "BOOL", [0.5, 1, 0, 1, 0, 1])
    assert status == 400 and "BOOL" in body["error"]


def test_it_checks_the_datatype_per_version(typed):
    process, _ = typed
    status, body = _infer(process, "int64", "FP32", [1.0] * 6)
    assert status == 400 and "expects INT64" in body["error"]
