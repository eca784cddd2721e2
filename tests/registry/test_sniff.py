"""Format sniffing: from the bytes, never the name, never by unpickling."""

import json
import zipfile

import numpy as np
import pytest

from berth.core.sniff import SniffError, read_npz_arrays, sniff_model_file, walk_onnx


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("torch")
    module = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    torch.jit.save(torch.jit.trace(module, torch.zeros(2, 4)), str(folder / "model.pt"))
    program = torch.export.export(module, (torch.zeros(2, 4),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(folder / "model.pt2"))
    return folder


def test_it_recognises_onnx_whatever_the_name(tmp_path, onnx_file):
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes(onnx_file.read_bytes())
    sniffed = sniff_model_file(renamed)
    assert sniffed.format == "onnx"
    assert sniffed.details["opsets"] == {"ai.onnx": 17}


def test_it_recognises_torchscript_and_exported_programs(torch_files):
    assert sniff_model_file(torch_files / "model.pt").format == "torchscript"
    assert sniff_model_file(torch_files / "model.pt2").format == "exported_program"


def test_it_refuses_a_pt2_whose_weights_are_pickled(torch_files, tmp_path):
    source = zipfile.ZipFile(torch_files / "model.pt2")
    tampered = tmp_path / "tampered.pt2"
    with zipfile.ZipFile(tampered, "w") as out:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                next(iter(config["config"].values()))["use_pickle"] = True
                data = json.dumps(config).encode()
            out.writestr(item, data)
    with pytest.raises(SniffError, match="pickled object"):
        sniff_model_file(tampered)


def test_it_gives_the_reason_for_a_damaged_member_of_a_pt2(torch_files, tmp_path):
    data = bytearray((torch_files / "model.pt2").read_bytes())
    data[data.index(b'"config"') + 1] ^= 0x20  # the weights config no longer matches its CRC
    damaged = tmp_path / "damaged.pt2"
    damaged.write_bytes(bytes(data))
    with pytest.raises(SniffError, match="cannot be read: Bad CRC-32"):
        sniff_model_file(damaged)


def test_a_cut_pt2_is_damaged_not_a_pickle(torch_files, tmp_path):
    # The end of a .pt2 holds its directory; cut, zipfile finds the torch.save zip of sample inputs
    # stored inside it instead.
    cut = tmp_path / "cut.pt2"
    cut.write_bytes((torch_files / "model.pt2").read_bytes()[:-64])
    with pytest.raises(SniffError, match="directory is missing"):
        sniff_model_file(cut)


def test_it_refuses_pickles_without_loading_them(pickle_bomb, torch_save_bomb):
    for path, marker in (pickle_bomb, torch_save_bomb):
        with pytest.raises(SniffError, match="pickled checkpoint"):
            sniff_model_file(path)
        assert not marker.exists()


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.99])
def test_it_gives_the_reason_for_a_truncated_onnx(tmp_path, onnx_file, cut):
    data = onnx_file.read_bytes()
    truncated = tmp_path / "t.onnx"
    truncated.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(SniffError, match="cannot be parsed.*(truncated|corrupt)"):
        sniff_model_file(truncated)


def test_it_gives_the_reason_for_flipped_bits(tmp_path, onnx_file):
    data = bytearray(onnx_file.read_bytes())
    for i in range(20, 60):
        data[i] ^= 0xFF
    corrupt = tmp_path / "c.onnx"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(SniffError, match="ONNX"):
        sniff_model_file(corrupt)


def test_it_gives_the_reason_for_a_name_that_is_not_utf8(tmp_path, onnx_file):
    # The checker's complaint about the op type would quote the broken name.
    corrupt = tmp_path / "c.onnx"
    corrupt.write_bytes(onnx_file.read_bytes().replace(b"MatMul", b"Mat\xc2ul"))
    with pytest.raises(SniffError, match="cannot be parsed: a name or text in it is not UTF-8"):
        sniff_model_file(corrupt)


def test_large_onnx_files_are_walked_without_loading_them(tmp_path, onnx_file):
    # Above the parse limit only the wire structure is checked (flat memory); a cut still shows.
    data = onnx_file.read_bytes()
    assert sniff_model_file(onnx_file, parse_max_bytes=10).details["nodes"] == 3
    truncated = tmp_path / "t.onnx"
    truncated.write_bytes(data[:-5])
    with pytest.raises(SniffError, match="truncated"):
        sniff_model_file(truncated, parse_max_bytes=10)


def test_it_refuses_onnx_with_external_data(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((64, 64), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        initializer=[weight],
    )
    model = helper.make_model(graph)
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    with pytest.raises(SniffError, match="1 tensors in external data"):
        sniff_model_file(path)
    with pytest.raises(SniffError, match="external data"):
        sniff_model_file(path, parse_max_bytes=10)  # large files: found by the structure walk


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (b"\x00" * 100, "Unrecognised"),
        (b"hello world, not a model", "Unrecognised"),
        ((20).to_bytes(8, "little") + b'{"w": {"dtype": "F32"}}', "safetensors"),
    ],
)
def test_it_explains_what_it_does_not_accept(tmp_path, content, message):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    with pytest.raises(SniffError, match=message):
        sniff_model_file(path)


def test_a_zip_that_is_no_model_is_unknown(tmp_path):
    path = tmp_path / "stuff.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(SniffError, match="Unrecognised"):
        sniff_model_file(path)


def test_walk_counts_nodes_and_initializers(onnx_file):
    details = walk_onnx(onnx_file)
    assert details["nodes"] == 3 and details["initializers"] == 2


def test_npz_headers_are_read_without_the_data(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((5, 64), np.float32), labels=np.arange(5))
    assert read_npz_arrays(path) == {
        "x": {"dtype": "float32", "shape": [5, 64]},
        "labels": {"dtype": "int64", "shape": [5]},
    }
