"""Tell what a model file is from its bytes, never from its name, and never by unpickling it.

Plain Python (no Django, no torch). ONNX files are walked at the protobuf wire level with
seeks, so even a multi-gigabyte file is checked in flat memory; small ones are also parsed
and checked by ``onnx`` itself. Zip archives are classified from their member names.
"""

import json
import zipfile
import zlib
from dataclasses import dataclass, field

ONNX = "onnx"
TORCHSCRIPT = "torchscript"
EXPORTED_PROGRAM = "exported_program"

PICKLE_MESSAGE = (
    "This file is a pickled checkpoint (torch.save or pickle). Berth never unpickles uploads, "
    "because loading a pickle can run arbitrary code. Export the model instead with "
    "torch.onnx.export (ONNX), torch.jit.save (TorchScript) or torch.export.save (.pt2) and upload that."
)
EXTERNAL_DATA_MESSAGE = (
    "This ONNX file keeps {count} tensors in external data files, which a single-file upload does not "
    "carry. Save it as one file (onnx.save_model(model, path, save_as_external_data=False), or "
    "torch.onnx.export(..., external_data=False))."
)
UNKNOWN_MESSAGE = (
    "Unrecognised model file. Berth accepts ONNX (.onnx), TorchScript archives (torch.jit.save) "
    "and torch.export programs (torch.export.save, .pt2)."
)


class SniffError(Exception):
    """The file is not a model Berth accepts; the message says why and what to do."""


@dataclass
class Sniffed:
    format: str
    details: dict = field(default_factory=dict)


def sniff_model_file(path, *, parse_max_bytes=64 * 1024**2):
    """Classify the model file at ``path``; raise SniffError with a reason a user can act on."""
    with open(path, "rb") as f:
        head = f.read(16)
    if not head:
        raise SniffError("The file is empty.")
    if head[:4] == b"PK\x03\x04":
        return _sniff_zip(path)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise SniffError(PICKLE_MESSAGE)
    if _looks_like_safetensors(head):
        raise SniffError(
            "This is a safetensors file: it holds weights only, not a runnable model. "
            "Export the model (ONNX, TorchScript or .pt2) and upload that."
        )
    try:
        details = walk_onnx(path)
    except OnnxWireError as exc:
        if head[:1] == b"\x08":  # ModelProto starts with ir_version (field 1, varint)
            raise SniffError(f"This ONNX file cannot be parsed: {exc}") from exc
        raise SniffError(UNKNOWN_MESSAGE) from exc
    if details["external_tensors"]:
        raise SniffError(EXTERNAL_DATA_MESSAGE.format(count=details["external_tensors"]))
    if details["size"] <= parse_max_bytes:
        details.update(_parse_onnx_fully(path))
    return Sniffed(ONNX, details)


def _looks_like_safetensors(head):
    """safetensors: an 8-byte little-endian header length, then a JSON header."""
    if len(head) < 9:
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 2 <= header_len < 100 * 1024**2 and head[8:9] == b"{"


# --- ONNX ----------------------------------------------------------------------------------


class OnnxWireError(Exception):
    pass


_MODEL_FIELDS = {
    1: "ir_version",
    2: "producer_name",
    3: "producer_version",
    4: "domain",
    5: "model_version",
    6: "doc_string",
    7: "graph",
    8: "opset_import",
    14: "metadata_props",
    20: "training_info",
    25: "functions",
    26: "configuration",
}
_TENSOR_FIELDS = {1: "dims", 2: "data_type", 8: "name", 9: "raw_data", 13: "external_data", 14: "data_location"}
_GRAPH_FIELDS = {
    1: "node",
    2: "name",
    5: "initializer",
    10: "doc_string",
    11: "input",
    12: "output",
    13: "value_info",
    14: "quantization_annotation",
    15: "sparse_initializer",
    16: "metadata_props",
}


def _read_varint(f, where):
    result = 0
    shift = 0
    for _ in range(10):
        byte = f.read(1)
        if not byte:
            raise OnnxWireError(f"the file ends inside a number at byte {where} (truncated?)")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
    raise OnnxWireError(f"malformed number at byte {where}")


def _walk_message(f, start, end, names, on_field=None, on_varint=None):
    """Walk the fields of one protobuf message between byte offsets [start, end); call
    ``on_field(number, start, end)`` for length-delimited fields and ``on_varint(number,
    value)`` for varints."""
    f.seek(start)
    counts = {}
    while f.tell() < end:
        where = f.tell()
        key = _read_varint(f, where)
        number, wire_type = key >> 3, key & 7
        name = names.get(number, f"field {number}")
        if number == 0:
            raise OnnxWireError(f"invalid field number 0 at byte {where} (corrupt data)")
        if wire_type == 0:
            value = _read_varint(f, where)
            if on_varint:
                on_varint(number, value)
        elif wire_type == 1:
            f.seek(8, 1)
        elif wire_type == 5:
            f.seek(4, 1)
        elif wire_type == 2:
            length = _read_varint(f, where)
            payload_start = f.tell()
            if payload_start + length > end:
                raise OnnxWireError(
                    f"{name} at byte {where} declares {length:,} bytes but only {end - payload_start:,} remain "
                    "(the file is truncated or corrupt)"
                )
            if on_field:
                on_field(number, payload_start, payload_start + length)
            f.seek(payload_start + length)
        else:
            raise OnnxWireError(f"unsupported wire type {wire_type} for {name} at byte {where} (corrupt data)")
        if f.tell() > end:
            raise OnnxWireError(f"{name} at byte {where} runs past the end of the file (truncated?)")
        counts[number] = counts.get(number, 0) + 1
    return counts


def walk_onnx(path):
    """Check the protobuf structure of an ONNX ModelProto in flat memory; return counts."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        graphs = []
        top = _walk_message(
            f, 0, size, _MODEL_FIELDS, on_field=lambda n, s, e: graphs.append((s, e)) if n == 7 else None
        )
        if 1 not in top:
            raise OnnxWireError("no ir_version: this is not an ONNX model")
        if 7 not in top:
            raise OnnxWireError("no graph: this is not an ONNX model")
        graph_start, graph_end = graphs[-1]
        initializers = []
        graph = _walk_message(
            f,
            graph_start,
            graph_end,
            _GRAPH_FIELDS,
            on_field=lambda n, s, e: initializers.append((s, e)) if n == 5 else None,
        )
        external = []
        for tensor_start, tensor_end in initializers:
            _walk_message(
                f,
                tensor_start,
                tensor_end,
                _TENSOR_FIELDS,
                on_varint=lambda n, v: external.append(1) if n == 14 and v == 1 else None,
            )
            f.seek(tensor_end)
    if not graph.get(1):
        raise OnnxWireError("the graph has no nodes")
    return {"size": size, "nodes": graph.get(1, 0), "initializers": graph.get(5, 0), "external_tensors": len(external)}


def _parse_onnx_fully(path):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load_model(path, load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise SniffError(f"This ONNX file cannot be parsed: {exc}") from exc
    try:
        onnx.checker.check_model(model)
        return {
            "ir_version": model.ir_version,
            "opsets": {imp.domain or "ai.onnx": imp.version for imp in model.opset_import},
            "producer": f"{model.producer_name} {model.producer_version}".strip(),
        }
    except onnx.checker.ValidationError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "validation failed"
        raise SniffError(f"This ONNX model fails the ONNX checker: {first_line}") from exc
    except UnicodeDecodeError as exc:  # protobuf leaves text unchecked until it is read
        raise SniffError(
            f"This ONNX file cannot be parsed: a name or text in it is not UTF-8 ({exc.reason}); the file is corrupt."
        ) from exc


# --- zip archives: TorchScript, torch.export, torch.save -------------------------------------

# What a damaged zip raises besides BadZipFile (a bad CRC or header): a corrupt deflate stream,
# a member cut short, a flipped compression-method or encryption flag, a seek before the start.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError, OSError)


def _sniff_zip(path):
    try:
        with zipfile.ZipFile(path) as archive:
            return _classify_zip(archive)
    except _ZIP_ERRORS as exc:
        raise SniffError(f"This looks like a zip archive but cannot be read: {exc}") from exc


def _classify_zip(archive):
    names = archive.namelist()
    if not names:
        raise SniffError("The archive is empty.")
    if min(info.header_offset for info in archive.infolist()) != 0:
        # What zipfile found is an archive stored inside this file (a .pt2 keeps its sample inputs
        # as a torch.save zip): the file's own directory, at its end, is missing.
        raise SniffError("This zip archive is damaged: its directory is missing (the file was cut short?).")
    root = names[0].split("/", 1)[0] + "/" if "/" in names[0] else ""
    inner = {n[len(root) :] for n in names if n.startswith(root)}
    if "archive_format" in inner:
        fmt = archive.read(root + "archive_format").strip()
        if fmt != b"pt2":
            raise SniffError(f"Unknown archive_format {fmt[:20]!r} in a torch archive.")
        return Sniffed(EXPORTED_PROGRAM, {"models": _audit_pt2(archive, root, inner)})
    if "constants.pkl" in inner and any(n.startswith("code/") for n in inner):
        return Sniffed(TORCHSCRIPT, {"members": len(names)})
    if "data.pkl" in inner:
        raise SniffError(PICKLE_MESSAGE)
    if any(n.endswith(".onnx") for n in inner):
        raise SniffError(
            "Zip archives of ONNX models with external data are not accepted yet. "
            "Save the model as a single file (external_data=False) if it is under 2 GB."
        )
    raise SniffError(UNKNOWN_MESSAGE)


def _audit_pt2(archive, root, inner):
    """Refuse .pt2 archives whose loading would unpickle something.

    ``torch.export.load`` unpickles tensor-subclass weights and opaque constants with plain
    pickle. Plain exported programs store raw tensor bytes, so such entries are refused here.
    """
    models = sorted(n[len("models/") : -len(".json")] for n in inner if n.startswith("models/") and n.endswith(".json"))
    if not models:
        raise SniffError("This .pt2 archive holds no exported program (no models/*.json).")
    for model_name in models:
        for legacy in (f"data/weights/{model_name}.pt", f"data/constants/{model_name}.pt"):
            if legacy in inner:
                raise SniffError(
                    "This .pt2 archive uses the legacy pickled weight format. Re-export it with a current "
                    "torch.export.save."
                )
        for config_name in (
            f"data/weights/{model_name}_weights_config.json",
            f"data/constants/{model_name}_constants_config.json",
        ):
            if config_name not in inner:
                continue
            try:
                config = json.loads(archive.read(root + config_name)).get("config", {})
            except (ValueError, AttributeError) as exc:
                raise SniffError(f"Unreadable {config_name} in the .pt2 archive: {exc}") from exc
            for fqn, payload in config.items():
                path_name = str(payload.get("path_name", ""))
                if payload.get("use_pickle") or path_name.startswith(("custom_obj", "opaque_obj")):
                    raise SniffError(
                        f"This .pt2 archive stores {fqn!r} as a pickled object. Berth never unpickles "
                        "uploads: export a program whose weights and constants are plain tensors."
                    )
    return models


# --- datasets (.npz) --------------------------------------------------------------------------


def read_npz_arrays(path):
    """Names, dtypes and shapes of the arrays in an .npz, read from the .npy headers only
    (no array data loaded, object arrays refused: they would need unpickling)."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise SniffError("A dataset must be an .npz file (numpy.savez); this file is not a zip archive.") from exc
    try:
        with archive:
            return _npz_arrays(archive)
    except _ZIP_ERRORS as exc:
        raise SniffError(f"This .npz file is damaged and cannot be read: {exc}") from exc


def _npz_arrays(archive):
    import numpy as np

    arrays = {}
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            raise SniffError(f"Unexpected member {info.filename!r} in the .npz file: only .npy arrays are allowed.")
        name = info.filename[:-4]
        with archive.open(info) as member:
            try:
                version = np.lib.format.read_magic(member)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _fortran, dtype = read_header(member)
            except ValueError as exc:
                raise SniffError(f"Array {name!r} in the .npz file is unreadable: {exc}") from exc
        if dtype.hasobject:
            raise SniffError(
                f"Array {name!r} has dtype object, which numpy stores as a pickle; Berth never unpickles "
                "uploads. Save numeric arrays."
            )
        arrays[name] = {"dtype": str(dtype), "shape": list(shape)}
    if not arrays:
        raise SniffError("The .npz file holds no arrays.")
    return arrays
