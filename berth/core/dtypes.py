"""The onnxruntime type names and the numpy dtypes they stand for (the numeric and boolean
tensors Berth handles)."""

import numpy as np

# onnxruntime's NodeArg.type -> numpy dtype name
ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}


def numpy_dtype(ort_type, default=None):
    """The numpy dtype of an onnxruntime type name; ``default`` (a dtype name or None) for a type
    Berth does not handle."""
    name = ORT_TYPES.get(ort_type, default)
    return np.dtype(name) if name is not None else None
