"""The Open Inference Protocol v2 (KServe v2) over HTTP: datatypes, a version's tensor
signature, request decoding with validation against it, and response encoding, in JSON and with
the binary tensor data extension (a JSON header of ``Inference-Header-Content-Length`` bytes,
then each binary tensor's raw little-endian bytes, ``binary_data_size`` each, in order).

Every rejection raises a ServeError whose message names the tensor and says what was expected.
"""

import json
import math
import re

import numpy as np

try:  # the serve extra installs it; without it every body takes the standard library's decoder
    import orjson
except ImportError:
    orjson = None

# OIP datatype <-> numpy. BYTES (strings) is not served: Berth's models take numeric tensors.
DATATYPES = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
NUMPY_TO_DATATYPE = {dtype.name: name for name, dtype in DATATYPES.items()}
EXTENSIONS = ["binary_tensor_data"]  # the protocol extensions served (server metadata)
# How a request reached the core: JSON tensors or the binary tensor extension over HTTP, or gRPC.
# Telemetry counts requests by these names, and an end-to-end benchmark is measured in one of them.
ENCODINGS = ("json", "binary", "grpc")


class ServeError(Exception):
    """A request the runtime answers with ``status`` and ``{"error": message}``; ``kind`` is the
    telemetry error kind (None: not counted as an error of a version, e.g. an unknown model)."""

    status = 500
    kind = "inference_error"

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class BadRequest(ServeError):
    status, kind = 400, "bad_request"


class InvalidInput(ServeError):
    status, kind = 400, "invalid_input"


class TooLarge(ServeError):
    status, kind = 413, "too_large"
    close = False  # close the connection after answering (the rest of the body was not read)

    @classmethod
    def over(cls, limit, *, close):
        error = cls(f"the request body is larger than this endpoint's limit of {limit:,} bytes")
        error.close = close
        return error


class NotFound(ServeError):
    status, kind = 404, None


class Unavailable(ServeError):
    status, kind = 503, "unavailable"


class InferenceFailed(ServeError):
    status, kind = 500, "inference_error"


# --- signature -------------------------------------------------------------------------------


class TensorSpec:
    """One input or output of a version: name, numpy dtype, OIP datatype and shape, where a
    dimension is an int (fixed) or None (dynamic). ``shape`` None means the rank is unknown."""

    __slots__ = ("name", "dtype", "datatype", "shape", "fixed")

    def __init__(self, name, dtype, shape):
        self.name = name
        self.dtype = np.dtype(dtype)
        if self.dtype.name not in NUMPY_TO_DATATYPE:
            raise ValueError(f"tensor {name!r} has dtype {self.dtype.name}, which the serving runtime does not serve")
        self.datatype = NUMPY_TO_DATATYPE[self.dtype.name]
        self.shape = None if shape is None else tuple(shape)
        self.fixed = () if shape is None else tuple((axis, d) for axis, d in enumerate(shape) if d is not None)

    @classmethod
    def from_signature(cls, entry):
        """From an io_signature entry ``{"name", "dtype", "shape", "dynamic_axes"}``: a shape entry
        that is a non-negative int and not listed in dynamic_axes is fixed; anything else is dynamic."""
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ValueError(f"a tensor of the io_signature has no name: {entry!r}")
        shape = entry.get("shape")
        dynamic = set(entry.get("dynamic_axes") or [])
        if shape is not None:
            if not isinstance(shape, list):
                raise ValueError(f"tensor {entry['name']!r}: shape must be a list, not {shape!r}")
            shape = [
                d if isinstance(d, int) and not isinstance(d, bool) and d >= 0 and axis not in dynamic else None
                for axis, d in enumerate(shape)
            ]
        try:
            return cls(entry["name"], entry.get("dtype") or "float32", shape)
        except TypeError as exc:
            raise ValueError(f"tensor {entry['name']!r}: unknown dtype {entry.get('dtype')!r}") from exc

    def shape_text(self):
        return (
            "[" + ", ".join("-1" if d is None else str(d) for d in self.shape) + "]"
            if self.shape is not None
            else "any shape"
        )

    def metadata(self):
        return {
            "name": self.name,
            "datatype": self.datatype,
            "shape": [-1 if d is None else d for d in self.shape] if self.shape is not None else [-1],
        }


class Signature:
    """A version's inputs and outputs (TensorSpec), by name and in order."""

    def __init__(self, inputs, outputs):
        self.inputs = inputs
        self.outputs = outputs
        self.input_map = {t.name: t for t in inputs}
        self.output_map = {t.name: t for t in outputs}
        self.input_names = ", ".join(t.name for t in inputs)
        self.output_names = ", ".join(t.name for t in outputs)

    def input_spec(self, name, feeds):
        """The spec of a request's input ``name``, not yet in ``feeds``."""
        spec = self.input_map.get(name)
        if spec is None:
            raise InvalidInput(f"unknown input {name!r}: this model's inputs are {self.input_names}")
        if name in feeds:
            raise InvalidInput(f"input {name!r} is given twice")
        return spec

    def check_complete(self, feeds):
        if len(feeds) != len(self.input_map):
            missing = [s for s in self.inputs if s.name not in feeds]
            raise InvalidInput(
                "missing input " + ", ".join(f"{s.name!r} ({s.datatype}, shape {s.shape_text()})" for s in missing)
            )

    def check_output(self, name):
        if self.output_map and name not in self.output_map:
            raise InvalidInput(f"unknown output {name!r}: this model's outputs are {self.output_names}")

    @classmethod
    def from_io_signature(cls, io):
        if not isinstance(io, dict) or not io.get("inputs"):
            raise ValueError("the io_signature lists no inputs")
        return cls(
            [TensorSpec.from_signature(t) for t in io["inputs"]],
            [TensorSpec.from_signature(t) for t in io.get("outputs") or []],
        )


# --- requests --------------------------------------------------------------------------------


# Arrays and objects nested deeper than this are refused before the body is decoded (the
# envelope takes 3 levels, so tensor data may nest 29 deep; numpy allows 64 dimensions).
MAX_DEPTH = 32
_STRINGS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_DEPTH_STEP = np.zeros(256, np.int8)
_DEPTH_STEP[[ord("["), ord("{")]] = 1
_DEPTH_STEP[[ord("]"), ord("}")]] = -1


def parse_json(body):
    """The request body as JSON; BadRequest if it is not, if it nests deeper than MAX_DEPTH, or if
    an object repeats a key. NaN, Infinity and numbers beyond float64 (1e400) are decoded here and
    refused by decode_tensor, which names the tensor."""
    if not body:
        raise BadRequest("the request has no body; send a JSON object with 'inputs'")
    _check_depth(body)
    payload = _fast_json(body)
    if payload is not None:
        return payload
    try:
        # What json.loads(body, object_pairs_hook=_object) does, without building a decoder and
        # its scanner for every request.
        return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON ({_first_line(exc)})") from None


def _check_depth(body):
    """BadRequest if arrays and objects nest deeper than MAX_DEPTH (brackets inside strings do not
    count). Decoding such a body would exhaust the decoder's recursion; this check is a scan in C."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return
    if b'"' in body:
        body = _STRINGS.sub(b'""', body)
    depth = np.cumsum(_DEPTH_STEP[np.frombuffer(body, np.uint8)], dtype=np.int32).max(initial=0)
    if depth > MAX_DEPTH:
        raise BadRequest(
            f"the body nests arrays and objects {depth} deep; at most {MAX_DEPTH} levels are "
            "accepted (send tensor data flat, with its 'shape')"
        )


# After every string is blanked to "", a key is a string followed by a colon.
_KEYS = re.compile(rb'""\s*:')
# A body with every digit turned to 0 and every other byte to a space holds this where it has
# 20 digits in a row (an integer that may be beyond 64 bits, which orjson turns into a float).
# Faster than a regular expression, which retries at every digit of every number.
_DIGITS_ONLY = bytes(ord("0") if 48 <= i <= 57 else ord(" ") for i in range(256))
_LONG_DIGITS = b"0" * 20
# Objects an infer request holds where the envelope puts them: the request, its tensors and their
# parameters (and the requested outputs'). Tensor data holds none.
_ENVELOPE_LISTS = ("inputs", "outputs")


def _fast_json(body):
    """The body decoded by orjson (a tenth of the standard decoder's time on a tensor of floats:
    the float parsing is most of it), when that gives exactly what the standard decoder gives;
    None when the body may differ there, and the standard decoder decides (and words any error).

    orjson accepts a subset of what the standard decoder accepts (UTF-8 only; no NaN, Infinity,
    1e400 or lone surrogates: it raises, and None is returned), keeps the last of repeated keys
    (so the keys of the body are counted against the objects' entries), and turns integers beyond
    64 bits into floats (so a body with 20 digits in a row goes to the standard decoder)."""
    if orjson is None:
        return None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if _LONG_DIGITS in body.translate(_DIGITS_ONLY):
        return None
    shape = _STRINGS.sub(b'""', body) if b'"' in body else body
    objects, entries = _envelope_objects(payload)
    if objects != shape.count(b"{") or entries != len(_KEYS.findall(shape)):
        return None  # a repeated key, or objects elsewhere (in tensor data): decoded as before
    return payload


def _envelope_objects(payload):
    """(objects, their entries) of an infer request where the envelope holds objects."""
    if type(payload) is not dict:
        return 0, 0
    objects, entries = 1, len(payload)
    parameters = payload.get("parameters")
    if type(parameters) is dict:
        objects, entries = objects + 1, entries + len(parameters)
    for key in _ENVELOPE_LISTS:
        items = payload.get(key)
        if type(items) is not list:
            continue
        for item in items:
            if type(item) is not dict:
                continue
            objects, entries = objects + 1, entries + len(item)
            parameters = item.get("parameters")
            if type(parameters) is dict:
                objects, entries = objects + 1, entries + len(parameters)
    return objects, entries


def _object(pairs):
    result = dict(pairs)
    if len(result) != len(pairs):
        seen = set()
        repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise BadRequest(f"the body repeats the key {repeated!r} in one object; each key may appear once")
    return result


_DECODER = json.JSONDecoder(object_pairs_hook=_object)


def split_binary(body, header_length):
    """(JSON header bytes, binary part as a memoryview or None) of a request body, given its
    ``Inference-Header-Content-Length`` header (a str, or None when absent)."""
    if header_length is None:
        return body, None
    try:
        length = int(header_length)
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length must be an integer, not {header_length[:40]!r}") from None
    if length < 0 or length > len(body):
        raise BadRequest(f"Inference-Header-Content-Length is {length} but the body has {len(body)} bytes")
    return body[:length], memoryview(body)[length:]


def decode_request(payload, signature, binary=None):
    """Validate an OIP infer request against ``signature``; ``binary`` is the body's binary part
    (memoryview) when the request uses the binary tensor data extension.

    Returns (feeds {input name: ndarray}, requested output names or None, request id or None).
    Raises BadRequest for a malformed structure and InvalidInput for tensors that do not fit the
    signature.
    """
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object with an 'inputs' list")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors {name, shape, datatype, data}")
    feeds = {}
    cursor = _BinaryCursor(binary)
    for index, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            raise BadRequest(f"inputs[{index}] must be an object with name, shape, datatype and data")
        name = tensor.get("name")
        if not isinstance(name, str):
            raise BadRequest(f"inputs[{index}] has no 'name'")
        feeds[name] = decode_tensor(tensor, signature.input_spec(name, feeds), cursor)
    cursor.check_consumed()
    signature.check_complete(feeds)
    wanted = payload.get("outputs")
    if wanted is not None:
        wanted = _requested_outputs(wanted, signature) or None  # [] asks for every output, as gRPC's
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    return feeds, wanted, request_id


def binary_outputs(payload, names):
    """The output names to answer in binary: those whose ``parameters.binary_data`` is true, and
    every other one when the request's ``parameters.binary_data_output`` is true."""
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be an object")
    default = bool(parameters and parameters.get("binary_data_output") is True)
    explicit = {}
    for item in payload.get("outputs") or ():
        flag = (item.get("parameters") or {}).get("binary_data") if isinstance(item, dict) else None
        if isinstance(flag, bool):
            explicit[item.get("name")] = flag
    if not default and not explicit:
        return ()
    return {name for name in names if explicit.get(name, default)}


class _BinaryCursor:
    """Hands out consecutive slices of a request's binary part."""

    __slots__ = ("view", "offset")

    def __init__(self, view):
        self.view = view
        self.offset = 0

    def take(self, name, size, expected):
        if self.view is None:
            raise BadRequest(
                f"input {name!r} has binary_data_size but the request has no binary part: send the "
                "Inference-Header-Content-Length header with the length of its JSON"
            )
        if size != expected:
            raise InvalidInput(
                f"input {name!r}: binary_data_size is {size} bytes but its datatype and shape need {expected}"
            )
        end = self.offset + size
        if end > len(self.view):
            raise BadRequest(
                f"input {name!r}: binary_data_size {size} goes past the end of the body (bytes "
                f"{self.offset} to {end} of a binary part of {len(self.view)})"
            )
        chunk = self.view[self.offset : end]
        self.offset = end
        return chunk

    def check_consumed(self):
        if self.view is not None and self.offset != len(self.view):
            raise BadRequest(
                f"the binary part has {len(self.view)} bytes but the inputs' binary_data_size add up to {self.offset}"
            )


def _requested_outputs(wanted, signature):
    if not isinstance(wanted, list):
        raise BadRequest("'outputs' must be a list of {name}")
    names = []
    for index, item in enumerate(wanted):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise BadRequest(f"outputs[{index}] has no 'name'")
        signature.check_output(name)
        names.append(name)
    return names


def decode_tensor(tensor, spec, binary=None):
    """One request tensor as an ndarray of the spec's dtype and the declared shape (its data from
    ``binary``, a _BinaryCursor, when it has ``parameters.binary_data_size``)."""
    name = spec.name
    shape = tensor.get("shape")
    check_tensor(spec, tensor.get("datatype"), shape)
    data = tensor.get("data")
    parameters = tensor.get("parameters")
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if data is not None:
            raise BadRequest(f"input {name!r} has both 'data' and parameters.binary_data_size; send one")
        if type(size) is not int or size < 0:
            raise BadRequest(f"input {name!r}: binary_data_size must be a non-negative integer, not {size!r}")
        return from_bytes(spec, shape, (binary or _BinaryCursor(None)).take(name, size, nbytes(spec, shape)))
    if not isinstance(data, list):
        if data is None:
            raise BadRequest(
                f"input {name!r} has no 'data' (a JSON list, or parameters.binary_data_size with "
                "the binary tensor data extension)"
            )
        raise BadRequest(f"input {name!r}: 'data' must be a list, flat or nested")
    array = _to_array(data, spec)
    expected = math.prod(shape)
    if array.ndim == 1 and len(shape) != 1:
        if array.size != expected:
            raise InvalidInput(f"input {name!r}: data has {array.size} values but shape {shape} needs {expected}")
        return array.reshape(shape)
    if array.shape != tuple(shape):
        if array.ndim == 1:
            raise InvalidInput(f"input {name!r}: data has {array.size} values but shape {shape} needs {expected}")
        raise InvalidInput(f"input {name!r}: nested data has shape {list(array.shape)} but 'shape' says {shape}")
    return array


def check_tensor(spec, datatype, shape):
    """A request tensor's datatype and shape (a list of ints) against the input's spec."""
    name = spec.name
    if datatype != spec.datatype:
        if not isinstance(datatype, str) or datatype not in DATATYPES:  # a list or object too (unhashable)
            if datatype == "BYTES":
                raise InvalidInput(f"input {name!r}: datatype BYTES is not served; the model expects {spec.datatype}")
            raise InvalidInput(
                f"input {name!r}: {repr(datatype)[:60]} is not an Open Inference Protocol datatype; "
                f"the model expects {spec.datatype}"
            )
        raise InvalidInput(
            f"input {name!r}: datatype {datatype} does not match the model, which expects {spec.datatype}"
        )
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise BadRequest(f"input {name!r}: 'shape' must be a list of non-negative integers, not {shape!r}")
    if spec.shape is not None:
        if len(shape) != len(spec.shape):
            raise InvalidInput(
                f"input {name!r}: shape {shape} has {len(shape)} dimensions but the model expects "
                f"{len(spec.shape)}: {spec.shape_text()}"
            )
        for axis, size in spec.fixed:
            if shape[axis] != size:
                raise InvalidInput(
                    f"input {name!r}: shape {shape} does not fit the model's {spec.shape_text()} "
                    f"(dimension {axis} must be {size})"
                )


def nbytes(spec, shape):
    """The size of a tensor of ``shape`` as raw bytes."""
    return math.prod(shape) * spec.dtype.itemsize


def from_bytes(spec, shape, raw):
    """An input tensor from its raw little-endian bytes (``len(raw)`` already checked against
    nbytes): a view without copy when aligned, else an aligned copy for onnxruntime."""
    array = np.frombuffer(raw, dtype=spec.dtype.newbyteorder("<")).reshape(shape)
    if not array.flags.aligned or not array.dtype.isnative:
        array = array.astype(spec.dtype)
    if spec.dtype.kind == "b" and array.size and array.view(np.uint8).max() > 1:
        raise InvalidInput(f"input {spec.name!r}: BOOL data must be bytes 0 or 1")
    if spec.dtype.kind == "f":
        _check_finite(array, spec)
    return array


def from_values(spec, values):
    """An input tensor from a flat sequence of typed values (gRPC's typed contents), range-checked."""
    return _to_array(values, spec)


def _to_array(data, spec):
    """The data as an ndarray of the spec's dtype. Numbers only (no strings, objects or nulls);
    floating-point tensors must be finite: NaN, Infinity and values beyond the datatype's range
    (1e400, or 70000 as FP16) are refused, naming the tensor."""
    dtype = spec.dtype
    try:
        raw = np.array(data)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(
            f"input {spec.name!r}: data is not a regular (flat or evenly nested) list of "
            f"{spec.datatype} values ({_first_line(exc)})"
        ) from None
    if raw.dtype.kind not in "iufb":
        raise InvalidInput(f"input {spec.name!r}: {spec.datatype} data must be numbers (got {_kind_text(raw)})")
    if dtype.kind == "f":
        if raw.dtype.kind == "f" or raw.size and dtype.itemsize < 4:
            with np.errstate(over="ignore", invalid="ignore"):
                array = raw.astype(dtype)
            return _check_finite(array, spec)
        return raw.astype(dtype)
    if raw.size == 0:
        return raw.astype(dtype)
    if dtype.kind == "b":
        if raw.dtype.kind == "b" or (raw.dtype.kind in "iu" and ((raw == 0) | (raw == 1)).all()):
            return raw.astype(dtype)
        raise InvalidInput(f"input {spec.name!r}: BOOL data must be true/false")
    if raw.dtype.kind not in "iub":
        raise InvalidInput(
            f"input {spec.name!r}: {spec.datatype} data must be integers (got {raw.dtype.kind!r}-kind "
            "values such as floats or strings)"
        )
    info = np.iinfo(dtype)
    if raw.dtype.kind != "b" and (raw.min() < info.min or raw.max() > info.max):
        raise InvalidInput(f"input {spec.name!r}: values outside the {spec.datatype} range [{info.min}, {info.max}]")
    return raw.astype(dtype)


def _check_finite(array, spec):
    """Floating-point inputs must be finite, on every transport: JSON has no NaN or Infinity, and
    one rule for all keeps a request's answer the same whichever way it travels."""
    if not np.isfinite(array).all():
        raise InvalidInput(
            f"input {spec.name!r}: {spec.datatype} data must be finite numbers (got NaN, "
            f"Infinity or a value beyond the {spec.datatype} range)"
        )
    return array


def _kind_text(raw):
    if raw.dtype.kind in "US":
        return "strings"
    return "integers beyond 64 bits" if all(isinstance(v, int) for v in raw.flat) else "objects, nulls or mixed values"


def _first_line(exc):
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# --- responses -------------------------------------------------------------------------------

DATATYPE_OF = {dtype: name for name, dtype in DATATYPES.items()}  # np.dtype -> OIP (dtype.name is slow)
# Enough significant digits to round-trip the value exactly; shorter than float64's repr.
FLOAT_FORMATS = {"FP32": "%.9g", "FP16": "%.5g"}
_formats = {}  # (format, count) -> "%.9g,%.9g,..."
_names = {}  # output name -> its JSON string, as bytes


def response_prefix(model, version):
    """The constant start of a version's responses (built once per route)."""
    return ('{"model_name":' + json.dumps(model) + ',"model_version":' + json.dumps(version) + ",").encode()


def encode_response(prefix, request_id, names, arrays, wanted=None):
    """The OIP infer response as JSON bytes: ``prefix`` (from response_prefix), the id, and
    every output with its data flat. Assembled by hand: this is the hottest path of a request."""
    return b"".join(_response_parts(prefix, request_id, names, arrays, wanted, (), None))


def encode_binary_response(prefix, request_id, names, arrays, wanted, binary):
    """(body, JSON header length): the response with the outputs named in ``binary`` as raw
    bytes after the JSON (``binary_data_size`` each), the others in JSON."""
    raw = []
    header = b"".join(_response_parts(prefix, request_id, names, arrays, wanted, binary, raw))
    return b"".join([header, *raw]), len(header)


def _response_parts(prefix, request_id, names, arrays, wanted, binary, raw):
    parts = [prefix]
    if request_id is not None:
        parts.append(b'"id":' + json.dumps(request_id).encode() + b",")
    parts.append(b'"outputs":[')
    first = True
    for name, array in zip(names, arrays):
        if wanted is not None and name not in wanted:
            continue
        datatype = DATATYPE_OF.get(array.dtype)
        if datatype is None:
            raise InferenceFailed(f"output {name!r} has dtype {array.dtype}, which JSON responses do not carry")
        encoded_name = _names.get(name)
        if encoded_name is None:
            encoded_name = _names[name] = json.dumps(name).encode()
        parts.append(b'{"name":' if first else b',{"name":')
        parts.append(encoded_name)
        if name in binary:
            data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).reshape(-1).view(np.uint8).data
            raw.append(data)
            parts.append(
                f',"datatype":"{datatype}","shape":{list(array.shape)},'
                f'"parameters":{{"binary_data_size":{len(data)}}}}}'.encode()
            )
        else:
            parts.append(
                f',"datatype":"{datatype}","shape":{list(array.shape)},'
                f'"data":[{_data_text(array, datatype)}]}}'.encode()
            )
        first = False
    parts.append(b"]}")
    return parts


def _data_text(array, datatype):
    values = array.ravel().tolist()
    if not values:
        return ""
    if datatype in FLOAT_FORMATS:
        count = len(values)
        template = _formats.get((datatype, count))
        if template is None:
            template = ",".join([FLOAT_FORMATS[datatype]] * count)
            if count <= 4096:
                _formats[(datatype, count)] = template
        text = template % tuple(values)
    elif datatype == "FP64":
        text = ",".join(map(repr, values))
    elif datatype == "BOOL":
        return ",".join(["true" if v else "false" for v in values])
    else:
        return ",".join(map(str, values))
    if "n" in text:  # nan or inf: JSON has no number for them
        return _non_finite_text(values, datatype)
    return text


# Non-finite outputs: JSON (RFC 8259) has no NaN or Infinity, so they are written as the strings
# "NaN", "Infinity" and "-Infinity" (what JavaScript's Number(), Python's float() and numpy parse);
# every other value stays a number. A client that only expects numbers fails loudly, not silently.
_NON_FINITE = {"nan": '"NaN"', "inf": '"Infinity"', "-inf": '"-Infinity"'}


def _non_finite_text(values, datatype):
    number = (FLOAT_FORMATS[datatype].__mod__) if datatype in FLOAT_FORMATS else repr
    return ",".join(_NON_FINITE.get(text, text) for text in map(number, values))


def error_body(message):
    return json.dumps({"error": message}).encode()
