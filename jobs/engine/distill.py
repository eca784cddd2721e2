"""Knowledge distillation: a small student learns from a teacher's soft targets. Plain Python:
no Django.

The teacher is an ONNX classifier run by onnxruntime once over the transfer set (its scores are
the soft targets); the student is one of the declared shapes in STUDENTS, sized from the
teacher's input and classes. The student minimizes (1 - alpha) * T² * KL(teacher_T || student_T)
+ alpha * cross-entropy(labels) (Hinton et al., 2015: softmax at temperature T on both sides,
the T² keeps the soft-target gradients at the scale of the hard ones); without labels only the
KL term is used. The trained student is written as ONNX with the teacher's input and output
names. Accuracies are fractions.
"""

import numpy as np

from .errors import EngineError
from .evaluate import check_feeds, compare_outputs, run_model, session_input_specs
from .output import check_output, removed_on_error, source_and_output, tool_versions
from .progress import no_progress
from .torch_graph import export_onnx
from .training import accuracy, dataset_tensors, forward_check, torch_device, train

STUDENTS = {
    "mlp": "rows flattened, two hidden layers of `student_width` units with ReLU, then the classes",
    "cnn": "for image inputs (batch, channels, height, width): 3×3 convolutions of `student_width` and "
    "2 × `student_width` channels with ReLU, 2×2 max pooling, then the classes",
}


def check_teacher(params, io_signature):
    """(parameter, message) when this teacher cannot be distilled into the chosen student, before
    anything is queued; None when it can (or the signature is not known)."""
    inputs, outputs = io_signature.get("inputs", []), io_signature.get("outputs", [])
    if not inputs:
        return None
    if len(inputs) != 1:
        return "method", f"Distillation takes a teacher with one input; this one has {len(inputs)}."
    if len(outputs) != 1 or len(outputs[0].get("shape") or []) != 2:
        return "method", "Distillation needs a teacher whose one output is class scores (batch, classes)."
    if params.get("student") == "cnn" and len(inputs[0].get("shape") or []) != 4:
        return "student", (
            f"A cnn student takes image inputs (batch, channels, height, width); this teacher's "
            f"input {inputs[0]['name']!r} has shape {inputs[0].get('shape')}. Use student 'mlp'."
        )
    return None


def build_student(kind, width, input_shape, classes, *, seed=0):
    """A fresh student module for samples of ``input_shape`` (without the batch axis)."""
    import torch
    from torch import nn

    if kind not in STUDENTS:
        raise EngineError(f"Unknown student {kind!r}: use one of {', '.join(STUDENTS)}.")
    torch.manual_seed(seed)
    if kind == "mlp":
        features = int(np.prod(input_shape))
        return nn.Sequential(
            nn.Flatten(1),
            nn.Linear(features, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, classes),
        )
    if len(input_shape) != 3:
        raise EngineError(
            f"A cnn student takes image inputs (batch, channels, height, width); this teacher's "
            f"input has samples of shape {list(input_shape)}. Use student 'mlp'."
        )
    channels, height, width_px = input_shape
    if height < 2 or width_px < 2:
        raise EngineError(f"A cnn student needs images of at least 2×2 pixels, not {height}×{width_px}.")
    pooled = (height // 2) * (width_px // 2) * 2 * width
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(1),
        nn.Linear(pooled, classes),
    )


def teacher_scores(src, data, what):
    """(teacher logits as float32 rows, input name, output name, notes); probabilities (a softmax
    output) become log-probabilities, which give the same softmax at any temperature."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise EngineError(
            f"Distillation takes a teacher with one input; this one has {len(inputs)} "
            f"({', '.join(i.name for i in inputs)})."
        )
    check_feeds(session_input_specs(session), data, what=what)
    scores, notes = run_model(src, data)
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise EngineError(
            f"The teacher's output {outputs[0].name!r} has shape {list(scores.shape)}; distillation "
            "needs class scores (batch, classes)."
        )
    if scores.min() >= 0 and np.allclose(scores.sum(axis=1), 1, atol=1e-3):
        scores = np.log(np.clip(scores, 1e-8, None))
        notes = notes + ["The teacher outputs probabilities; their logarithms were used as its logits."]
    return scores.astype(np.float32), inputs[0].name, outputs[0].name, notes


def distill(
    src,
    dst,
    *,
    training,
    evaluation=None,
    student="mlp",
    student_width=32,
    temperature=4.0,
    alpha=0.5,
    epochs=20,
    learning_rate=1e-3,
    batch_size=64,
    device="cpu",
    seed=0,
    progress=no_progress,
):
    """Train a ``student`` of ``student_width`` on the teacher at ``src`` over ``training``
    ({teacher input: array, optional "labels"}); write it to ``dst`` as ONNX."""
    import torch
    import torch.nn.functional as F

    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or temperature <= 0:
        raise EngineError(f"temperature must be a positive number, not {temperature!r}.")
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 <= alpha <= 1:
        raise EngineError(f"alpha must be a number from 0 to 1, not {alpha!r}.")
    src, dst = source_and_output(src, dst)
    with removed_on_error(dst):
        progress(2, "Running the teacher on the transfer set")
        soft, input_name, output_name, notes = teacher_scores(src, training, "training dataset")
        x, labels = dataset_tensors(training, input_name, what="training dataset", need_labels=False)
        classes = soft.shape[1]
        if labels is not None and (int(labels.max()) >= classes or int(labels.min()) < 0):
            raise EngineError(
                f"The training labels run from {int(labels.min())} to {int(labels.max())}, but the "
                f"teacher scores {classes} classes."
            )
        if labels is None:
            notes.append(
                "The training dataset has no labels: the student learned from the teacher's soft targets "
                "alone (alpha unused)."
            )
        used_alpha = alpha if labels is not None else 0.0

        module = build_student(student, student_width, tuple(x.shape[1:]), classes, seed=seed)
        forward_check(module, x, what="training dataset", classes=classes)
        run_on, device_notes = torch_device(device)
        notes += device_notes
        module.to(run_on)
        teacher = torch.from_numpy(soft).to(run_on)
        hard = labels.to(run_on) if labels is not None else None
        t = float(temperature)

        def loss_fn(out, batch):
            kl = (
                F.kl_div(
                    F.log_softmax(out / t, dim=1),
                    F.log_softmax(teacher[batch] / t, dim=1),
                    reduction="batchmean",
                    log_target=True,
                )
                * t
                * t
            )
            if hard is None or used_alpha == 0:
                return kl
            return (1 - used_alpha) * kl + used_alpha * F.cross_entropy(out, hard[batch])

        params = sum(p.numel() for p in module.parameters())
        partial = {"student": student, "student_width": student_width, "student_parameters": params}
        progress(8, f"Training a {student} student ({params:,} parameters) for {epochs} epoch(s)", partial)
        curve = train(
            module,
            x,
            loss_fn,
            epochs=epochs,
            learning_rate=learning_rate,
            batch_size=batch_size,
            device=run_on,
            progress=progress,
            start=8,
            end=85,
            what="distillation",
            seed=seed,
            extra=partial,
        )
        module.to("cpu")

        progress(86, "Measuring the student against the teacher")
        if evaluation is not None:
            eval_x, eval_labels = dataset_tensors(evaluation, input_name, what="evaluation dataset", need_labels=False)
            eval_teacher, _ = run_model(src, evaluation)
        else:
            eval_x, eval_labels, eval_teacher = x, labels, soft
            notes.append("No evaluation dataset: the figures are on the training data (optimistic).")
        with torch.no_grad():
            student_out = module.eval()(eval_x).numpy()
        fidelity = compare_outputs(
            student_out, reference=eval_teacher, labels=eval_labels.numpy() if eval_labels is not None else None
        )
        teacher_accuracy = (
            compare_outputs(eval_teacher, labels=eval_labels.numpy()).accuracy if eval_labels is not None else None
        )
        student_accuracy = accuracy(module, eval_x, eval_labels) if eval_labels is not None else None

        progress(88, "Exporting the student to ONNX")
        export_onnx(module, dst, example=x[:2], input_name=input_name, output_name=output_name)
        measured = {
            "teacher_accuracy": teacher_accuracy,
            "student_accuracy": student_accuracy,
            "accuracy_delta": (round(student_accuracy - teacher_accuracy, 6) if student_accuracy is not None else None),
            "agreement": fidelity.agreement,
            "on": "evaluation dataset" if evaluation is not None else "training dataset",
        }
        recipe = {
            "method": "distill",
            "student": {"shape": student, "width": student_width, "parameters": params, "describe": STUDENTS[student]},
            "temperature": t,
            "alpha": alpha,
            "alpha_used": used_alpha,
            "epochs": epochs,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "optimizer": "Adam",
            "device": run_on,
            "loss": "(1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + alpha * CE(labels)",
            "samples": len(x),
            "loss_curve": curve,
            "measured": measured,
            "tools": {**tool_versions(), "torch": torch.__version__},
        }
        if student_accuracy is not None:
            notes.insert(
                0,
                f"Student accuracy {student_accuracy:.2%} against the teacher's {teacher_accuracy:.2%}; "
                f"top-1 agreement with the teacher {fidelity.agreement:.1%}.",
            )
        result = check_output(dst, recipe, notes, progress)
    result.summary = {**measured, "loss_curve": curve, "student_parameters": params}
    return result
