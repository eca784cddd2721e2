"""Loaded versions and the routing table the request path reads.

A RoutingTable is immutable once built: the spec watcher builds the next one (loading new
artifacts first) and the event loop swaps it in with one assignment. A ModelSession (one
onnxruntime session per artifact) counts the requests in flight on it, so a version that
leaves the table is released only when its last request has finished.
"""

import bisect
import logging
import random
import time

import numpy as np

from berth.core.dtypes import ORT_TYPES

from .features import FeatureSet
from .protocol import NotFound, Unavailable, response_prefix

log = logging.getLogger("berth.serve")


class LoadFailed(Exception):
    """onnxruntime cannot load the artifact, or it does not match the version's io_signature."""


class ModelSession:
    """One onnxruntime session (per artifact sha256). ``run`` is called from the inference
    threads; ``inflight`` and ``retire`` only from the event loop."""

    __slots__ = (
        "sha256",
        "path",
        "providers",
        "output_names",
        "inflight",
        "retired",
        "seconds",
        "typical",
        "_session",
        "label",
        "timings",
    )

    def __init__(self, sha256, path, session, label):
        self.sha256, self.path, self._session, self.label = sha256, path, session, label
        self.providers = session.get_providers()
        self.output_names = [o.name for o in session.get_outputs()]
        self.inflight = 0
        self.retired = False
        self.seconds = 0.0  # running average of one inference (the pool's batching budget)
        self.typical = 0.0  # typical_seconds's estimate of one run (the core's inline decision)
        # (rows, ms) of each session.run, for telemetry's inference-only latency (a deque, which
        # threads may append to; telemetry drains it at each flush); None while nobody reads it.
        self.timings = None

    def run(self, feeds):
        """Outputs in ``output_names`` order (runs in an inference thread, or inline)."""
        started = time.perf_counter()
        outputs = self._session.run(None, feeds)
        elapsed = time.perf_counter() - started
        self.typical = typical_seconds(self.typical, elapsed)
        timings = self.timings
        if timings is None:
            return outputs
        first = next(iter(feeds.values()), None)
        timings.append((first.shape[0] if getattr(first, "ndim", 0) else 1, elapsed * 1000.0))
        return outputs

    def retire(self):
        """Leave the routing table: release the session once no request uses it."""
        self.retired = True
        if self.inflight == 0:
            self.close()

    def done(self):
        """A request on this session finished (event loop)."""
        self.inflight -= 1
        if self.retired and self.inflight == 0:
            self.close()

    def close(self):
        if self._session is not None:
            self._session = None
            log.info("released %s (no request in flight)", self.label)


def typical_seconds(estimate, sample):
    """The running estimate of a session's inference time (s) after one more run of ``sample``
    seconds: a tenth of the way toward it, but never by more than a tenth of the estimate (plus
    10 µs, so that it leaves 0), up or down. One run the OS preempted (tens of ms on a loaded
    machine) hardly moves it: with the running average, such runs made bench/serving_dataplane.py's
    0.9 ms model look slower than core.INLINE_SECONDS, and 86 of 300 requests alone in the runtime
    hopped through the thread pool (which costs more than it saves) instead of running inline;
    with this estimate, none did."""
    limit = estimate * 0.1 + 1e-5
    return estimate + min(limit, max(-limit, (sample - estimate) * 0.1))


def load_session(path, *, sha256, label, signature, target, intra_op_threads=1):
    """An onnxruntime session on the target's provider (CPU as the fallback), checked against
    the version's signature and warmed up with one inference on zeros."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    provider = target.execution_provider
    available = ort.get_available_providers()
    if provider not in available:
        log.error(
            "target %s asks for %s, which this host's onnxruntime lacks (it has %s); %s runs on CPUExecutionProvider",
            target.slug,
            provider,
            ", ".join(available),
            label,
        )
        providers = ["CPUExecutionProvider"]
    elif provider == "CPUExecutionProvider":
        providers = [(provider, dict(target.provider_options))]
    else:
        providers = [(provider, dict(target.provider_options)), "CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise LoadFailed(f"onnxruntime cannot load it: {str(exc).strip().splitlines()[0]}") from exc
    _check_signature(session, signature)
    loaded = ModelSession(sha256, path, session, label)
    _warm_up(loaded, signature, label)
    return loaded


def _check_signature(session, signature):
    actual = {arg.name: ORT_TYPES.get(arg.type, arg.type) for arg in session.get_inputs()}
    for spec in signature.inputs:
        if spec.name not in actual:
            raise LoadFailed(
                f"the io_signature names input {spec.name!r} but the model's inputs are {', '.join(actual)}"
            )
        if actual[spec.name] != spec.dtype.name:
            raise LoadFailed(
                f"input {spec.name!r} is {actual[spec.name]} in the model but {spec.dtype.name} in the io_signature"
            )
    missing = set(actual) - set(signature.input_map)
    if missing:
        raise LoadFailed(f"the model needs inputs the io_signature does not list: {', '.join(sorted(missing))}")
    outputs = {arg.name for arg in session.get_outputs()}
    unknown = [t.name for t in signature.outputs if t.name not in outputs]
    if unknown:
        raise LoadFailed(f"the io_signature names outputs the model lacks: {', '.join(unknown)}")


def _warm_up(loaded, signature, label):
    if any(spec.shape is None for spec in signature.inputs):
        return
    feeds = {
        spec.name: np.zeros([1 if d is None else d for d in spec.shape], dtype=spec.dtype) for spec in signature.inputs
    }
    try:
        started = time.perf_counter()
        loaded.run(feeds)
        loaded.seconds = loaded.typical = time.perf_counter() - started
    except Exception as exc:  # a model may legitimately reject zeros; requests will tell
        log.warning("%s: warm-up inference on zeros failed (%s)", label, str(exc).strip().splitlines()[0])


class VersionRoute:
    """A deployed version in one routing table."""

    __slots__ = (
        "version",
        "weight",
        "session",
        "signature",
        "features",
        "metadata",
        "response_prefix",
        "batcher",
        "batchable",
    )

    def __init__(self, model, deployment, session, features):
        self.version = deployment.version
        self.weight = deployment.weight
        self.session = session
        self.signature = deployment.signature
        self.features = features
        self.batcher = None  # a Batcher, set by the inference core when the spec turns batching on
        # Batching concatenates along axis 0: every input's first dimension must be dynamic.
        self.batchable = all(t.shape and t.shape[0] is None for t in deployment.signature.inputs)
        self.response_prefix = response_prefix(model, deployment.version)
        self.metadata = {
            "name": model,
            "versions": [deployment.version],
            "platform": "onnxruntime_onnx",
            "inputs": [t.metadata() for t in deployment.signature.inputs],
            "outputs": [t.metadata() for t in deployment.signature.outputs],
        }


class RoutingTable:
    """What one spec generation serves: routes by version, the weighted split over the routes
    with weight > 0, and the versions the spec lists that could not be loaded."""

    def __init__(self, spec, routes, unavailable):
        self.spec = spec
        self.model = spec.model
        self.generation = spec.generation
        self.routes = routes  # version -> VersionRoute
        self.unavailable = unavailable  # version -> reason
        self.max_request_bytes = spec.max_request_bytes
        weighted = [r for r in routes.values() if r.weight > 0]
        self.total_weight = sum(r.weight for r in weighted)
        self._choices = weighted
        self._cumulative = []
        running = 0.0
        for route in weighted:
            running += route.weight
            self._cumulative.append(running)
        self._only = weighted[0] if len(weighted) == 1 else None
        versions = list(routes)
        main = max(routes.values(), key=lambda r: r.weight) if routes else None
        self.metadata = dict(main.metadata, versions=versions) if main else None

    def pick(self, pinned=None, _random=random.random):
        """The route of a request: the pinned version, or a weighted random draw."""
        if pinned is not None:
            route = self.routes.get(pinned)
            if route is not None:
                return route
            if pinned in self.unavailable:
                raise Unavailable(
                    f"version {pinned} of model {self.model} is deployed but could not be loaded: "
                    f"{self.unavailable[pinned]}"
                )
            raise NotFound(
                f"model {self.model} has no version {pinned!r} deployed (versions: {', '.join(self.routes) or 'none'})"
            )
        if self._only is not None:
            return self._only
        if not self._choices:
            raise Unavailable(f"model {self.model} has no version with traffic weight > 0 loaded")
        index = bisect.bisect_right(self._cumulative, _random() * self.total_weight)
        return self._choices[min(index, len(self._choices) - 1)]

    def sessions(self):
        return {id(r.session): r.session for r in self.routes.values()}

    def split_text(self):
        return (
            ", ".join(
                f"{r.version} ({100 * r.weight / self.total_weight:.4g} %)"
                if self.total_weight
                else f"{r.version} (pinned only)"
                for r in self.routes.values()
            )
            or "nothing"
        )


def build_features(deployment, enabled):
    return FeatureSet(deployment.features, deployment.signature) if enabled and deployment.features else None
