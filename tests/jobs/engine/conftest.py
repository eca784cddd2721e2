"""Real digits models for the compression engines, trained once per session and exported to
ONNX (input "x", output "logits"); no database."""

import pytest

from dashboard.demo import digits_data, export_onnx, train_digits_cnn, train_digits_mlp


@pytest.fixture(scope="session")
def digits():
    return digits_data()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-models")


@pytest.fixture(scope="session")
def mlp_onnx(digits, models_dir):
    """The demo's second architecture, 64-256-128-10: big enough that int8 weights, not the
    graph's fixed overhead, decide the file size."""
    module, _ = train_digits_mlp(digits, hidden=256, epochs=15)
    return export_onnx(module, models_dir / "mlp.onnx")


@pytest.fixture(scope="session")
def cnn_onnx(digits, models_dir):
    module, _ = train_digits_cnn(digits, epochs=3)
    return export_onnx(module, models_dir / "cnn.onnx", example_shape=(2, 1, 8, 8))


@pytest.fixture(scope="session")
def mlp_calibration(digits):
    return {"x": digits.train_x[:128]}


@pytest.fixture(scope="session")
def mlp_evaluation(digits):
    return {"x": digits.test_x, "labels": digits.test_y}


@pytest.fixture(scope="session")
def cnn_calibration(digits):
    return {"x": digits.train_x[:128].reshape(-1, 1, 8, 8)}


@pytest.fixture(scope="session")
def cnn_evaluation(digits):
    return {"x": digits.test_x.reshape(-1, 1, 8, 8), "labels": digits.test_y}
