"""Feature histograms for drift monitoring, on the reference profile's bin edges.

A version's spec lists features; per request row (batch axis 0):

- ``mean`` / ``std``: mean / population std (ddof 0) of that input's values in the row;
- ``column``: the row's value in a column of a 2-D input (an input of higher rank is
  flattened per row first);
- ``value``: the output's first element in the row;
- ``class``: argmax over the output's last axis, counted in ``classes`` bins.

Kinds with ``edges`` (k sorted edges) count in k + 1 bins: bin i counts v with
edges[i-1] < v <= edges[i], i.e. ``numpy.searchsorted(edges, v, side="left")`` (NaN lands in
the last bin, as searchsorted puts it).

Everything is vectorised: the rows of many requests are stacked and binned with a few numpy
calls, so the per-request cost is appending two references to a list.
"""

import logging

import numpy as np

log = logging.getLogger("berth.serve")

EDGE_KINDS = ("mean", "std", "column", "value")


class _EdgeGroup:
    """Edge features binned together: the columns of one input, or the per-row summaries
    (mean, std, value). ``edges`` is (features x most edges), padded with +inf."""

    __slots__ = ("features", "offsets", "edges", "counts", "columns", "tensor")

    def __init__(self, tensor=None):
        self.tensor = tensor  # the input whose columns this group reads (None: summaries)
        self.features = []  # (kind, tensor, column) per feature
        self.offsets, self.edges, self.counts, self.columns = [], [], [], []

    def add(self, kind, tensor, column, offset, edges):
        self.features.append((kind, tensor, column))
        self.offsets.append(offset)
        self.edges.append(edges)
        self.columns.append(column)

    def freeze(self):
        most = max(len(e) for e in self.edges)
        padded = np.full((len(self.edges), most), np.inf)
        for row, edges in enumerate(self.edges):
            padded[row, : len(edges)] = edges
        self.counts = np.array([len(e) for e in self.edges], dtype=np.int64)
        self.edges = padded
        self.offsets = np.array(self.offsets, dtype=np.int64)
        self.columns = np.array(self.columns if self.tensor is not None else [], dtype=np.int64)


class FeatureSet:
    """The compiled features of one version. ``counts(inputs, outputs)`` bins a batch of rows;
    ``split(flat)`` turns the flat counts into ``{feature name: [counts]}``."""

    def __init__(self, features, signature=None):
        self.names, self.sizes = [], []
        summaries = _EdgeGroup()
        columns = {}  # input -> _EdgeGroup of its column features
        self._class_features = []  # (offset, output name, classes)
        offset = 0
        for feature in features or []:
            compiled = self._compile(feature, signature)
            if compiled is None:
                continue
            name, kind, tensor, column, edges, classes = compiled
            if name in self.names:
                log.warning("feature %r is listed twice in the spec; the first one is kept", name)
                continue
            self.names.append(name)
            if kind == "class":
                self._class_features.append((offset, tensor, classes))
                size = classes
            else:
                group = columns.setdefault(tensor, _EdgeGroup(tensor)) if kind == "column" else summaries
                group.add(kind, tensor, column, offset, edges)
                size = len(edges) + 1
            self.sizes.append(size)
            offset += size
        self.total = offset
        self.offsets = np.cumsum([0] + self.sizes[:-1]).tolist() if self.sizes else []
        self._groups = [g for g in (summaries, *columns.values()) if g.features]
        for group in self._groups:
            group.freeze()
        self.inputs = sorted({t for g in self._groups for k, t, _ in g.features if k != "value"})
        self.outputs = sorted(
            {t for g in self._groups for k, t, _ in g.features if k == "value"}
            | {t for _, t, _ in self._class_features}
        )

    def __bool__(self):
        return self.total > 0

    @staticmethod
    def _compile(feature, signature):
        """(name, kind, tensor, column, edges, classes) or None (logged) for a feature this
        runtime cannot compute."""
        if not isinstance(feature, dict):
            log.warning("ignoring a feature that is not an object: %r", feature)
            return None
        name, kind = feature.get("name"), feature.get("kind")
        if not isinstance(name, str):
            log.warning("ignoring a feature without a name: %r", feature)
            return None
        if kind == "class":
            tensor, classes = feature.get("output"), feature.get("classes")
            if not isinstance(classes, int) or classes < 1:
                log.warning("ignoring feature %r: 'classes' must be a positive integer", name)
                return None
            if signature is not None and signature.output_map and tensor not in signature.output_map:
                log.warning("ignoring feature %r: the model has no output %r", name, tensor)
                return None
            return name, kind, tensor, None, None, classes
        if kind not in EDGE_KINDS:
            log.warning("ignoring feature %r of unknown kind %r", name, kind)
            return None
        tensor = feature.get("output") if kind == "value" else feature.get("input")
        names = (signature.output_map if kind == "value" else signature.input_map) if signature is not None else None
        if names and tensor not in names:
            log.warning(
                "ignoring feature %r: the model has no %s %r", name, "output" if kind == "value" else "input", tensor
            )
            return None
        column = None
        if kind == "column":
            column = feature.get("column")
            if not isinstance(column, int) or column < 0:
                log.warning("ignoring feature %r: 'column' must be a non-negative integer", name)
                return None
            spec = signature.input_map.get(tensor) if signature is not None else None
            if (
                spec is not None
                and spec.shape is not None
                and len(spec.shape) == 2
                and spec.shape[1] is not None
                and column >= spec.shape[1]
            ):
                log.warning(
                    "ignoring feature %r: column %d is outside input %r of width %d",
                    name,
                    column,
                    tensor,
                    spec.shape[1],
                )
                return None
        try:
            edges = np.asarray(feature.get("edges"), dtype=np.float64).ravel()
        except (TypeError, ValueError):
            log.warning("ignoring feature %r: 'edges' must be a list of numbers", name)
            return None
        if edges.size == 0 or np.isnan(edges).any() or (np.diff(edges) < 0).any():
            log.warning("ignoring feature %r: 'edges' must be a non-empty sorted list of numbers", name)
            return None
        return name, kind, tensor, column, edges, None

    def counts(self, inputs, outputs):
        """Flat int64 counts (length ``total``) of a batch: ``inputs`` / ``outputs`` map tensor
        names to arrays that share the batch axis 0."""
        rows = _rows(inputs, outputs)
        if rows == 0 or self.total == 0:
            return np.zeros(self.total, dtype=np.int64)
        flat = {}  # input -> (rows, values per row)

        def per_row(name):
            matrix = flat.get(name)
            if matrix is None:
                matrix = flat[name] = inputs[name].reshape(rows, -1)
            return matrix

        indexes = []
        for group in self._groups:
            if group.tensor is not None:
                matrix = per_row(group.tensor)
                if group.columns.max() < matrix.shape[1]:
                    values = matrix[:, group.columns].astype(np.float64, copy=False)
                else:  # a dynamic width narrower than a column: the value is missing (NaN)
                    values = np.full((rows, len(group.columns)), np.nan)
                    inside = group.columns < matrix.shape[1]
                    values[:, inside] = matrix[:, group.columns[inside]]
            else:
                values = np.empty((rows, len(group.features)), dtype=np.float64)
                for index, (kind, tensor, _) in enumerate(group.features):
                    if kind == "mean":
                        values[:, index] = per_row(tensor).mean(axis=1, dtype=np.float64)
                    elif kind == "std":
                        values[:, index] = per_row(tensor).std(axis=1, dtype=np.float64)
                    else:  # value
                        values[:, index] = outputs[tensor].reshape(rows, -1)[:, 0]
            bins = _bins(values, group.edges, group.counts)
            bins += group.offsets
            indexes.append(bins.ravel())
        for offset, tensor, classes in self._class_features:
            output = outputs[tensor]
            # An output of rank 1 already holds class labels (e.g. a classifier's "label").
            predicted = output.argmax(axis=-1) if output.ndim > 1 else output.astype(np.int64, copy=False)
            indexes.append(np.clip(predicted.ravel(), 0, classes - 1) + offset)
        return np.bincount(np.concatenate(indexes) if len(indexes) > 1 else indexes[0], minlength=self.total)

    def split(self, flat):
        """{feature name: [counts]} from a flat counts array."""
        flat = flat.tolist()
        return {name: flat[offset : offset + size] for name, offset, size in zip(self.names, self.offsets, self.sizes)}


def _bins(values, edges, counts):
    """searchsorted(edges[f], v, side="left") for every (row, feature f): how many of the
    feature's edges are below v. When features outnumber edges (the usual case), one
    vectorised comparison per edge over all rows and features (features x rows, so the inner
    loop runs over contiguous rows against one edge); else one searchsorted per feature. NaN
    goes to the last bin, as searchsorted puts it; the +inf padding never counts."""
    rows, features = values.shape
    most = edges.shape[1]
    if most <= features:
        by_feature = np.ascontiguousarray(values.T)
        bins = np.zeros((features, rows), dtype=np.int8 if most < 128 else np.int64)
        for index in range(most):
            bins += by_feature > edges[:, index : index + 1]
        bins = bins.T.astype(np.int64)
        nan = np.isnan(values)
        if nan.any():
            bins[nan] = np.broadcast_to(counts, bins.shape)[nan]
        return bins
    bins = np.empty((rows, features), dtype=np.int64)
    for index in range(features):
        bins[:, index] = np.searchsorted(edges[index, : counts[index]], values[:, index], side="left")
    return bins


def _rows(inputs, outputs):
    for array in (*inputs.values(), *outputs.values()):
        return array.shape[0] if array.ndim else 1
    return 0


class FeatureBuffer:
    """Rows waiting to be binned: requests append references to their tensors; ``drain``
    stacks them and bins them all at once.

    Stacking needs equal trailing shapes; requests whose shapes differ are binned one by one.
    """

    __slots__ = ("features", "requests", "nbytes", "_inputs", "_outputs")

    def __init__(self, features):
        self.features = features
        self._inputs = [(name, []) for name in features.inputs]
        self._outputs = [(name, []) for name in features.outputs]
        self.requests = 0
        self.nbytes = 0

    def add(self, inputs, outputs):
        """Keep one request's tensors (those the features read)."""
        for name, kept in self._inputs:
            array = inputs[name]
            kept.append(array)
            self.nbytes += array.nbytes
        for name, kept in self._outputs:
            kept.append(outputs[name])
        self.requests += 1

    def drain(self):
        """Flat counts of every pending row (and forget them); None when nothing waits."""
        if not self.requests:
            return None
        inputs = dict(self._inputs)
        outputs = dict(self._outputs)
        self._inputs = [(name, []) for name, _ in self._inputs]
        self._outputs = [(name, []) for name, _ in self._outputs]
        requests, self.requests, self.nbytes = self.requests, 0, 0
        try:
            stacked_in = {name: np.concatenate(kept) for name, kept in inputs.items()}
            stacked_out = {name: np.concatenate(kept) for name, kept in outputs.items()}
        except ValueError:  # trailing shapes differ (dynamic axes) or 0-d tensors: bin each request alone
            total = np.zeros(self.features.total, dtype=np.int64)
            for i in range(requests):
                total += self.features.counts(
                    {n: kept[i] for n, kept in inputs.items()}, {n: kept[i] for n, kept in outputs.items()}
                )
            return total
        return self.features.counts(stacked_in, stacked_out)
