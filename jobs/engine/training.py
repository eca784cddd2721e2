"""Training shared by the methods that train (structured pruning's fine-tuning, distillation):
data checked against the model, the device, a loop that reports its loss curve and stops
between steps when the job is cancelled, and accuracy. Plain Python: no Django."""

import time

import numpy as np

from .errors import EngineError, first_line

REPORT_EVERY_S = 0.5  # progress (and so a cancellation check) at most this often, and every epoch


def torch_device(device):
    """("cuda" or "cpu", notes): CUDA on a GPU target when torch has it."""
    import torch

    if device == "cuda":
        if torch.cuda.is_available():
            return "cuda", []
        return "cpu", ["The target is a GPU but this worker's torch has no CUDA: trained on the CPU."]
    return "cpu", []


def dataset_tensors(data, input_name, *, what, need_labels):
    """(inputs as a float32 tensor, labels as an int64 tensor or None) from a dataset's arrays."""
    import torch

    if input_name not in data:
        raise EngineError(
            f"The {what} has no array {input_name!r}, the model's input; it has {', '.join(sorted(data)) or 'nothing'}."
        )
    x = np.asarray(data[input_name])
    if x.dtype.kind not in "fiu" or x.ndim < 2 or len(x) < 2:
        raise EngineError(
            f"The {what}'s {input_name!r} must be numbers with samples along the first axis "
            f"(at least 2), not {x.dtype} of shape {list(x.shape)}."
        )
    labels = data.get("labels")
    if labels is None:
        if need_labels:
            raise EngineError(f"The {what} has no 'labels' array: fine-tuning needs a class per sample.")
        return torch.from_numpy(x.astype(np.float32)), None
    labels = np.asarray(labels)
    if labels.shape != (len(x),) or labels.dtype.kind not in "iu":
        raise EngineError(
            f"The {what}'s labels must be whole numbers, one per sample ({len(x)}), not "
            f"{labels.dtype} of shape {list(labels.shape)}."
        )
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(labels.astype(np.int64))


def forward_check(module, x, *, what, classes=None):
    """Run ``module`` on two samples; its output must be (batch, classes)."""
    import torch

    try:
        with torch.no_grad():
            out = module.eval()(x[:2])
    except Exception as exc:
        raise EngineError(
            f"The model cannot run on the {what}: {first_line(exc)}. Check that its arrays have the "
            "model's input shape."
        ) from exc
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or (classes is not None and out.shape[1] != classes):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        want = f"(batch, {classes})" if classes is not None else "(batch, classes)"
        raise EngineError(f"The model's output is {shape}; it must be class scores {want}.")
    return out.shape[1]


def accuracy(module, x, labels, *, device="cpu", batch_size=256):
    import torch

    module.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            out = module(x[start : start + batch_size].to(device))
            correct += int((out.argmax(dim=1).cpu() == labels[start : start + batch_size]).sum())
    return correct / len(x)


def train(
    module,
    x,
    loss_fn,
    *,
    epochs,
    learning_rate,
    batch_size,
    device,
    progress,
    start,
    end,
    what,
    seed=0,
    curve=None,
    extra=None,
):
    """Adam on ``loss_fn(outputs, batch indices)`` for ``epochs`` over shuffled batches of ``x``.
    Reports ``start``..``end`` percent with the loss curve so far (mean loss per epoch) in the
    partial result; returns the curve."""
    import torch

    curve = [] if curve is None else curve
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=learning_rate)
    steps = max(1, (len(x) + batch_size - 1) // batch_size)
    last = 0.0
    for epoch in range(1, epochs + 1):
        module.train()
        total, seen = 0.0, 0
        for step, batch in enumerate(torch.randperm(len(x), generator=generator).split(batch_size), start=1):
            optimizer.zero_grad()
            loss = loss_fn(module(x[batch].to(device)), batch)
            if not torch.isfinite(loss):
                raise EngineError(f"The {what} loss became {loss.item()} at epoch {epoch}: lower the learning rate.")
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            seen += len(batch)
            now = time.monotonic()
            if now - last >= REPORT_EVERY_S and step < steps:
                last = now
                done = (epoch - 1 + step / steps) / epochs
                progress(start + (end - start) * done, f"{what}: epoch {epoch} of {epochs}, step {step} of {steps}")
        curve.append({"epoch": len(curve) + 1, "stage": what, "loss": round(total / seen, 6)})
        last = time.monotonic()
        progress(
            start + (end - start) * epoch / epochs,
            f"{what}: epoch {epoch} of {epochs}, loss {total / seen:.4f}",
            {"loss_curve": curve, **(extra or {})},
        )
    module.eval()
    return curve
