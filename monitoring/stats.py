"""Statistics shared by the serving runtime and the dashboard. Plain Python and numpy: no Django.

A deployment bundle copies this file next to ``serving/``, so it must import nothing but the
standard library and numpy.
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
            keys, counts = np.unique(np.ceil(np.log(positive) / self._log_gamma).astype(np.int64),
                                     return_counts=True)
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
        return 2 * self.gamma ** key / (self.gamma + 1)

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
        return (isinstance(other, LogSketch) and self.alpha == other.alpha and self.zero_count == other.zero_count
                and {k: c for k, c in self.buckets.items() if c} == {k: c for k, c in other.buckets.items() if c})

    def __repr__(self):
        return f"LogSketch(alpha={self.alpha}, count={self.count})"

    def to_dict(self):
        return {"alpha": self.alpha, "buckets": {str(k): c for k, c in self.buckets.items()},
                "zero_count": self.zero_count}

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
