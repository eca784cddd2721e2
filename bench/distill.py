"""Distillation and structured pruning on digits, measured side by side (issue 17's goals).

A digits CNN teacher (convolutions of 32 and 64 channels, trained here in seconds) is
1. pruned with `prune_structured` (50 % of the channels of every hidden layer, then fine-tuned):
   size and p50 latency at batch 32 against the teacher, both timed in this process one run of
   each per round in random order on one-thread sessions, and the accuracy drop.
   Goals: latency ≤ 0.6× the teacher's, accuracy drop ≤ 1 point.
2. distilled with `distill` into a small student, against the same student (same shape, seed,
   epochs, learning rate, data) trained on the labels alone (the same engine with alpha=1: only
   the cross-entropy term), over several seeds:
   a. the labelled training set as the transfer set (the fair comparison; the goal: distillation
      wins on the mean over seeds, or the bench says it did not);
   b. few labels: the labels-only student gets 10 % of the training set with labels, the
      distilled one every training input without labels (the teacher's soft targets only).
A last check that the student learns from the soft targets: alpha=0 (no labels at all) at
temperature 1 and 4.

    .venv/bin/python bench/distill.py [--seeds 3] [--seconds 3]
"""

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard.demo import digits_data, export_onnx, train_digits_cnn  # noqa: E402
from jobs.engine.distill import distill  # noqa: E402
from jobs.engine.structured import prune_structured  # noqa: E402

LATENCY_GOAL = 0.6
ACCURACY_DROP_GOAL = 0.01
BATCH = 32


def interleaved_p50(paths, feeds, *, seconds, threads=1):
    """Median ms per model, one run of each per round in a fresh random order, on sessions of
    ``threads`` intra-op threads (one: on a shared machine a multi-threaded session waits on
    whichever of its threads lost its core, which measures the neighbours, not the model); also
    the interquartile range relative to the median, and the round count."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = {
        name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for name, path in paths.items()
    }
    for session in sessions.values():
        for _ in range(5):
            session.run(None, feeds)
    started = time.perf_counter()
    for session in sessions.values():
        session.run(None, feeds)
    rounds = int(min(2000, max(30, seconds / max(time.perf_counter() - started, 1e-6))))
    names, times = list(sessions), {name: [] for name in sessions}
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for index in rng.permutation(len(names)):
            begin = time.perf_counter_ns()
            sessions[names[index]].run(None, feeds)
            times[names[index]].append(time.perf_counter_ns() - begin)
    p50 = {name: float(np.median(t)) / 1e6 for name, t in times.items()}
    spread = {name: float(np.subtract(*np.percentile(t, [75, 25]))) / 1e6 / p50[name] for name, t in times.items()}
    return p50, spread, rounds


def accuracy(path, x, labels):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return float((session.run(None, {"x": x})[0].argmax(axis=1) == labels).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="students trained per setting (default 3)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per latency comparison")
    parser.add_argument("--student-width", type=int, default=4, help="the cnn student's first channels")
    parser.add_argument("--epochs", type=int, default=15, help="student training epochs")
    parser.add_argument("--teacher-epochs", type=int, default=20, help="teacher training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=8, help="fine-tuning epochs after pruning")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import onnxruntime
    import torch

    print(
        f"# bench/distill.py on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    )
    data = digits_data()
    images = lambda a: a.reshape(-1, 1, 8, 8)  # noqa: E731
    train = {"x": images(data.train_x), "labels": data.train_y}
    test = {"x": images(data.test_x), "labels": data.test_y}

    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        module, teacher_accuracy = train_digits_cnn(data, epochs=args.teacher_epochs, channels=(32, 64), hidden=128)
        teacher = export_onnx(module, tmp / "teacher.onnx", example_shape=(2, 1, 8, 8))
        print(
            f"teacher: CNN 32/64 channels, hidden 128, {os.path.getsize(teacher):,} B, test accuracy "
            f"{teacher_accuracy:.2%} (trained in {time.perf_counter() - started:.0f} s)"
        )

        # --- 1. structured pruning --------------------------------------------------------------
        started = time.perf_counter()
        pruned = prune_structured(
            teacher,
            tmp / "pruned.onnx",
            training=train,
            evaluation=test,
            sparsity=0.5,
            finetune_epochs=args.finetune_epochs,
        )
        measured = pruned.recipe["accuracy"]
        feeds = {"x": test["x"][:BATCH]}
        p50, spread, rounds = interleaved_p50(
            {"teacher": str(teacher), "pruned": pruned.output_path}, feeds, seconds=args.seconds
        )
        latency = p50["pruned"] / p50["teacher"]
        drop = measured["before"] - measured["after_fine_tuning"]
        print(
            f"\n== structured pruning, 50 % of channels, {args.finetune_epochs} fine-tuning epochs "
            f"({time.perf_counter() - started:.0f} s)"
        )
        print(
            f"size      {os.path.getsize(teacher):>10,} B -> {pruned.size_bytes:>10,} B   "
            f"{pruned.size_bytes / os.path.getsize(teacher):.2f}x"
        )
        print(
            f"p50 b{BATCH}    {p50['teacher']:>8.3f} ms -> {p50['pruned']:>8.3f} ms   {latency:.2f}x  "
            f"(IQR/median {spread['teacher']:.0%} / {spread['pruned']:.0%}, {rounds} rounds, 1 thread)"
        )
        print(
            f"accuracy  {measured['before']:.2%} -> {measured['after_pruning']:.2%} right after pruning -> "
            f"{measured['after_fine_tuning']:.2%} fine-tuned (drop {drop * 100:.2f} pt)"
        )
        print(
            f"goal latency <= {LATENCY_GOAL}x: {'met' if latency <= LATENCY_GOAL else 'NOT met'}; "
            f"goal accuracy drop <= {ACCURACY_DROP_GOAL * 100:.0f} pt: "
            f"{'met' if drop <= ACCURACY_DROP_GOAL else 'NOT met'}"
        )

        # --- 2. distillation against labels only -------------------------------------------------
        def student(name, training, alpha, seed, temperature=4.0):
            result = distill(
                teacher,
                tmp / f"{name}-{seed}.onnx",
                training=training,
                evaluation=test,
                student="cnn",
                student_width=args.student_width,
                alpha=alpha,
                epochs=args.epochs,
                learning_rate=3e-3,
                batch_size=32,
                temperature=temperature,
                seed=seed,
            )
            return result, result.recipe["measured"]["student_accuracy"]

        few = np.random.default_rng(0).permutation(len(train["x"]))[: len(train["x"]) // 10]
        settings = {
            "a. same labelled data": ({**train}, {**train}),
            "b. 10 % labelled": (
                {"x": train["x"], "labels": None},
                {"x": train["x"][few], "labels": train["labels"][few]},
            ),
        }
        outcome = {}
        for setting, (transfer, labelled) in settings.items():
            started = time.perf_counter()
            transfer = {k: v for k, v in transfer.items() if v is not None}
            kd, ce = [], []
            for seed in range(args.seeds):
                result, value = student("kd", transfer, 0.5, seed)
                kd.append(value)
                ce.append(student("ce", labelled, 1.0, seed)[1])
            outcome[setting] = (np.mean(kd), np.mean(ce))
            print(
                f"\n== distillation, {setting} ({time.perf_counter() - started:.0f} s, {args.seeds} seeds, "
                f"{args.epochs} epochs, cnn student width {args.student_width})"
            )
            print(
                f"student {result.recipe['student']['parameters']:,} parameters, {result.size_bytes:,} B "
                f"({result.size_bytes / os.path.getsize(teacher):.3f}x the teacher's "
                f"{os.path.getsize(teacher):,} B)"
            )
            print(
                f"distilled (T=4, alpha=0.5{', all inputs, no labels: soft targets only' if setting.startswith('b') else ''}): "
                f"{' '.join(f'{v:.2%}' for v in kd)}  mean {np.mean(kd):.2%}"
            )
            print(f"labels only (alpha=1):          {' '.join(f'{v:.2%}' for v in ce)}  mean {np.mean(ce):.2%}")
            print(
                f"teacher {teacher_accuracy:.2%}; distillation {'wins' if np.mean(kd) > np.mean(ce) else 'does NOT win'} "
                f"by {(np.mean(kd) - np.mean(ce)) * 100:+.2f} pt"
            )
        feeds = {"x": test["x"][:BATCH]}
        p50, _, rounds = interleaved_p50(
            {"teacher": str(teacher), "student": result.output_path}, feeds, seconds=args.seconds
        )
        print(
            f"\nstudent p50 b{BATCH}: {p50['student']:.3f} ms vs teacher {p50['teacher']:.3f} ms "
            f"({p50['student'] / p50['teacher']:.2f}x, {rounds} rounds)"
        )

        # --- 3. soft targets alone --------------------------------------------------------------
        print("\n== soft targets only (alpha=0, no labels), seed 0")
        for temperature in (1.0, 4.0):
            result, value = student(f"soft{temperature}", {"x": train["x"]}, 0.0, 0, temperature=temperature)
            print(
                f"T={temperature:g}: accuracy {value:.2%}, agreement with the teacher "
                f"{result.recipe['measured']['agreement']:.1%}"
            )
        won = outcome["a. same labelled data"][0] > outcome["a. same labelled data"][1]
        print(f"\ngoal distillation beats labels only on the same data: {'met' if won else 'NOT met'}")


if __name__ == "__main__":
    main()
