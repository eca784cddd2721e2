"""Drift statistics on binned counts: what a reference histogram and a window of live traffic on
the same bins say about each other. Plain Python and numpy: no Django.

Raw inputs never leave the serving host, so every test here works on two lists of counts over
the same bins: for numeric features the bins are ordered by the reference profile's edges
(bin i holds edges[i-1] < v <= edges[i], the first and last bins are open), for class
predictions a bin is a class.

- ``ks``: the two-sample Kolmogorov–Smirnov statistic on the binned CDFs, with the asymptotic
  p-value at the effective sample size n·m/(n+m). On bins the statistic is the largest gap at
  an edge, so it is at most the raw-data statistic; profiles with edges at the tail quantiles
  (PROFILE_QUANTILES) keep the difference small where scale changes live.
- ``wasserstein``: the first Wasserstein distance with each bin's mass spread evenly over the
  bin (the open end bins as wide as their neighbours), divided by the reference's standard
  deviation on the same bins, as Evidently norms it.
- ``total_variation`` and ``cramers_v``: effect sizes for class predictions.
"""

import math
from dataclasses import dataclass

import numpy as np

from .stats import checked_counts, chi2_sf, js_distance, psi

# Reference bin edges at these quantiles: resolution in the tails, where a change of scale or a
# heavier tail shows first.
PROFILE_QUANTILES = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.975, 0.99)
# And beyond the reference's 1 % and 99 % quantiles, at these multiples of their distance from
# the median: bins the reference hardly fills, where a heavier tail in live traffic is counted
# instead of vanishing into one open bin. 22 bins in all for a continuous feature.
OUTER_MULTIPLES = (0.5, 1.0, 2.0)


def profile_edges(values):
    """Sorted, distinct inner bin edges for a numeric feature's reference ``values`` (NaN and
    infinities ignored): the PROFILE_QUANTILES and the OUTER_MULTIPLES edges. ValueError if
    no value is finite."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("The reference values are empty or not finite.")
    quantiles = np.quantile(values, PROFILE_QUANTILES)
    low, median, high = float(quantiles[0]), float(np.median(values)), float(quantiles[-1])
    outer = [high + (high - median) * k for k in OUTER_MULTIPLES if high > median]
    outer += [low - (median - low) * k for k in OUTER_MULTIPLES if low < median]
    return [float(e) for e in np.unique(np.concatenate([quantiles, outer]))]


def _cumulative(counts, total):
    running, cdf = 0.0, []
    for c in counts:
        running += c
        cdf.append(running / total)
    return cdf


# --- Kolmogorov–Smirnov --------------------------------------------------------------------------


def kolmogorov_sf(x):
    """P(K > x) for the Kolmogorov distribution K (the limit of sqrt(n)·D): 2 Σ (-1)^(k-1)
    exp(-2 k² x²) for x above 0.3, 1 - sqrt(2π)/x Σ exp(-(2k-1)² π² / (8x²)) below it (the
    series that converges fast there)."""
    if x <= 0:
        return 1.0
    if x < 0.3:
        total = sum(math.exp(-((2 * k - 1) ** 2) * math.pi**2 / (8 * x * x)) for k in range(1, 6))
        return min(1.0, max(0.0, 1.0 - math.sqrt(2 * math.pi) / x * total))
    total, k = 0.0, 1
    while True:
        term = math.exp(-2 * k * k * x * x)
        total += term if k % 2 else -term
        if term < 1e-17 or k > 100:
            break
        k += 1
    return min(1.0, max(0.0, 2 * total))


def ks(reference_counts, current_counts):
    """Two-sample Kolmogorov–Smirnov test on ordered bins: ``{"statistic", "p_value",
    "effective_n", "direction"}`` where statistic = max over edges of |F_ref - F_cur| (the
    binned CDFs), effective_n = n·m/(n+m) for n reference and m current rows, and p_value is
    the asymptotic P(K > (sqrt(ne) + 0.12 + 0.11/sqrt(ne))·D) (Stephens' correction, as in
    Numerical Recipes). ``direction`` is +1 when the current CDF lies below the reference's at
    the largest gap (current values larger), -1 when above. None if either side has no counts."""
    reference, current, n, m = checked_counts(reference_counts, current_counts)
    if n == 0 or m == 0:
        return None
    return _ks(_cumulative(reference, n), _cumulative(current, m), n, m)


def _ks(reference_cdf, current_cdf, n, m):
    statistic, direction = 0.0, 0
    for fr, fc in zip(reference_cdf[:-1], current_cdf[:-1]):
        if abs(fr - fc) > statistic:
            statistic, direction = abs(fr - fc), (1 if fr > fc else -1)
    effective = n * m / (n + m)
    root = math.sqrt(effective)
    return {
        "statistic": statistic,
        "p_value": kolmogorov_sf((root + 0.12 + 0.11 / root) * statistic),
        "effective_n": effective,
        "direction": direction,
    }


# --- Wasserstein ---------------------------------------------------------------------------------


def bin_bounds(edges):
    """[(low, high)] per bin of the inner ``edges`` (k edges, k + 1 bins): the open end bins get
    the width of their neighbours (1 when there is a single edge)."""
    edges = [float(e) for e in edges]
    if not edges:
        raise ValueError("a numeric feature needs at least one bin edge")
    first = edges[1] - edges[0] if len(edges) > 1 else 1.0
    last = edges[-1] - edges[-2] if len(edges) > 1 else 1.0
    points = [edges[0] - first] + edges + [edges[-1] + last]
    return list(zip(points, points[1:]))


def binned_moments(counts, edges):
    """(mean, standard deviation) of a histogram on ``edges``, each bin's mass spread evenly
    over it (bin_bounds); (None, None) for an empty histogram."""
    counts = [float(c) for c in counts]
    bounds = bin_bounds(edges)
    if len(counts) != len(bounds):
        raise ValueError(f"{len(edges)} edges make {len(bounds)} bins, not {len(counts)}")
    return _moments(counts, bounds)


def _moments(counts, bounds):
    total = sum(counts)
    if total == 0:
        return None, None
    mean = sum(c * (lo + hi) / 2 for c, (lo, hi) in zip(counts, bounds)) / total
    variance = sum(c * (((lo + hi) / 2 - mean) ** 2 + (hi - lo) ** 2 / 12) for c, (lo, hi) in zip(counts, bounds))
    return mean, math.sqrt(variance / total)


def wasserstein(reference_counts, current_counts, edges):
    """First Wasserstein distance between the two histograms on ``edges`` (each bin's mass
    spread evenly over it, so both CDFs are piecewise linear and the distance is the exact
    integral of |F_ref - F_cur|), divided by the reference's standard deviation on the same
    bins. None if either side has no counts."""
    reference, current, n, m = checked_counts(reference_counts, current_counts)
    if n == 0 or m == 0:
        return None
    bounds = bin_bounds(edges)
    if len(bounds) != len(reference):
        raise ValueError(f"{len(edges)} edges make {len(bounds)} bins, not {len(reference)}")
    _, spread = _moments(reference, bounds)
    return _wasserstein(_cumulative(reference, n), _cumulative(current, m), bounds) / max(spread, 1e-12)


def _wasserstein(reference_cdf, current_cdf, bounds):
    """∫ |F_ref - F_cur| with both CDFs linear within each bin."""
    distance, before = 0.0, 0.0
    for (lo, hi), after_r, after_c in zip(bounds, reference_cdf, current_cdf):
        after = after_r - after_c
        distance += _integral_of_abs_line(before, after, hi - lo)
        before = after
    return distance


def _integral_of_abs_line(a, b, width):
    """∫ |line from a to b| over ``width``."""
    if a * b >= 0:
        return width * (abs(a) + abs(b)) / 2
    return width * (a * a + b * b) / (2 * (abs(a) + abs(b)))


# --- effect sizes for classes --------------------------------------------------------------------


def total_variation(reference_counts, current_counts):
    """Total variation distance ½ Σ |p_ref - p_cur| (in [0, 1]: the share of rows that would have
    to change bins); None if either side has no counts."""
    reference, current, n, m = checked_counts(reference_counts, current_counts)
    if n == 0 or m == 0:
        return None
    return sum(abs(r / n - c / m) for r, c in zip(reference, current)) / 2


def cramers_v(reference_counts, current_counts):
    """Cramér's V of the 2 × k table (reference, current) × bins: sqrt(χ² / N) with χ² Pearson's
    test of independence on the table and N all rows (min(2, k) - 1 = 1), bins empty on both
    sides left out; in [0, 1]. None if either side has no counts or fewer than two bins are
    used."""
    reference, current, n, m = checked_counts(reference_counts, current_counts)
    if n == 0 or m == 0:
        return None
    total = n + m
    statistic, used = 0.0, 0
    for r, c in zip(reference, current):
        column = r + c
        if column == 0:
            continue
        used += 1
        for observed, row in ((r, n), (c, m)):
            expected = row * column / total
            statistic += (observed - expected) ** 2 / expected
    if used < 2:
        return None
    return math.sqrt(statistic / total)


# --- verdicts ------------------------------------------------------------------------------------
#
# A feature drifts when its test is significant AND the change is material: with thousands of
# rows a minute every trivial difference is significant, and with a hundred rows a large-looking
# effect is often chance. Numeric features are tested by Kolmogorov–Smirnov and must move by a
# normed Wasserstein distance of at least 0.1 (a tenth of the reference's standard deviation:
# Evidently's default for large samples); class predictions are tested by chi-square and must
# move at least a tenth of the predictions between classes (total variation). PSI and
# Jensen–Shannon are reported beside them.

MIN_DRIFT_ROWS = 100  # fewer current rows than this: not enough data for a verdict
DATASET_DRIFT_SHARE = 0.5  # the dataset drifts when at least this share of its features do
MAX_RELATIVE = 100.0  # relative_drift's cap: past 100 × a threshold nothing is "more drifted"
COARSE_BINS = 10  # a numeric profile with this many bins or fewer predates the tail edges
STRONG_RELATIVE = 3.0  # a drifted feature's effect at least 3 × its floor is "strong"
# Evaluated every minute, a drift alert fires only when at least WINDOWS_NEEDED of the last
# WINDOWS disjoint windows drifted: one noisy window does not page anyone.
WINDOWS_NEEDED, WINDOWS = 2, 3


@dataclass(frozen=True)
class DriftTest:
    """How features of one kind are judged: ``test`` significant at p < ``p_threshold``, and
    the ``effect`` size at least ``effect_threshold`` (both names are keys of MEASURES)."""

    test: str
    p_threshold: float
    effect: str
    effect_threshold: float


@dataclass(frozen=True)
class Measure:
    """How a drift figure reads: its ``label``, whether it is a p-value (drift below its
    threshold) or a distance (drift at or above it), and the ``unit`` after a distance."""

    label: str
    p_value: bool = False
    unit: str = ""


# Every figure a verdict, a series point or an alert (also one stored before these tests, when
# numeric features were judged by PSI against 0.2) may name, in the words pages and messages use.
MEASURES = {
    "ks": Measure("KS", p_value=True),
    "chi_square": Measure("chi-square", p_value=True),
    "wasserstein": Measure("Wasserstein", unit=" sd"),  # normed by the reference's standard deviation
    "total_variation": Measure("total variation"),
    "cramers_v": Measure("Cramér's V"),
    "psi": Measure("PSI"),
    "js": Measure("Jensen-Shannon"),
}

NUMERIC_TEST = DriftTest("ks", 0.05, "wasserstein", 0.1)
CLASS_TEST = DriftTest("chi_square", 0.05, "total_variation", 0.1)
DEFAULT_TESTS = {
    "column": NUMERIC_TEST,
    "mean": NUMERIC_TEST,
    "std": NUMERIC_TEST,
    "value": NUMERIC_TEST,
    "class": CLASS_TEST,
}


def feature_drift(kind, reference_counts, current_counts, edges=None, *, with_js=True):
    """The drift verdict for one feature of kind ``kind`` (a key of DEFAULT_TESTS) from its
    reference and current counts (numeric kinds also need the profile's ``edges``), or None
    without enough data: fewer than MIN_DRIFT_ROWS current rows, an empty reference, or (for
    "class") fewer than two reference classes.

    The verdict: ``test`` and ``score`` (its p-value) with ``threshold``; ``statistic`` (KS D
    or chi-square); ``effect``, ``effect_value`` and ``effect_threshold``; ``significant``,
    ``material``, ``drifted`` (both) and ``warn`` (significant); ``bins`` and
    ``coarse_profile`` (a numeric profile of at most COARSE_BINS bins, from before the tail
    edges); ``relative`` (relative_drift) and ``severity`` (none, slight, drifted, strong);
    ``psi`` and ``js`` beside them (None when ``with_js`` is False); ``rows``; and
    ``explanation``, the verdict in words."""
    return features_drift(kind, reference_counts, [current_counts], edges, with_js=with_js)[0]


def features_drift(kind, reference_counts, current_rows, edges=None, *, with_js=True):
    """feature_drift for each of ``current_rows`` (lists of counts on the same bins, e.g. the
    points of a series) against one reference, computed for all rows at once."""
    rule = DEFAULT_TESTS.get(kind)
    if rule is None:
        raise ValueError(f"unknown feature kind {kind!r}")
    rows = [list(r) for r in current_rows]
    for row in rows:
        checked_counts(reference_counts, row)  # equal lengths, non-negative counts
    reference = np.asarray(reference_counts, dtype=np.float64)
    n = float(reference.sum())
    verdicts = [None] * len(rows)
    if n == 0 or not rows:
        return verdicts
    current = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(reference))
    m = current.sum(axis=1)
    scored = np.flatnonzero(m >= MIN_DRIFT_ROWS)
    if scored.size == 0:
        return verdicts
    current, m = current[scored], m[scored]
    base = {
        "test": rule.test,
        "threshold": rule.p_threshold,
        "effect": rule.effect,
        "effect_threshold": rule.effect_threshold,
        "bins": len(reference),
        "coarse_profile": rule is NUMERIC_TEST and len(reference) <= COARSE_BINS,
    }
    if rule is CLASS_TEST:
        used = reference > 0
        if used.sum() < 2:
            return verdicts
        expected = reference[used] / n * m[:, None]
        statistics = (((current[:, used] - expected) ** 2) / expected).sum(axis=1)
        p_values = [chi2_sf(float(x), int(used.sum()) - 1) for x in statistics]
        effects = np.abs(current / m[:, None] - reference / n).sum(axis=1) / 2
        extra = [{} for _ in scored]
        moments = [None] * len(scored)
    else:
        if edges is None:
            raise ValueError(f"a {kind} feature needs its bin edges")
        low, high = np.asarray(bin_bounds(edges), dtype=np.float64).T
        if len(low) != len(reference):
            raise ValueError(f"{len(edges)} edges make {len(low)} bins, not {len(reference)}")
        gaps = np.cumsum(reference) / n - np.cumsum(current, axis=1) / m[:, None]  # F_ref - F_cur at each bin's top
        inner = np.abs(gaps[:, :-1])
        largest = inner.argmax(axis=1) if inner.shape[1] else np.zeros(len(m), dtype=int)
        statistics = inner[np.arange(len(m)), largest] if inner.shape[1] else np.zeros(len(m))
        effective = n * m / (n + m)
        root = np.sqrt(effective)
        p_values = kolmogorov_sf_array((root + 0.12 + 0.11 / root) * statistics).tolist()
        middle, width = (low + high) / 2, high - low
        reference_mean = float(reference @ middle / n)
        reference_spread = math.sqrt(max(float(reference @ (middle**2 + width**2 / 12) / n) - reference_mean**2, 0.0))
        current_mean = current @ middle / m
        current_spread = np.sqrt(np.maximum(current @ (middle**2 + width**2 / 12) / m - current_mean**2, 0.0))
        effects = _wasserstein_rows(gaps, width) / max(reference_spread, 1e-12)
        extra = [{"effective_n": float(e)} for e in effective]
        moments = [
            ((reference_mean, reference_spread), (float(a), float(b))) for a, b in zip(current_mean, current_spread)
        ]
    for i, row in enumerate(scored.tolist()):
        p_value, effect = float(p_values[i]), float(effects[i])
        significant, material = p_value < rule.p_threshold, effect >= rule.effect_threshold
        counts = rows[row]
        verdict = {
            **base,
            **extra[i],
            "rows": int(m[i]),
            "score": p_value,
            "statistic": float(statistics[i]),
            "effect_value": effect,
            "significant": significant,
            "material": material,
            "drifted": significant and material,
            "warn": significant,
            "psi": psi(reference_counts, counts) if with_js else None,
            "js": js_distance(reference_counts, counts) if with_js else None,
        }
        verdict["relative"] = relative_drift(verdict)
        verdict["severity"] = severity(verdict)
        verdict["explanation"] = explain(kind, verdict, list(reference_counts), counts, moments[i])
        verdicts[row] = verdict
    return verdicts


def kolmogorov_sf_array(x):
    """kolmogorov_sf of every element of ``x`` (an array), vectorised."""
    x = np.asarray(x, dtype=np.float64)
    result = np.ones_like(x)
    small = (x > 0) & (x < 0.3)
    if small.any():
        xs = x[small][:, None]
        odd = (2 * np.arange(1, 6) - 1) ** 2
        result[small] = 1 - math.sqrt(2 * math.pi) / xs[:, 0] * np.exp(-odd * math.pi**2 / (8 * xs**2)).sum(axis=1)
    large = x >= 0.3
    if large.any():
        k = np.arange(1, 41)
        signs = np.where(k % 2, 1.0, -1.0)
        result[large] = 2 * (signs * np.exp(-2 * k**2 * x[large][:, None] ** 2)).sum(axis=1)
    return np.clip(result, 0.0, 1.0)


def _wasserstein_rows(gaps, width):
    """∫ |F_ref - F_cur| per row of ``gaps`` (F_ref - F_cur at each bin's top; both CDFs linear
    within a bin of ``width``)."""
    after = gaps
    before = np.concatenate([np.zeros((len(gaps), 1)), gaps[:, :-1]], axis=1)
    a, b = np.abs(before), np.abs(after)
    same_sign = before * after >= 0
    # Where the line crosses zero inside a bin: two triangles, (a² + b²) / (2 (a + b)) of its width.
    crossing = np.divide(a * a + b * b, 2 * (a + b), out=np.zeros_like(a), where=~same_sign)
    return (width * np.where(same_sign, (a + b) / 2, crossing)).sum(axis=1)


def relative_drift(verdict):
    """How far a verdict is past its thresholds, 1 where it starts to drift: the smaller of
    threshold / p-value and effect / effect threshold (both must pass), at most MAX_RELATIVE."""
    p_value = verdict["score"]
    significance = verdict["threshold"] / p_value if p_value > 0 else math.inf
    materiality = verdict["effect_value"] / verdict["effect_threshold"]
    return min(significance, materiality, MAX_RELATIVE)


def severity(verdict):
    """none (like the reference), slight (a significant change too small to matter), drifted,
    or strong (drifted with an effect at least STRONG_RELATIVE × its threshold)."""
    if verdict["drifted"]:
        return "strong" if verdict["effect_value"] >= STRONG_RELATIVE * verdict["effect_threshold"] else "drifted"
    return "slight" if verdict["significant"] else "none"


def sustained(drifted, *, needed=WINDOWS_NEEDED, of=WINDOWS):
    """Whether at least ``needed`` of the last ``of`` windows drifted (``drifted``: oldest
    first, one bool per window, None for a window without a verdict). The alert rule's guard
    against evaluating every minute: one noisy window does not fire."""
    recent = list(drifted)[-of:]
    return sum(1 for d in recent if d) >= needed


def dataset_drift(verdicts):
    """Roll up ``{feature name: feature_drift(...) or None}``: the share of scored features
    that drifted, and whether it reaches DATASET_DRIFT_SHARE."""
    scored = [v for v in verdicts.values() if v is not None]
    drifted = sum(1 for v in scored if v["drifted"])
    share = drifted / len(scored) if scored else None
    return {
        "features": len(scored),
        "drifted": drifted,
        "share": share,
        "threshold": DATASET_DRIFT_SHARE,
        "drifted_dataset": share is not None and share >= DATASET_DRIFT_SHARE,
    }


# --- words ---------------------------------------------------------------------------------------


def p_text(p_value):
    """A p-value as drift_text writes it: "p-value 0.023", or "p-value 2e-6" far below 0.001 (how
    far still shows)."""
    return f"p-value {figure(p_value)}"


def explain(kind, verdict, reference, current, moments=None):
    """The verdict in words, e.g. "wider than the reference: KS 0.08, p-value 2e-6 on 2,000 rows
    (Wasserstein 0.24 ≥ 0.1)". ``moments``: the binned (mean, standard deviation) of the
    reference and of the current counts, for numeric kinds."""
    rule = DEFAULT_TESTS[kind]
    if rule is CLASS_TEST:
        figures = f"chi-square {p_text(verdict['score'])}"
    else:
        figures = f"KS {verdict['statistic']:.2g}, {p_text(verdict['score'])}"
    figures += f" on {verdict['rows']:,} rows"
    effect = f"{MEASURES[rule.effect].label} {verdict['effect_value']:.2g}"
    if not verdict["significant"]:
        return f"like the reference: {figures}"
    shape = _class_shape(reference, current) if rule is CLASS_TEST else _numeric_shape(reference, current, moments)
    if not verdict["material"]:
        return f"a small change ({shape}): {figures}, but {effect} < {rule.effect_threshold:g}, too small to call drift"
    return f"{shape}: {figures} ({effect} ≥ {rule.effect_threshold:g})"


def _numeric_shape(reference, current, moments):
    """What changed, from the binned mean, spread and tails: "higher than the reference (mean
    +0.42 sd)", "wider than the reference (spread × 1.3)", "more in the tails …" or "shaped
    differently from the reference"."""
    (reference_mean, reference_spread), (current_mean, current_spread) = moments
    shift = (current_mean - reference_mean) / max(reference_spread, 1e-12)
    ratio = current_spread / max(reference_spread, 1e-12)
    if max(abs(shift), abs(math.log(ratio))) >= 0.03:
        if abs(shift) >= abs(math.log(ratio)):
            return f"{'higher' if shift > 0 else 'lower'} than the reference (mean {shift:+.2f} sd)"
        return f"{'wider' if ratio > 1 else 'narrower'} than the reference (spread × {ratio:.2f})"
    outside = _outside_share(reference, current)
    if outside is not None:
        before, after = outside
        if abs(after - before) >= 0.02:
            return (
                f"{'more' if after > before else 'fewer'} in the tails than the reference "
                f"({after:.0%} beyond the reference's outer bins vs {before:.0%})"
            )
    return "shaped differently from the reference"


def _outside_share(reference, current):
    """The share of reference and current rows in the bins that hold the reference's outer 5 %
    on each side (None when the bins are too coarse to tell)."""
    n, m = sum(reference), sum(current)
    cdf = _cumulative(reference, n)
    low = next((i for i, f in enumerate(cdf) if f >= 0.05), None)
    high = next((i for i, f in enumerate(cdf) if f > 0.95), None)
    if low is None or high is None or low >= high - 1 or cdf[low] > 0.11 or 1 - cdf[high - 1] > 0.11:
        return None
    before = (sum(reference[: low + 1]) + sum(reference[high:])) / n
    after = (sum(current[: low + 1]) + sum(current[high:])) / m
    return before, after


def _class_shape(reference, current):
    """The class whose share moved most: "class 3 went from 10 % to 25 % of predictions"."""
    n, m = sum(reference), sum(current)
    moves = [(abs(c / m - r / n), i, r / n, c / m) for i, (r, c) in enumerate(zip(reference, current))]
    _, index, before, after = max(moves)
    return f"class {index} went from {before:.0%} to {after:.0%} of predictions"


def figure(value):
    """A drift figure, compact: 0.31, 0.023, 1.23, 312; below 0.001 in scientific notation with
    at most two digits (2e-6, 3.4e-12), so a p-value far below its threshold still says how far."""
    if value is None:
        return "–"
    if value == 0:
        return "0"
    size = abs(value)
    if size < 0.001:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa.removesuffix('.0')}e{int(exponent)}"
    if size >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if size >= 1 else f"{value:.2g}"


def measure_text(name, value, threshold=None):
    """One figure in its test's terms: "KS p-value 2e-6 (threshold 0.05)", "PSI 0.31 (threshold
    0.2)", "Wasserstein 0.31 sd (threshold 0.1 sd)". A name outside MEASURES is shown as is."""
    measure = MEASURES.get(name, Measure(str(name).replace("_", " ")))
    unit = "" if measure.p_value else measure.unit
    text = f"{measure.label} {'p-value ' if measure.p_value else ''}{figure(value)}{unit}"
    if threshold is not None:
        text += f" (threshold {figure(threshold)}{unit})"
    return text


def threshold_text(name, threshold):
    """When a figure calls drift: "KS p-value < 0.05", "Wasserstein ≥ 0.1 sd"."""
    measure = MEASURES.get(name, Measure(str(name).replace("_", " ")))
    if measure.p_value:
        return f"{measure.label} p-value < {figure(threshold)}"
    return f"{measure.label} ≥ {figure(threshold)}{measure.unit}"


def drift_text(verdict, feature=None):
    """A feature's drift figures against their thresholds, the one wording of every page, chart
    and notification: "pixel_mean: KS p-value 2e-6 (threshold 0.05), Wasserstein 0.31 sd
    (threshold 0.1 sd)". ``verdict`` holds ``test``, ``score`` and ``threshold``, and, unless it
    predates the effect sizes, ``effect``, ``effect_value`` and ``effect_threshold`` (a
    feature_drift verdict, an alert's stored feature, a series point with its feature's tests)."""
    text = measure_text(verdict["test"], verdict["score"], verdict.get("threshold"))
    if verdict.get("effect") and verdict.get("effect_value") is not None:
        text += ", " + measure_text(verdict["effect"], verdict["effect_value"], verdict.get("effect_threshold"))
    return f"{feature}: {text}" if feature else text
