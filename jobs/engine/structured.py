"""Structured pruning with fine-tuning: whole channels and neurons removed, so the model is
genuinely smaller and faster with dense kernels. Plain Python: no Django.

The ONNX graph is rebuilt as torch layers (torch_graph), torch-pruning removes the least
important output channels of every convolution and hidden linear layer (L2 norm of each
channel's weights, grouped over the layers that depend on each other, so shapes stay
consistent), the smaller model is fine-tuned on labelled data to recover accuracy, and written
back as ONNX. Sparsities are fractions of channels; accuracies fractions.
"""

from .errors import EngineError
from .output import check_output, removed_on_error, source_and_output, tool_versions
from .progress import no_progress
from .torch_graph import export_onnx, onnx_to_torch
from .training import accuracy, dataset_tensors, forward_check, torch_device, train


def prune_structured(
    src,
    dst,
    *,
    training,
    evaluation=None,
    sparsity=0.5,
    finetune_epochs=5,
    learning_rate=1e-3,
    batch_size=64,
    device="cpu",
    progress=no_progress,
):
    """Remove ``sparsity`` of the channels of each prunable layer (the output layer keeps its
    classes), then fine-tune ``finetune_epochs`` on ``training`` ({input: array, "labels": array});
    accuracy before pruning, after pruning and after fine-tuning is measured on ``evaluation``
    (the training data when there is none)."""
    import torch
    import torch_pruning as tp

    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 < sparsity < 1:
        raise EngineError(f"sparsity must be a fraction of channels between 0 and 1, not {sparsity!r}.")
    src, dst = source_and_output(src, dst)
    with removed_on_error(dst):
        progress(2, "Rebuilding the ONNX graph as torch layers")
        module, inputs, outputs = onnx_to_torch(src)
        if len(inputs) != 1 or len(outputs) != 1:
            raise EngineError("Structured pruning takes a model with one input and one output (class scores).")
        x, labels = dataset_tensors(training, inputs[0], what="training dataset", need_labels=True)
        classes = forward_check(module, x, what="training dataset")
        if int(labels.max()) >= classes or int(labels.min()) < 0:
            raise EngineError(
                f"The training labels run from {int(labels.min())} to {int(labels.max())}, but the "
                f"model scores {classes} classes."
            )
        notes = []
        if evaluation is not None:
            eval_x, eval_labels = dataset_tensors(evaluation, inputs[0], what="evaluation dataset", need_labels=True)
            forward_check(module, eval_x, what="evaluation dataset", classes=classes)
        else:
            eval_x, eval_labels = x, labels
            notes.append("No evaluation dataset: accuracies are on the training data (optimistic).")
        run_on, device_notes = torch_device(device)
        notes += device_notes
        before = accuracy(module, eval_x, eval_labels)

        progress(10, f"Removing {sparsity:.0%} of the channels of each layer (torch-pruning)")
        layers = {name: m for name, m in module.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
        widths = {name: _width(m) for name, m in layers.items()}
        head = _output_layer(module, x, layers)
        try:
            pruner = tp.pruner.MetaPruner(
                module,
                x[:2],
                tp.importance.GroupMagnitudeImportance(p=2),
                pruning_ratio=float(sparsity),
                ignored_layers=[head],
            )
            pruner.step()
        except Exception as exc:
            raise EngineError(f"torch-pruning cannot prune this graph: {exc}") from exc
        per_layer = {
            name: {
                "channels_before": widths[name],
                "channels_after": _width(m),
                "sparsity": round(1 - _width(m) / widths[name], 4),
            }
            for name, m in layers.items()
            if name != _name_of(module, head)
        }
        if all(entry["channels_after"] == entry["channels_before"] for entry in per_layer.values()):
            raise EngineError(
                "No channel could be removed: the model has no hidden convolution or linear layer "
                "(only the output layer, which keeps its classes)."
            )
        forward_check(module, x, what="training dataset", classes=classes)
        pruned = accuracy(module, eval_x, eval_labels)
        partial = {"accuracy_before": before, "accuracy_pruned": pruned}
        progress(20, f"Pruned: accuracy {before:.1%} → {pruned:.1%}; fine-tuning", partial)

        module.to(run_on)
        train_labels = labels.to(run_on)
        curve = train(
            module,
            x,
            lambda out, batch: torch.nn.functional.cross_entropy(out, train_labels[batch]),
            epochs=finetune_epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            device=run_on,
            progress=progress,
            start=20,
            end=80,
            what="fine-tuning",
            extra=partial,
        )
        module.to("cpu")
        after = accuracy(module, eval_x, eval_labels)

        progress(82, "Exporting the pruned model to ONNX")
        export_onnx(module, dst, example=x[:2], input_name=inputs[0], output_name=outputs[0])
        params_before = sum(w["channels_before"] for w in per_layer.values())
        params_after = sum(w["channels_after"] for w in per_layer.values())
        recipe = {
            "method": "prune_structured",
            "library": f"torch-pruning {tp.__version__}",
            "importance": "group L2 magnitude",
            "sparsity": float(sparsity),
            "layers": per_layer,
            "channels_kept": round(params_after / params_before, 4),
            "fine_tuning": {
                "epochs": finetune_epochs,
                "learning_rate": learning_rate,
                "batch_size": batch_size,
                "optimizer": "Adam",
                "loss": "cross-entropy on labels",
                "device": run_on,
                "samples": len(x),
                "loss_curve": curve,
            },
            "accuracy": {
                "before": before,
                "after_pruning": pruned,
                "after_fine_tuning": after,
                "on": "evaluation dataset" if evaluation is not None else "training dataset",
            },
            "tools": {**tool_versions(), "torch": torch.__version__},
        }
        notes = [
            f"{1 - params_after / params_before:.0%} of the hidden channels removed; accuracy {before:.2%} "
            f"before, {pruned:.2%} right after pruning, {after:.2%} after {finetune_epochs} epoch(s) of "
            "fine-tuning."
        ] + notes
        result = check_output(dst, recipe, notes, progress)
    result.summary = {
        "accuracy_before": before,
        "accuracy_pruned": pruned,
        "accuracy_after": after,
        "accuracy_delta": round(after - before, 6),
        "loss_curve": curve,
        "channels_kept": recipe["channels_kept"],
    }
    return result


def check_model(params, io_signature):
    """(parameter, message) when the model cannot be pruned this way, before anything is queued."""
    inputs, outputs = io_signature.get("inputs", []), io_signature.get("outputs", [])
    if inputs and (len(inputs) != 1 or len(outputs) != 1):
        return "method", "Structured pruning takes a model with one input and one output (class scores)."
    return None


def _width(layer):
    import torch

    return layer.out_channels if isinstance(layer, torch.nn.Conv2d) else layer.out_features


def _name_of(module, layer):
    return next(name for name, m in module.named_modules() if m is layer)


def _output_layer(module, x, layers):
    """The last convolution or linear layer to run: it gives the classes, which stay."""
    order = []
    hooks = [m.register_forward_hook(lambda m, *_: order.append(m)) for m in layers.values()]
    try:
        import torch

        with torch.no_grad():
            module(x[:2])
    finally:
        for hook in hooks:
            hook.remove()
    if not order:
        raise EngineError("The model has no convolution or linear layer to prune.")
    return order[-1]
