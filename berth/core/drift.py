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

import numpy as np

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


def _checked(reference_counts, current_counts):
    """Both count lists as lists of floats, with their totals; ValueError unless they are of
    equal length and non-negative."""
    reference = [float(c) for c in reference_counts]
    current = [float(c) for c in current_counts]
    if len(reference) != len(current):
        raise ValueError(f"{len(reference)} reference bins but {len(current)} current bins")
    if not all(c >= 0 for c in reference) or not all(c >= 0 for c in current):  # NaN fails too
        raise ValueError("counts must be non-negative numbers")
    return reference, current, sum(reference), sum(current)


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
        total = sum(math.exp(-((2 * k - 1) ** 2) * math.pi ** 2 / (8 * x * x)) for k in range(1, 6))
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
    reference, current, n, m = _checked(reference_counts, current_counts)
    if n == 0 or m == 0:
        return None
    statistic, direction = 0.0, 0
    for fr, fc in zip(_cumulative(reference, n)[:-1], _cumulative(current, m)[:-1]):
        if abs(fr - fc) > statistic:
            statistic, direction = abs(fr - fc), (1 if fr > fc else -1)
    effective = n * m / (n + m)
    root = math.sqrt(effective)
    return {"statistic": statistic, "p_value": kolmogorov_sf((root + 0.12 + 0.11 / root) * statistic),
            "effective_n": effective, "direction": direction}


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
    reference, current, n, m = _checked(reference_counts, current_counts)
    if n == 0 or m == 0:
        return None
    bounds = bin_bounds(edges)
    if len(bounds) != len(reference):
        raise ValueError(f"{len(edges)} edges make {len(bounds)} bins, not {len(reference)}")
    distance, before = 0.0, 0.0
    for (lo, hi), after_r, after_c in zip(bounds, _cumulative(reference, n), _cumulative(current, m)):
        after = after_r - after_c
        distance += _integral_of_abs_line(before, after, hi - lo)
        before = after
    _, spread = binned_moments(reference, edges)
    return distance / max(spread, 1e-12)


def _integral_of_abs_line(a, b, width):
    """∫ |line from a to b| over ``width``."""
    if a * b >= 0:
        return width * (abs(a) + abs(b)) / 2
    return width * (a * a + b * b) / (2 * (abs(a) + abs(b)))


# --- effect sizes for classes --------------------------------------------------------------------

def total_variation(reference_counts, current_counts):
    """Total variation distance ½ Σ |p_ref - p_cur| (in [0, 1]: the share of rows that would have
    to change bins); None if either side has no counts."""
    reference, current, n, m = _checked(reference_counts, current_counts)
    if n == 0 or m == 0:
        return None
    return sum(abs(r / n - c / m) for r, c in zip(reference, current)) / 2


def cramers_v(reference_counts, current_counts):
    """Cramér's V of the 2 × k table (reference, current) × bins: sqrt(χ² / N) with χ² Pearson's
    test of independence on the table and N all rows (min(2, k) - 1 = 1), bins empty on both
    sides left out; in [0, 1]. None if either side has no counts or fewer than two bins are
    used."""
    reference, current, n, m = _checked(reference_counts, current_counts)
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
