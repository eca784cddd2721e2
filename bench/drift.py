"""Drift verdicts from binned counts against Evidently's verdicts on the raw samples, side by side.

The reference is 10,000 rows of N(0, 1) (numeric) and of 10 classes with unequal shares (class
predictions); Berth sees only their counts on the profile's bins (berth.core.drift.profile_edges
for numeric, one bin per class). Each grid point draws a current sample of n rows, hands the
raw samples to Evidently's stat tests and the counts to Berth's, and compares the verdicts of
the same test family at the same threshold:

- numeric: Kolmogorov–Smirnov (p ≤ 0.05), normed Wasserstein (≥ 0.1), PSI (≥ 0.1);
- classes: chi-square (p < 0.05), PSI (≥ 0.1), Jensen–Shannon (≥ 0.1).

Shifts: the mean (0 … 1 sd) at scales 1, 1.1 and 1.3; a tail mixture (2, 5 or 10 % of rows from
N(0, 4²)); a class mix moving 2 … 40 % of rows towards other classes. n = 500, 2,000 and
100,000. Then false alarms: 200 no-shift trials at each n, counting Berth's default verdict
(feature_drift: significant and material), and a day of per-minute evaluation of the demo's
drift rule (x.mean, x.std and the prediction; half the features; 2-minute windows at 10 rows/s)
with and without the 2-of-3-windows rule.

Evidently's tests come from evidently.legacy.calculations.stattests when the package is
importable (it pins plotly < 6, so it cannot share the project's environment: install it in a
separate one and run this file with that Python); otherwise from the same definitions written
here with scipy (ks_2samp, wasserstein_distance / std, PSI and Jensen–Shannon on Sturges bins of
both samples, chisquare on the reference proportions). With Evidently present, both run and
their agreement is printed too.

    .venv/bin/python bench/drift.py            # the full grid (a minute or two)
    .venv/bin/python bench/drift.py --small    # the make-test grid (seconds)

Exits 1 when a goal is missed: agreement ≥ 95 % over the grid, false alarms ≤ 5 % per
evaluation at each n, ≤ 1 alert per day of per-minute evaluation.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import stats
from scipy.spatial import distance

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from berth.core.drift import (  # noqa: E402
    DATASET_DRIFT_SHARE,
    feature_drift,
    ks,
    profile_edges,
    sustained,
    wasserstein,
)
from berth.core.stats import chi_square, js_distance, psi  # noqa: E402

SEED = 20261205
REFERENCE_ROWS = 10_000
CLASS_SHARES = np.array([0.2, 0.15, 0.12, 0.1, 0.1, 0.09, 0.08, 0.07, 0.05, 0.04])
AGREEMENT_GOAL = 0.95
FALSE_ALARM_GOAL = 0.05
ALERTS_PER_DAY_GOAL = 1
P_THRESHOLD, DISTANCE_THRESHOLD = 0.05, 0.1


# --- Evidently's tests on raw samples ----------------------------------------------------------


def _sturges_shares(reference, current, fill_zeroes):
    """Evidently's get_binned_data for a numeric column: Sturges bins over both samples."""
    bins = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    shares = [np.histogram(reference, bins)[0] / len(reference), np.histogram(current, bins)[0] / len(current)]
    if fill_zeroes:
        for p in shares:
            smallest = p[p != 0].min()
            np.place(p, p == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return shares


def _class_shares(reference, current, fill_zeroes):
    keys = np.union1d(reference, current)
    shares = [np.array([np.mean(sample == k) for k in keys]) for sample in (reference, current)]
    if fill_zeroes:
        for p in shares:
            smallest = p[p != 0].min()
            np.place(p, p == 0, smallest / 10**6 if smallest <= 0.0001 else 0.0001)
    return shares


def _scipy_psi(r, c):
    return float(np.sum((r - c) * np.log(r / c)))


SCIPY_NUMERIC = {
    "ks": lambda r, c: stats.ks_2samp(r, c).pvalue <= P_THRESHOLD,
    "wasserstein": lambda r, c: stats.wasserstein_distance(r, c) / max(float(np.std(r)), 0.001) >= DISTANCE_THRESHOLD,
    "psi": lambda r, c: _scipy_psi(*_sturges_shares(r, c, True)) >= DISTANCE_THRESHOLD,
}
SCIPY_CLASS = {
    "chi_square": lambda r, c: stats.chisquare(*_observed_expected(r, c)).pvalue < P_THRESHOLD,
    "psi": lambda r, c: _scipy_psi(*_class_shares(r, c, True)) >= DISTANCE_THRESHOLD,
    "js": lambda r, c: distance.jensenshannon(*_class_shares(r, c, False)) >= DISTANCE_THRESHOLD,
}


def _observed_expected(reference, current):
    keys = np.union1d(reference, current)
    observed = np.array([np.sum(current == k) for k in keys], dtype=float)
    expected = np.array([np.sum(reference == k) for k in keys], dtype=float) * len(current) / len(reference)
    return observed, expected


def evidently_tests():
    """{family: raw test} from Evidently itself, or None when it is not installed."""
    try:
        import pandas as pd
        from evidently.legacy.calculations import stattests as ev
        from evidently.legacy.core import ColumnType
    except ImportError:
        return None

    def wrap(test, kind, threshold):
        def run(reference, current):
            return bool(test(pd.Series(reference), pd.Series(current), kind, threshold).drifted)

        return run

    numeric, categorical = ColumnType.Numerical, ColumnType.Categorical
    return (
        {
            "ks": wrap(ev.ks_stat_test, numeric, P_THRESHOLD),
            "wasserstein": wrap(ev.wasserstein_stat_test, numeric, DISTANCE_THRESHOLD),
            "psi": wrap(ev.psi_stat_test, numeric, DISTANCE_THRESHOLD),
        },
        {
            "chi_square": wrap(ev.chi_stat_test, categorical, P_THRESHOLD),
            "psi": wrap(ev.psi_stat_test, categorical, DISTANCE_THRESHOLD),
            "js": wrap(ev.jensenshannon_stat_test, categorical, DISTANCE_THRESHOLD),
        },
    )


# --- Berth's tests on counts ---------------------------------------------------------------------


def berth_numeric(reference, current, edges):
    return {
        "ks": ks(reference, current)["p_value"] <= P_THRESHOLD,
        "wasserstein": wasserstein(reference, current, edges) >= DISTANCE_THRESHOLD,
        "psi": psi(reference, current) >= DISTANCE_THRESHOLD,
    }


def berth_class(reference, current):
    return {
        "chi_square": chi_square(reference, current)[1] < P_THRESHOLD,
        "psi": psi(reference, current) >= DISTANCE_THRESHOLD,
        "js": _js_natural(reference, current) >= DISTANCE_THRESHOLD,
    }


def _js_natural(reference, current):
    """Jensen–Shannon distance with natural logarithms, as scipy (and Evidently) compute it;
    js_distance uses base 2: the divergence differs by the factor ln 2."""
    return js_distance(reference, current) * np.sqrt(np.log(2))


def binned(values, edges):
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1).tolist()


def class_counts(labels):
    return np.bincount(labels, minlength=len(CLASS_SHARES)).tolist()


# --- the grid ------------------------------------------------------------------------------------


def numeric_shifts(small):
    means = (0.0, 0.1, 0.3, 1.0) if small else (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
    shifts = (
        [("mean", m, s) for m in means for s in (1.0, 1.3)]
        if small
        else [("mean", m, s) for m in means for s in (1.0, 1.1, 1.3)]
    )
    return shifts + [("tail", f, 4.0) for f in ((0.05,) if small else (0.02, 0.05, 0.1))]


def class_shifts(small):
    return [("mix", t, 0) for t in ((0.0, 0.05, 0.4) if small else (0.0, 0.02, 0.05, 0.1, 0.2, 0.4))]


def draw_numeric(rng, shift, n):
    kind, a, b = shift
    if kind == "mean":
        return rng.normal(a, b, n)
    values = rng.normal(0, 1, n)
    wide = rng.random(n) < a
    values[wide] = rng.normal(0, b, wide.sum())
    return values


def draw_classes(rng, shift, n):
    _, t, _ = shift
    shares = (1 - t) * CLASS_SHARES + t * CLASS_SHARES[::-1]  # t of the mass moves towards the rare classes
    return rng.choice(len(CLASS_SHARES), size=n, p=shares / shares.sum())


def agreement(rng, sizes, trials, small, raw_sets):
    """{(domain, family): [agree, ...]} per raw implementation, and [(shift, n, family, raw, berth)] misses."""
    reference = rng.normal(0, 1, REFERENCE_ROWS)
    edges = profile_edges(reference)
    reference_counts = binned(reference, edges)
    reference_classes = rng.choice(len(CLASS_SHARES), size=REFERENCE_ROWS, p=CLASS_SHARES)
    reference_class_counts = class_counts(reference_classes)
    results = {name: {} for name in raw_sets}
    misses = []
    for n in sizes:
        for _ in range(trials):
            for shift in numeric_shifts(small):
                current = draw_numeric(rng, shift, n)
                ours = berth_numeric(reference_counts, binned(current, edges), edges)
                _compare(results, misses, raw_sets, 0, "numeric", reference, current, ours, shift, n)
            for shift in class_shifts(small):
                current = draw_classes(rng, shift, n)
                ours = berth_class(reference_class_counts, class_counts(current))
                _compare(results, misses, raw_sets, 1, "class", reference_classes, current, ours, shift, n)
    return results, misses


def _compare(results, misses, raw_sets, domain_index, domain, reference, current, ours, shift, n):
    """Record whether Berth's verdicts agree with the first raw set's ("reference"), and whether
    each other raw set agrees with the first."""
    names = list(raw_sets)
    for family, test in raw_sets[names[0]][domain_index].items():
        raw = test(reference, current)
        results[names[0]].setdefault((domain, family), []).append(raw == ours[family])
        if raw != ours[family]:
            misses.append((shift, n, family, raw, ours[family]))
        for other in names[1:]:
            results[other].setdefault((domain, family), []).append(
                raw_sets[other][domain_index][family](reference, current) == raw
            )


def false_alarms(rng, sizes, trials):
    """{n: (numeric rate, class rate)} of feature_drift's verdict on no-shift samples, and the
    rate of Evidently's KS / chi-square on the same samples (scipy definitions)."""
    reference = rng.normal(0, 1, REFERENCE_ROWS)
    edges = profile_edges(reference)
    reference_counts = binned(reference, edges)
    reference_classes = rng.choice(len(CLASS_SHARES), size=REFERENCE_ROWS, p=CLASS_SHARES)
    reference_class_counts = class_counts(reference_classes)
    rates = {}
    for n in sizes:
        ours_numeric = ours_class = raw_numeric = raw_class = 0
        for _ in range(trials):
            current = rng.normal(0, 1, n)
            ours_numeric += feature_drift("column", reference_counts, binned(current, edges), edges, with_js=False)[
                "drifted"
            ]
            raw_numeric += SCIPY_NUMERIC["ks"](reference, current)
            labels = rng.choice(len(CLASS_SHARES), size=n, p=CLASS_SHARES)
            ours_class += feature_drift("class", reference_class_counts, class_counts(labels), with_js=False)["drifted"]
            raw_class += SCIPY_CLASS["chi_square"](reference_classes, labels)
        rates[n] = (ours_numeric / trials, ours_class / trials, raw_numeric / trials, raw_class / trials)
    return rates


def day_of_alerts(rng, minutes, rows_per_minute=600, window=2, needed=2, of=3):
    """Alerts opened by the demo's drift rule (half of x.mean, x.std and the prediction drift in
    the rule's window) over ``minutes`` of per-minute evaluation of steady traffic: (alerts with
    the needed-of-windows rule, alerts firing on any single window)."""
    reference = {"x.mean": rng.normal(0.3, 0.05, REFERENCE_ROWS), "x.std": rng.gamma(9, 0.05, REFERENCE_ROWS)}
    edges = {name: profile_edges(values) for name, values in reference.items()}
    reference_counts = {name: binned(values, edges[name]) for name, values in reference.items()}
    reference_classes = class_counts(rng.choice(len(CLASS_SHARES), size=REFERENCE_ROWS, p=CLASS_SHARES))
    per_minute = []
    for _ in range(minutes):
        means, spreads = rng.normal(0.3, 0.05, rows_per_minute), rng.gamma(9, 0.05, rows_per_minute)
        per_minute.append(
            {
                "x.mean": np.array(binned(means, edges["x.mean"])),
                "x.std": np.array(binned(spreads, edges["x.std"])),
                "prediction": np.array(
                    class_counts(rng.choice(len(CLASS_SHARES), size=rows_per_minute, p=CLASS_SHARES))
                ),
            }
        )
    window_drifted = []  # per minute: did the window ending then drift (dataset share)?
    for end in range(minutes):
        if end + 1 < window:
            window_drifted.append(None)
            continue
        counts = {name: sum(per_minute[m][name] for m in range(end + 1 - window, end + 1)) for name in per_minute[0]}
        verdicts = [
            feature_drift(
                kind,
                reference_counts.get(name, reference_classes),
                counts[name].tolist(),
                edges.get(name),
                with_js=False,
            )
            for name, kind in (("x.mean", "mean"), ("x.std", "std"), ("prediction", "class"))
        ]
        share = sum(v["drifted"] for v in verdicts) / len(verdicts)
        window_drifted.append(share >= DATASET_DRIFT_SHARE)
    windowed = single = 0
    was_windowed = was_single = False
    for end in range(minutes):
        # the last ``of`` disjoint windows ending now, now - window, now - 2 window
        history = [window_drifted[end - k * window] if end - k * window >= 0 else None for k in reversed(range(of))]
        now_windowed, now_single = sustained(history, needed=needed, of=of), bool(window_drifted[end])
        windowed += now_windowed and not was_windowed
        single += now_single and not was_single
        was_windowed, was_single = now_windowed, now_single
    return windowed, single


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="the make-test grid: n = 500 and 2,000, fewer shifts")
    parser.add_argument("--trials", type=int, default=None, help="draws per grid point (default 3, small 1)")
    args = parser.parse_args()
    rng = np.random.default_rng(SEED)
    sizes = (500, 2000) if args.small else (500, 2000, 100_000)
    trials = args.trials or (1 if args.small else 3)
    raw_sets = {"reference": (SCIPY_NUMERIC, SCIPY_CLASS)}
    evidently = evidently_tests()
    if evidently is not None:
        raw_sets = {"reference": evidently, "scipy": (SCIPY_NUMERIC, SCIPY_CLASS)}
    print(
        f"raw-data verdicts from {'Evidently' if evidently else 'scipy (Evidently definitions)'}; "
        f"n = {', '.join(f'{n:,}' for n in sizes)}; {trials} draw(s) per grid point"
    )
    results, misses = agreement(rng, sizes, trials, args.small, raw_sets)
    ok = True
    total_agree = total = 0
    for (domain, family), agrees in results["reference"].items():
        total_agree, total = total_agree + sum(agrees), total + len(agrees)
        print(f"  {domain:8} {family:12} agree {sum(agrees):4}/{len(agrees):<4} {sum(agrees) / len(agrees):7.1%}")
    overall = total_agree / total
    ok &= overall >= AGREEMENT_GOAL
    print(f"agreement with the raw-data verdicts: {overall:.1%} of {total} (goal ≥ {AGREEMENT_GOAL:.0%})")
    if "scipy" in results:
        same = sum(sum(v) for v in results["scipy"].values()) / sum(len(v) for v in results["scipy"].values())
        print(f"  (the scipy definitions here agree with Evidently's own verdicts on {same:.1%})")
    for shift, n, family, raw, ours in misses:
        print(f"    miss: {shift[0]} {shift[1]:g}/{shift[2]:g} n={n:,} {family}: raw {raw}, Berth {ours}")
    no_shift = 200
    rates = false_alarms(rng, sizes, no_shift)
    for n, (numeric, classes, raw_numeric, raw_classes) in rates.items():
        ok &= numeric <= FALSE_ALARM_GOAL and classes <= FALSE_ALARM_GOAL
        print(
            f"false alarms on {no_shift} no-shift trials, n={n:,}: numeric {numeric:.1%}, classes {classes:.1%} "
            f"(goal ≤ {FALSE_ALARM_GOAL:.0%}; a bare KS {raw_numeric:.1%}, a bare chi-square {raw_classes:.1%})"
        )
    minutes = 240 if args.small else 24 * 60
    windowed, single = day_of_alerts(rng, minutes)
    per_day = windowed * 24 * 60 / minutes
    ok &= per_day <= ALERTS_PER_DAY_GOAL
    print(
        f"alerts in {minutes} min of per-minute evaluation of steady traffic: {windowed} with 2 of the last 3 "
        f"windows ({per_day:.1f} a day, goal ≤ {ALERTS_PER_DAY_GOAL}), {single} firing on any single window"
    )
    print("OK" if ok else "GOAL MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
