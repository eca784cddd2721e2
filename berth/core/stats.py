"""Statistics shared by the serving runtime and the dashboard. Plain Python and numpy: no Django.

A deployment bundle ships ``berth/core`` next to ``serving/``, so this must import nothing but
the standard library and numpy.
"""

import math

import numpy as np

# --- latency sketch --------------------------------------------------------------------------
#
# A DDSketch-style sketch (Masson, Rim and Lee, VLDB 2019) with logarithmic buckets: a value
# v > 0 goes to bucket ceil(log_gamma(v)) with gamma = (1 + alpha) / (1 - alpha); values <= 0
# are counted in ``zero_count``. Bucket k covers (gamma^(k-1), gamma^k] and is represented by
# 2 gamma^k / (gamma + 1), which is within a relative error alpha of every value in it. Two
# sketches with the same alpha merge by adding counts, so per-window sketches roll up into
# minutes and hours without losing accuracy.
#
# Wire format (telemetry, MetricWindow): {"alpha": 0.01, "buckets": {"412": 5}, "zero_count": 0}
# with bucket keys as strings (JSON object keys).

DEFAULT_ALPHA = 0.01


class LogSketch:
    """Mergeable quantile sketch with relative accuracy ``alpha`` (latencies in ms)."""

    __slots__ = ("alpha", "gamma", "_log_gamma", "buckets", "zero_count", "count")

    def __init__(self, alpha=DEFAULT_ALPHA):
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, not {alpha!r}")
        self.alpha = float(alpha)
        self.gamma = (1 + self.alpha) / (1 - self.alpha)
        self._log_gamma = math.log(self.gamma)
        self.buckets = {}  # bucket index (int) -> count
        self.zero_count = 0
        self.count = 0

    def key(self, value):
        """The bucket index of a value > 0."""
        return math.ceil(math.log(value) / self._log_gamma)

    def add(self, value, count=1):
        """Count ``value`` (e.g. a latency in ms) ``count`` times."""
        if value > 0:
            k = math.ceil(math.log(value) / self._log_gamma)
            self.buckets[k] = self.buckets.get(k, 0) + count
        else:
            self.zero_count += count
        self.count += count

    def add_many(self, values):
        """Count every value of an array-like (vectorised)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        positive = values[values > 0]
        self.zero_count += int(values.size - positive.size)
        if positive.size:
            keys, counts = np.unique(np.ceil(np.log(positive) / self._log_gamma).astype(np.int64), return_counts=True)
            for k, c in zip(keys.tolist(), counts.tolist()):
                self.buckets[k] = self.buckets.get(k, 0) + c
        self.count += int(values.size)

    def merge(self, other):
        """Add ``other``'s counts to this sketch (same alpha only); returns self."""
        if not math.isclose(other.alpha, self.alpha, rel_tol=0, abs_tol=1e-12):
            raise ValueError(f"cannot merge sketches with alpha {self.alpha} and {other.alpha}")
        for k, c in other.buckets.items():
            self.buckets[k] = self.buckets.get(k, 0) + c
        self.zero_count += other.zero_count
        self.count += other.count
        return self

    def value(self, key):
        """The representative value of bucket ``key``."""
        return 2 * self.gamma**key / (self.gamma + 1)

    def quantile(self, q):
        """The q-quantile (0 <= q <= 1) within relative error alpha of the exact value of rank
        floor(q * (count - 1)) in the sorted data; None for an empty sketch."""
        if not 0 <= q <= 1:
            raise ValueError(f"q must be between 0 and 1, not {q!r}")
        if self.count == 0:
            return None
        rank = math.floor(q * (self.count - 1))
        seen = self.zero_count
        if rank < seen:
            return 0.0
        for k in sorted(self.buckets):
            seen += self.buckets[k]
            if rank < seen:
                return self.value(k)
        return self.value(max(self.buckets))

    def __eq__(self, other):
        return (
            isinstance(other, LogSketch)
            and self.alpha == other.alpha
            and self.zero_count == other.zero_count
            and {k: c for k, c in self.buckets.items() if c} == {k: c for k, c in other.buckets.items() if c}
        )

    def __repr__(self):
        return f"LogSketch(alpha={self.alpha}, count={self.count})"

    def to_dict(self):
        return {
            "alpha": self.alpha,
            "buckets": {str(k): c for k, c in self.buckets.items()},
            "zero_count": self.zero_count,
        }

    @classmethod
    def from_dict(cls, data):
        """Read the wire format; raises ValueError on a malformed sketch."""
        try:
            sketch = cls(float(data.get("alpha", DEFAULT_ALPHA)))
            for key, count in (data.get("buckets") or {}).items():
                count = int(count)
                if count < 0:
                    raise ValueError(f"negative count in bucket {key}")
                if count:
                    sketch.buckets[int(key)] = sketch.buckets.get(int(key), 0) + count
            sketch.zero_count = int(data.get("zero_count") or 0)
        except (AttributeError, TypeError) as exc:
            raise ValueError(f"not a latency sketch: {exc}") from exc
        if sketch.zero_count < 0:
            raise ValueError("negative zero_count")
        sketch.count = sketch.zero_count + sum(sketch.buckets.values())
        return sketch


def empty_sketch(alpha=None):
    """A wire-format sketch with no counts (its alpha taken from the first sketch added when None)."""
    return {"alpha": alpha, "buckets": {}, "zero_count": 0}


def add_sketch(total, sketch):
    """Add the counts of the wire-format ``sketch`` (skipped when empty or falsy) to the
    wire-format ``total`` in place, summing bucket counts by their keys as written; returns
    ``total``. The one merge of latency sketches: telemetry windows, roll-ups, series and
    quantiles all go through it. Raises ValueError on a malformed sketch or different alphas."""
    if not sketch:
        return total
    try:
        alpha = sketch.get("alpha", DEFAULT_ALPHA)
        if total["alpha"] is None:
            total["alpha"] = float(alpha)
        elif alpha != total["alpha"] and not math.isclose(float(alpha), total["alpha"], rel_tol=0, abs_tol=1e-12):
            raise ValueError(f"cannot merge sketches with alpha {total['alpha']} and {alpha}")
        buckets = total["buckets"]
        for key, count in (sketch.get("buckets") or {}).items():
            buckets[key] = buckets.get(key, 0) + count
        total["zero_count"] += int(sketch.get("zero_count") or 0)
    except (AttributeError, TypeError) as exc:
        raise ValueError(f"not a latency sketch: {exc}") from exc
    return total


def merge_sketches(*sketches):
    """One wire-format sketch with the counts of ``sketches`` (falsy ones skipped) added up."""
    total = empty_sketch()
    for sketch in sketches:
        add_sketch(total, sketch)
    if total["alpha"] is None:
        total["alpha"] = DEFAULT_ALPHA
    return total


def sketch_quantiles(sketch_dicts, qs=(0.5, 0.95, 0.99)):
    """The quantiles ``qs`` of the merge of wire-format sketches (empty or falsy ones skipped),
    as ``LogSketch.quantile`` would answer them; None each when there is nothing to merge.

    Faster than ``from_dict`` + ``merge`` per dict: counts are summed into one dict by their
    string keys (add_sketch), and the keys are parsed once at the end. Raises ValueError on a
    malformed sketch or different alphas."""
    merged = empty_sketch()
    for data in sketch_dicts:
        add_sketch(merged, data)
    alpha, zero_count = merged["alpha"], merged["zero_count"]
    buckets = {}
    try:
        for key, count in merged["buckets"].items():
            k = int(key)  # "412" and 412 may both occur: they are the same bucket
            buckets[k] = buckets.get(k, 0) + int(count)
    except (AttributeError, TypeError) as exc:
        raise ValueError(f"not a latency sketch: {exc}") from exc
    if zero_count < 0 or any(c < 0 for c in buckets.values()):
        raise ValueError("negative count in a latency sketch")
    for q in qs:
        if not 0 <= q <= 1:
            raise ValueError(f"q must be between 0 and 1, not {q!r}")
    total = zero_count + sum(buckets.values())
    if total == 0:
        return [None] * len(qs)
    sketch = LogSketch(alpha)  # for its bucket values only
    answers = [None] * len(qs)
    # Visit the wanted ranks in increasing order while walking the buckets once.
    wanted = sorted((math.floor(q * (total - 1)), i) for i, q in enumerate(qs))
    keys = sorted(k for k, c in buckets.items() if c)
    position, seen = 0, zero_count
    for rank, i in wanted:
        if rank < zero_count:
            answers[i] = 0.0
            continue
        while position < len(keys) and seen + buckets[keys[position]] <= rank:
            seen += buckets[keys[position]]
            position += 1
        answers[i] = sketch.value(keys[min(position, len(keys) - 1)])
    return answers


# --- drift distances ---------------------------------------------------------------------------
#
# A feature's reference profile and a window of live traffic are both histograms on the same
# bins (see serving/features.py); these functions compare the two lists of counts. The verdicts
# built on them (and the Kolmogorov–Smirnov and Wasserstein tests) are in berth.core.drift.


def checked_counts(reference_counts, current_counts):
    """Both count lists as lists of floats, with their totals; ValueError unless they are of
    equal length and non-negative."""
    reference = [float(c) for c in reference_counts]
    current = [float(c) for c in current_counts]
    if len(reference) != len(current):
        raise ValueError(f"{len(reference)} reference bins but {len(current)} current bins")
    if not all(c >= 0 for c in reference) or not all(c >= 0 for c in current):  # NaN fails too
        raise ValueError("counts must be non-negative numbers")
    return reference, current, sum(reference), sum(current)


def psi(reference_counts, current_counts, eps=1e-4):
    """Population Stability Index, sum over bins of (c - r) ln(c / r) on the proportions r and
    c, each raised to at least ``eps`` so that an empty bin counts as rare, not impossible.
    None if either side has no counts."""
    reference, current, reference_total, current_total = checked_counts(reference_counts, current_counts)
    if reference_total == 0 or current_total == 0:
        return None
    index = 0.0
    for r, c in zip(reference, current):
        r = max(r / reference_total, eps)
        c = max(c / current_total, eps)
        index += (c - r) * math.log(c / r)
    return index


def js_distance(reference_counts, current_counts):
    """Jensen-Shannon distance (square root of the divergence, base 2, so in [0, 1]) between
    the two histograms' proportions; 0 log 0 = 0. None if either side has no counts."""
    reference, current, reference_total, current_total = checked_counts(reference_counts, current_counts)
    if reference_total == 0 or current_total == 0:
        return None
    divergence = 0.0
    for r, c in zip(reference, current):
        r /= reference_total
        c /= current_total
        m = (r + c) / 2
        if r > 0:
            divergence += r * math.log2(r / m)
        if c > 0:
            divergence += c * math.log2(c / m)
    return math.sqrt(min(max(divergence / 2, 0.0), 1.0))


def chi_square(reference_counts, current_counts):
    """Pearson's chi-square goodness of fit of the current counts to the reference
    proportions: (statistic, p_value), with expected = reference proportion x current total.

    Bins the reference never saw (expected 0) cannot enter the sum; they are left out, and so
    are their degrees of freedom (dof = bins with expected > 0, minus 1). Expected counts are
    not rescaled: current rows in such bins leave the other bins short of their expected
    counts, so a class new to the current data still raises the statistic.
    (None, None) if either side has no counts or fewer than two bins have expected > 0."""
    reference, current, reference_total, current_total = checked_counts(reference_counts, current_counts)
    if reference_total == 0 or current_total == 0:
        return None, None
    statistic, used = 0.0, 0
    for r, c in zip(reference, current):
        if r > 0:
            expected = r / reference_total * current_total
            statistic += (c - expected) ** 2 / expected
            used += 1
    if used < 2:
        return None, None
    return statistic, chi2_sf(statistic, used - 1)


def chi2_sf(x, dof):
    """The chi-square distribution's survival function P(X > x) with ``dof`` degrees of
    freedom: the regularized upper incomplete gamma function Q(dof / 2, x / 2)."""
    if dof <= 0:
        raise ValueError(f"dof must be positive, not {dof!r}")
    if x / 2 <= 0:  # x / 2 also underflows to 0 for the smallest subnormal x
        return 1.0
    return _gamma_q(dof / 2, x / 2)


_GAMMA_EPS = 1e-16
_GAMMA_TINY = 1e-300
_GAMMA_MAX_ITERATIONS = 100_000


def _gamma_q(a, x):
    """Q(a, x) for a > 0, x > 0 (Numerical Recipes, gammq): 1 - the series of P(a, x) for
    x < a + 1, where it converges fast; the continued fraction of Q otherwise."""
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1 / a
        ap = a
        for _ in range(_GAMMA_MAX_ITERATIONS):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * _GAMMA_EPS:
                return max(0.0, 1.0 - total * math.exp(log_prefactor))
        raise ArithmeticError(f"incomplete gamma series did not converge for a={a}, x={x}")
    # Modified Lentz evaluation of the continued fraction.
    b = x + 1 - a
    c = 1 / _GAMMA_TINY
    d = 1 / b
    h = d
    for i in range(1, _GAMMA_MAX_ITERATIONS):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        if abs(d) < _GAMMA_TINY:
            d = _GAMMA_TINY
        c = b + an / c
        if abs(c) < _GAMMA_TINY:
            c = _GAMMA_TINY
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < _GAMMA_EPS:
            return math.exp(log_prefactor) * h
    raise ArithmeticError(f"incomplete gamma continued fraction did not converge for a={a}, x={x}")
