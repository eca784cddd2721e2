"""The inference core: everything a request needs once its tensors are decoded, for every
transport (HTTP/JSON and binary in ``app.py``, gRPC in ``grpc_server.py``, in-process callers
such as benches and profiling).

It owns the routing table in use (the spec watcher installs new ones), the sessions' request
counts, the inference thread pool, Prometheus metrics and the telemetry window (with its feature
binning). It takes and returns numpy arrays; a transport only reads, decodes, encodes and sends.

A request through a transport::

    call = core.open(model, pinned_version)      # ServeError: unknown model/version, not ready
    try:
        feeds = <decode against call.signature, at most call.max_request_bytes>
        arrays = await call.run(feeds)           # outputs in call.output_names order
        <encode>
    except ServeError as exc:
        call.failed(exc)
    except Exception as exc:
        exc = call.crashed(exc)                  # a 500 ServeError, logged
    finally:
        call.release()                           # the session may be retired once released
    <send>
    call.finish()                                # metrics and telemetry (after sending)

In process: ``arrays = await core.infer(model, feeds)``.
"""

import functools
import logging
import time

from .batching import Batcher
from .executor import InferencePool
from .metrics import Metrics
from .protocol import InferenceFailed, NotFound, ServeError, Unavailable

log = logging.getLogger("berth.serve")

# A request alone in the runtime, on a model whose inference takes at most this long, runs on the
# event loop's thread: the two thread hops to the pool and back cost more than that (they are
# most of a small request's overhead), and there is no other request for it to hold up.
INLINE_SECONDS = 0.005


class InferenceCore:
    def __init__(self, threads, *, metrics=None):
        self.default_threads = threads  # when the spec names no thread count
        self.table = None  # RoutingTable in use (swapped by the runtime, on the event loop)
        self.metrics = metrics if metrics is not None else Metrics()
        self.pool = InferencePool(threads)
        self.telemetry = None  # a Telemetry when the runtime reports to a dashboard
        self.loop = None
        self.active = 0  # inference requests routed and not yet released
        self.batch_sizes = {}  # rows of a model run -> runs, since start (the serving profile reads it)

    # --- lifecycle (event loop) ----------------------------------------------------------------

    def start(self, loop):
        self.loop = loop
        self.pool.start(loop)

    def install(self, table):
        """Serve ``table`` from now on (event loop): the pool takes the spec's thread count, and
        routes get their batchers when the spec turns dynamic batching on (a version keeps its
        batcher while the settings stay)."""
        batching = table.spec.batching
        threads = batching.threads or self.default_threads
        if threads != self.pool.size:
            log.info("inference threads: %d (were %d)", threads, self.pool.size)
            self.pool.resize(threads)
        self.metrics.threads.set(threads)
        current = {id(r.session): r.batcher for r in self.table.routes.values()} if self.table is not None else {}
        for route in table.routes.values():
            if not batching.enabled:
                continue
            if not route.batchable:
                log.warning("%s:%s is not batched: an input's first dimension is fixed", table.model, route.version)
                continue
            batcher = current.get(id(route.session))
            if batcher is None or (batcher.max_batch_size, batcher.delay) != (
                batching.max_batch_size,
                batching.max_queue_delay_us / 1e6,
            ):
                batcher = Batcher(
                    route.session,
                    self.pool,
                    self.loop,
                    max_batch_size=batching.max_batch_size,
                    max_queue_delay_us=batching.max_queue_delay_us,
                    on_batch=functools.partial(self.batch_ran, table.model, route.version),
                )
            route.batcher = batcher
        self.table = table

    def stop(self):
        self.pool.shutdown()

    @property
    def ready(self):
        table = self.table
        return table is not None and bool(table.routes)

    # --- routing -------------------------------------------------------------------------------

    def route(self, model, version=None):
        """(table, route) for a request; NotFound / Unavailable (ServeError) otherwise."""
        table = self.table
        if table is None:
            raise Unavailable("no spec is loaded yet; the runtime is still starting")
        if model != table.model:
            raise NotFound(f"unknown model {model!r}; this runtime serves {table.model!r}")
        return table, table.pick(version)

    def model_metadata(self, model, version=None):
        """The OIP model metadata (dict) of the model, or of one version."""
        table, route = self.route(model, version)
        return route.metadata if version is not None else table.metadata

    def model_ready(self, model, version=None):
        """True when the model (version) can serve; NotFound for one this runtime does not know."""
        try:
            self.route(model, version)
        except Unavailable:
            return False
        return True

    # --- inference -----------------------------------------------------------------------------

    def open(self, model, pinned=None, encoding=None):
        """Route a new inference request: an InferCall, or a ServeError to answer. A request pinned
        to a deployed version that failed to load is counted (as unavailable) for that version.
        ``encoding`` (protocol.ENCODINGS) names how the request came; a transport that learns it
        from the body sets ``call.encoding`` once decoded. In-process requests have none."""
        started = time.perf_counter()
        try:
            table, route = self.route(model, pinned)
        except Unavailable:
            if pinned is not None and self.table is not None:
                self.count(model, pinned, time.perf_counter() - started, "unavailable")
            raise
        return InferCall(self, table, route, started, encoding)

    async def infer(self, model, feeds, pinned=None):
        """In process: the outputs (a list of arrays in the session's output order) of ``feeds``,
        counted in metrics and telemetry like a transport's request."""
        call = self.open(model, pinned)
        try:
            return await call.run(feeds)
        except ServeError as exc:
            call.failed(exc)
            raise
        except Exception as exc:
            raise call.crashed(exc) from exc
        finally:
            call.release()
            call.finish()

    def batch_ran(self, model, version, rows):
        """One session.run of ``rows`` rows (a formed batch, or one request unbatched)."""
        self.batch_sizes[rows] = self.batch_sizes.get(rows, 0) + 1
        self.metrics.batch(model, version, rows)
        if self.telemetry is not None:
            self.telemetry.batch(version, rows)

    def count(
        self, model, version, seconds, kind=None, features=None, inputs=None, outputs=None, encoding=None, rows=None
    ):
        """One request in metrics and in the telemetry window (event loop); a successful one with its
        ``encoding`` and ``rows`` also in the window's request latency by encoding and rows."""
        self.metrics.observe(model, version, seconds, kind)
        telemetry = self.telemetry
        if telemetry is not None:
            telemetry.record(version, seconds * 1000.0, kind, features, inputs, outputs, encoding, rows)


class InferCall:
    """One inference request routed to a version: holds its session while it runs."""

    __slots__ = ("core", "table", "route", "session", "started", "feeds", "outputs", "kind", "encoding", "_released")

    def __init__(self, core, table, route, started, encoding=None):
        self.core = core
        self.table = table
        self.route = route
        self.session = route.session
        self.started = started
        self.feeds = None
        self.outputs = None
        self.kind = None  # telemetry error kind once failed
        self.encoding = encoding  # protocol.ENCODINGS name, or None (in process)
        self._released = False
        self.session.inflight += 1
        core.active += 1

    @property
    def signature(self):
        return self.route.signature

    @property
    def max_request_bytes(self):
        return self.table.max_request_bytes

    @property
    def output_names(self):
        return self.session.output_names

    @property
    def version(self):
        return self.route.version

    async def run(self, feeds):
        """The outputs of ``feeds`` (decoded, checked against ``signature``), in ``output_names``
        order; InferenceFailed when onnxruntime refuses them."""
        self.feeds = feeds
        rows = _rows(feeds)
        batcher = self.route.batcher
        try:
            if batcher is not None and rows is not None:
                arrays = await batcher.submit(feeds, rows)
            elif self.core.active == 1 and self.session.typical <= INLINE_SECONDS:
                started = time.perf_counter()
                arrays = self.session.run(feeds)
                self.session.seconds += (time.perf_counter() - started - self.session.seconds) * 0.1
                if rows is not None:
                    self.core.batch_ran(self.table.model, self.route.version, rows)
            else:
                arrays = await self.core.pool.run(self.session, feeds)
                if rows is not None:
                    self.core.batch_ran(self.table.model, self.route.version, rows)
        except Exception as exc:
            text = str(exc).strip().splitlines()
            raise InferenceFailed(f"inference failed: {text[0] if text else type(exc).__name__}") from None
        self.outputs = dict(zip(self.session.output_names, arrays))
        return arrays

    def failed(self, error):
        """The request is answered with ``error`` (a ServeError)."""
        self.kind = error.kind

    def crashed(self, exc):
        """An unexpected exception: logged, and returned as the 500 ServeError to answer."""
        log.error("infer on %s:%s failed", self.table.model, self.route.version, exc_info=exc)
        error = ServeError(f"internal error: {exc}")
        self.failed(error)
        return error

    def release(self):
        """The request no longer needs the session (idempotent)."""
        if not self._released:
            self._released = True
            self.session.done()
            self.core.active -= 1

    def finish(self):
        """Count the request, once its response is sent."""
        self.release()
        kind = self.kind
        ok = kind is None
        self.core.count(
            self.table.model,
            self.route.version,
            time.perf_counter() - self.started,
            kind,
            self.route.features,
            self.feeds if ok else None,
            self.outputs if ok else None,
            self.encoding if ok else None,
            _rows(self.feeds) if ok and self.feeds else None,
        )


def _rows(feeds):
    """The rows on axis 0 shared by every input; None when they differ or an input is a scalar."""
    rows = None
    for array in feeds.values():
        if not array.ndim or (rows is not None and array.shape[0] != rows):
            return None
        rows = array.shape[0]
    return rows
