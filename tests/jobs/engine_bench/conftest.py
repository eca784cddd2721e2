"""Real models for the benchmark and export engines: the digits MLP trained once per module
(a second or two) and saved as ONNX, TorchScript and torch.export programs. No database."""

import pytest
import torch

from dashboard.demo import digits_data, export_onnx, export_torchscript, train_digits_mlp


@pytest.fixture(scope="module")
def mlp():
    module, _ = train_digits_mlp(digits_data(), hidden=32, epochs=3)
    return module


@pytest.fixture(scope="module")
def mlp_onnx(mlp, tmp_path_factory):
    return export_onnx(mlp, tmp_path_factory.mktemp("onnx") / "mlp.onnx")


@pytest.fixture(scope="module")
def mlp_torchscript(mlp, tmp_path_factory):
    return export_torchscript(mlp, tmp_path_factory.mktemp("torchscript") / "mlp.pt")


@pytest.fixture(scope="module")
def mlp_program(mlp, tmp_path_factory):
    """A .pt2 with a dynamic batch axis, as a careful user saves it."""
    program = torch.export.export(mlp, (torch.zeros(4, 64),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path_factory.mktemp("program") / "mlp.pt2"
    torch.export.save(program, str(path))
    return path


@pytest.fixture(scope="module")
def mlp_program_fixed_batch(mlp, tmp_path_factory):
    """A .pt2 saved without dynamic_shapes: its batch is frozen at 4."""
    path = tmp_path_factory.mktemp("program-fixed") / "mlp.pt2"
    torch.export.save(torch.export.export(mlp, (torch.zeros(4, 64),)), str(path))
    return path
