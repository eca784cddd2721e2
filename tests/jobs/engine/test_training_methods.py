"""The engines that train: structured pruning with fine-tuning, and distillation. Small digits
models, a few epochs on a few hundred rows (seconds)."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from jobs.engine.distill import check_teacher, distill
from jobs.engine.errors import EngineError
from jobs.engine.structured import prune_structured
from jobs.engine.torch_graph import onnx_to_torch


def run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.fixture(scope="module")
def cnn_training(digits):
    return {"x": digits.train_x[:600].reshape(-1, 1, 8, 8), "labels": digits.train_y[:600]}


@pytest.mark.parametrize("which", ["mlp_onnx", "cnn_onnx"])
def test_an_onnx_classifier_becomes_the_same_torch_module(request, digits, which):
    import torch

    path = request.getfixturevalue(which)
    x = digits.test_x[:50] if which == "mlp_onnx" else digits.test_x[:50].reshape(-1, 1, 8, 8)
    module, inputs, outputs = onnx_to_torch(path)
    assert (inputs, outputs) == (["x"], ["logits"])
    assert any(isinstance(m, torch.nn.Linear) for m in module.modules())
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), run(path, x), rtol=1e-4, atol=1e-4)


def test_an_unsupported_operator_is_named(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Sin", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "sin.onnx")
    with pytest.raises(EngineError, match="uses Sin"):
        onnx_to_torch(tmp_path / "sin.onnx")


def test_structured_pruning_removes_channels_and_fine_tunes(cnn_onnx, cnn_training, cnn_evaluation, tmp_path):
    out = tmp_path / "pruned.onnx"
    partials = []
    result = prune_structured(
        cnn_onnx,
        out,
        training=cnn_training,
        evaluation=cnn_evaluation,
        sparsity=0.5,
        finetune_epochs=2,
        progress=lambda p, m="", partial=None: partials.append(partial),
    )
    layers = result.recipe["layers"]
    assert layers and all(entry["channels_after"] * 2 == entry["channels_before"] for entry in layers.values())
    conv = [i for i in onnx.load(str(out)).graph.initializer if len(i.dims) == 4]
    assert sorted(i.dims[0] for i in conv) == [8, 16]  # 16 and 32 output channels, halved
    assert result.size_bytes < 0.5 * cnn_onnx.stat().st_size
    accuracy = result.recipe["accuracy"]
    assert accuracy["after_fine_tuning"] > accuracy["after_pruning"]
    assert len(result.recipe["fine_tuning"]["loss_curve"]) == 2
    assert run(out, cnn_evaluation["x"][:32]).shape == (32, 10)
    assert any(p and "loss_curve" in p for p in partials)  # the curve is reported while training


def test_structured_pruning_needs_labels_and_the_models_input(cnn_onnx, cnn_training, tmp_path):
    with pytest.raises(EngineError, match="no 'labels'"):
        prune_structured(cnn_onnx, tmp_path / "p.onnx", training={"x": cnn_training["x"]}, finetune_epochs=1)
    with pytest.raises(EngineError, match="no array 'x'"):
        prune_structured(cnn_onnx, tmp_path / "p.onnx", training={"image": cnn_training["x"], "labels": [1, 2]})
    assert not (tmp_path / "p.onnx").exists()


def test_a_student_learns_the_teacher_from_soft_targets_alone(mlp_onnx, digits, tmp_path):
    """No labels: whatever the student gets right, it learnt from the teacher's scores."""
    training = {"x": digits.train_x[:800]}
    evaluation = {"x": digits.test_x, "labels": digits.test_y}
    result = distill(
        mlp_onnx,
        tmp_path / "student.onnx",
        training=training,
        evaluation=evaluation,
        student="mlp",
        student_width=16,
        epochs=8,
        learning_rate=0.01,
        temperature=4.0,
    )
    measured = result.recipe["measured"]
    assert measured["agreement"] > 0.8 and measured["student_accuracy"] > 0.75
    assert result.recipe["alpha_used"] == 0.0 and "no labels" in " ".join(result.notes)
    curve = [point["loss"] for point in result.recipe["loss_curve"]]
    assert len(curve) == 8 and curve[-1] < curve[0] / 2
    assert result.size_bytes < mlp_onnx.stat().st_size / 4
    assert run(tmp_path / "student.onnx", digits.test_x[:3]).shape == (3, 10)


def test_bad_students_and_datasets_are_refused(mlp_onnx, cnn_onnx, digits, tmp_path):
    with pytest.raises(EngineError, match="cnn student takes image inputs"):
        distill(mlp_onnx, tmp_path / "s.onnx", training={"x": digits.train_x[:50]}, student="cnn", epochs=1)
    with pytest.raises(EngineError, match="training dataset lacks input"):
        distill(cnn_onnx, tmp_path / "s.onnx", training={"pixels": digits.train_x[:50]}, epochs=1)
    with pytest.raises(EngineError, match="labels run from"):
        distill(mlp_onnx, tmp_path / "s.onnx", training={"x": digits.train_x[:50], "labels": np.full(50, 12)}, epochs=1)
    assert not (tmp_path / "s.onnx").exists()
    signature = {"inputs": [{"name": "x", "shape": ["batch", 64]}], "outputs": [{"name": "y", "shape": ["b", 10]}]}
    assert check_teacher({"student": "cnn"}, signature)[0] == "student"
    assert check_teacher({"student": "mlp"}, signature) is None
