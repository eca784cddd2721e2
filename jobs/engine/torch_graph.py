"""An ONNX classifier as a trainable torch module, and back. Plain Python: no Django.

``onnx_to_torch`` rebuilds an ONNX graph of common layers (Conv, Gemm, MatMul + Add, BatchNorm,
pooling, activations, Flatten / Reshape to rows, residual Add, Concat) as a ``torch.fx``
GraphModule whose layers are real ``nn.Conv2d`` / ``nn.Linear`` / ``nn.BatchNorm2d`` modules
with the ONNX weights: a module that trains, and that torch-pruning can prune (it follows the
layers' dependencies through autograd). Another operator is refused with its name.
``export_onnx`` writes a module back as one ONNX file with a dynamic batch axis.
"""

import operator

import numpy as np

from .errors import EngineError, first_line

ACTIVATIONS = {"Relu": "ReLU", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Gelu": "GELU"}
PASS_THROUGH = {"Identity", "Dropout"}
SUPPORTED = sorted(
    {
        "Conv",
        "Gemm",
        "MatMul",
        "Add",
        "BatchNormalization",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Flatten",
        "Reshape",
        "Concat",
        "Softmax",
        "LeakyRelu",
        *ACTIVATIONS,
        *PASS_THROUGH,
    }
)


def onnx_to_torch(path):
    """(GraphModule, input names, output names) for the ONNX model at ``path``."""
    import onnx
    import torch
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:  # Constant nodes are initializers by another name
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    unsupported = sorted({n.op_type for n in graph.node if n.op_type not in SUPPORTED and n.op_type != "Constant"})
    if unsupported:
        raise EngineError(
            f"This model uses {', '.join(unsupported)}, which Berth cannot train or prune "
            f"(it rebuilds {', '.join(SUPPORTED)} as torch layers). Use a simpler architecture, "
            "or another method."
        )
    inputs = [i.name for i in graph.input if i.name not in consts]
    outputs = [o.name for o in graph.output]
    users = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    for name in outputs:
        users[name] = users.get(name, 0) + 1

    root = torch.nn.Module()
    fx = torch.fx.Graph()
    values = {name: fx.placeholder(_ident(name)) for name in inputs}
    ranks = {i.name: len(i.type.tensor_type.shape.dim) for i in graph.input}
    count = {"n": 0}

    def add_module(kind, module, source, weight=None):
        count["n"] += 1
        name = f"{kind}{count['n']}"
        if weight and weight.endswith(".weight"):  # the exporter's module path: layers keep their torch names
            named = _ident(weight[: -len(".weight")])
            if not hasattr(root, named):
                name = named
        root.add_module(name, module)
        return fx.call_module(name, (values[source],))

    def param(array):
        return torch.nn.Parameter(torch.from_numpy(np.array(array, dtype=np.float32)))

    fused = set()
    for node in graph.node:
        op, ins, out = node.op_type, list(node.input), node.output[0]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if op == "Constant" or id(node) in fused:
            continue
        data = [name for name in ins if name and name not in consts]
        if op in PASS_THROUGH:
            values[out] = values[data[0]]
            continue
        if op == "Conv":
            weight = consts.get(ins[1])
            if weight is None or weight.ndim != 4:
                raise EngineError(
                    f"Conv {node.name or out}: only 2-D convolutions with constant weights are supported."
                )
            if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise EngineError(f"Conv {node.name or out}: auto_pad is not supported; export with explicit pads.")
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:]:
                raise EngineError(f"Conv {node.name or out}: asymmetric padding is not supported.")
            groups = attrs.get("group", 1)
            conv = torch.nn.Conv2d(
                weight.shape[1] * groups,
                weight.shape[0],
                tuple(weight.shape[2:]),
                stride=tuple(attrs.get("strides", [1, 1])),
                padding=tuple(pads[:2]),
                dilation=tuple(attrs.get("dilations", [1, 1])),
                groups=groups,
                bias=len(ins) > 2 and bool(ins[2]),
            )
            conv.weight = param(weight)
            if conv.bias is not None:
                conv.bias = param(consts[ins[2]])
            values[out] = add_module("conv", conv, data[0], ins[1])
        elif op in ("Gemm", "MatMul"):
            weight = consts.get(ins[1])
            if weight is None or weight.ndim != 2 or attrs.get("transA", 0) or ins[0] not in values:
                raise EngineError(f"{op} {node.name or out}: only a layer with constant 2-D weights is supported.")
            weight = weight if (op == "Gemm" and attrs.get("transB", 0)) else weight.T
            weight = weight * attrs.get("alpha", 1.0)
            bias = consts.get(ins[2]) * attrs.get("beta", 1.0) if op == "Gemm" and len(ins) > 2 and ins[2] else None
            if op == "MatMul" and users.get(out) == 1:  # MatMul then Add of a constant vector: one Linear
                following = [n for n in graph.node if out in n.input]
                add = following[0] if following else None
                if add is not None and add.op_type == "Add":
                    other = [name for name in add.input if name != out]
                    if other and other[0] in consts and consts[other[0]].ndim == 1:
                        bias = consts[other[0]]
                        fused.add(id(add))
                        out = add.output[0]
            linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            linear.weight = param(weight)
            if bias is not None:
                linear.bias = param(bias)
            values[out] = add_module("linear", linear, ins[0], ins[1])
        elif op == "BatchNormalization":
            scale, shift, mean, var = (consts[name] for name in ins[1:5])
            norm = torch.nn.BatchNorm2d(
                len(scale), eps=attrs.get("epsilon", 1e-5), momentum=1 - attrs.get("momentum", 0.9)
            )
            norm.weight, norm.bias = param(scale), param(shift)
            norm.running_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
            norm.running_var.copy_(torch.from_numpy(var.astype(np.float32)))
            values[out] = add_module("norm", norm, data[0], ins[1])
        elif op in ACTIVATIONS:
            values[out] = add_module("act", getattr(torch.nn, ACTIVATIONS[op])(), data[0])
        elif op == "LeakyRelu":
            values[out] = add_module("act", torch.nn.LeakyReLU(attrs.get("alpha", 0.01)), data[0])
        elif op in ("MaxPool", "AveragePool"):
            pads = list(attrs.get("pads", [0, 0, 0, 0]))
            if pads[:2] != pads[2:] or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                raise EngineError(f"{op} {node.name or out}: only symmetric explicit padding is supported.")
            kernel, stride = tuple(attrs["kernel_shape"]), tuple(attrs.get("strides", attrs["kernel_shape"]))
            ceil = bool(attrs.get("ceil_mode", 0))
            pool = (
                torch.nn.MaxPool2d(kernel, stride, tuple(pads[:2]), ceil_mode=ceil)
                if op == "MaxPool"
                else torch.nn.AvgPool2d(
                    kernel,
                    stride,
                    tuple(pads[:2]),
                    ceil_mode=ceil,
                    count_include_pad=bool(attrs.get("count_include_pad", 0)),
                )
            )
            values[out] = add_module("pool", pool, data[0])
        elif op == "GlobalAveragePool":
            values[out] = add_module("pool", torch.nn.AdaptiveAvgPool2d(1), data[0])
        elif op == "Flatten":
            if attrs.get("axis", 1) != 1:
                raise EngineError(f"Flatten {node.name or out}: only axis 1 (one row per sample) is supported.")
            values[out] = add_module("flatten", torch.nn.Flatten(1), data[0])
        elif op == "Reshape":
            shape = consts.get(ins[1])
            rows = shape is not None and len(shape) >= 2 and shape[0] in (-1, 0)
            if rows and len(shape) == 2 and shape[1] != 0:  # one row per sample: a flatten
                values[out] = add_module("flatten", torch.nn.Flatten(1), data[0])
            elif rows and all(int(d) > 0 for d in shape[1:]):  # rows into fixed sample shapes: an unflatten
                values[out] = add_module("unflatten", torch.nn.Unflatten(1, tuple(int(d) for d in shape[1:])), data[0])
            else:
                raise EngineError(
                    f"Reshape {node.name or out}: only a flatten to rows, or rows into a fixed "
                    "sample shape, is supported."
                )
        elif op == "Add":
            if len(data) != 2:
                raise EngineError(f"Add {node.name or out}: adding a constant is only supported after a MatMul.")
            values[out] = fx.call_function(operator.add, (values[data[0]], values[data[1]]))
        elif op == "Concat":
            values[out] = fx.call_function(torch.cat, ([values[name] for name in data],), {"dim": attrs.get("axis", 1)})
        elif op == "Softmax":
            values[out] = add_module("softmax", torch.nn.Softmax(dim=attrs.get("axis", -1)), data[0])
    missing = [name for name in outputs if name not in values]
    if missing:
        raise EngineError(f"The graph's outputs {', '.join(missing)} could not be rebuilt.")
    fx.output(values[outputs[0]] if len(outputs) == 1 else tuple(values[name] for name in outputs))
    module = torch.fx.GraphModule(root, fx)
    module.berth_input_ranks = [ranks[name] for name in inputs]
    return module, inputs, outputs


def _ident(name):
    text = "".join(c if c.isalnum() else "_" for c in name)
    return text if text and not text[0].isdigit() else f"layer_{text}"


def export_onnx(module, dst, *, example, input_name, output_name, opset=18):
    """``module`` (eval mode, on the CPU) as one ONNX file with a dynamic batch axis."""
    import torch

    module = module.to("cpu").eval()
    example = example[:2].to("cpu") if len(example) > 1 else example.repeat(2, *[1] * (example.dim() - 1))
    try:
        torch.onnx.export(
            module,
            (example,),
            str(dst),
            dynamo=True,
            external_data=False,
            opset_version=opset,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False,
        )
    except Exception as exc:
        raise EngineError(f"The trained model cannot be exported to ONNX: {first_line(exc)}") from exc
