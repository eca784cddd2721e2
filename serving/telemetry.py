"""Telemetry windows for the dashboard (DESIGN §4): per version, requests, errors by kind, a
latency sketch (ms) and feature histograms, flushed every ``flush_seconds`` (aligned to the
wall clock) or after ``flush_requests`` requests.

The request path only adds to the current window (event loop thread, no locks). A flush moves
the window into the Sender's bounded queue; the Sender (its own thread) posts it with an
idempotency ``flush_id``, retries 5xx / network errors / 408 / 429 with exponential backoff
(1, 2, 4 ... 60 s), gives up on other 4xx (logged), and when its queue is full drops the
oldest flush and reports how many it dropped (``dropped``) in the next delivered one.
"""

import collections
import logging
import threading
import time
import uuid
from datetime import datetime, timezone

from berth.core.stats import LogSketch

from .dashboard import DashboardUnreachable
from .features import FeatureBuffer

log = logging.getLogger("berth.serve")

# Bin pending feature rows once this many requests or input bytes wait: bounds the memory held,
# and amortises numpy's per-call cost over many requests.
BUFFER_REQUESTS = 256
BUFFER_BYTES = 1 << 20
LATENCY_BATCH = 4096
TIMINGS_KEPT = 1 << 17  # session.run timings held between flushes at most (the oldest go first)
# Request sketches by (encoding, rows) per version and window at most: a client sending every row
# count would otherwise grow the flush without bound; requests past it still count in ``latency``.
REQUEST_SKETCHES = 32


class VersionStats:
    __slots__ = (
        "requests",
        "errors",
        "error_kinds",
        "latency",
        "latencies",
        "features",
        "counts",
        "buffer",
        "batch_sizes",
        "inference",
        "by_encoding",
    )

    def __init__(self, features):
        self.requests = 0
        self.errors = 0
        self.error_kinds = {}
        self.latency = LogSketch()
        self.latencies = []  # ms, added to the sketch in bulk (vectorised) rather than one by one
        self.features = features
        self.counts = None
        self.buffer = FeatureBuffer(features) if features else None
        self.batch_sizes = {}  # rows of a model run -> runs
        self.inference = {}  # rows of a model run -> LogSketch of its session.run time (ms)
        # (encoding, rows of the request) -> [LogSketch, pending ms]: successful requests' latency by how
        # they came, what an end-to-end benchmark in that encoding is compared with.
        self.by_encoding = {}

    def bin_pending(self):
        counts = self.buffer.drain()
        if counts is not None:
            self.counts = counts if self.counts is None else self.counts + counts

    def sketch_pending(self):
        self.latency.add_many(self.latencies)
        self.latencies = []
        for entry in self.by_encoding.values():
            if entry[1]:
                entry[0].add_many(entry[1])
                entry[1] = []

    def request_latency(self):
        """{encoding: {"<rows>": sketch}} of the successful requests (sketch_pending first)."""
        found = {}
        for (encoding, rows), (sketch, _) in sorted(self.by_encoding.items()):
            found.setdefault(encoding, {})[str(rows)] = sketch.to_dict()
        return found

    def series(self, version):
        self.sketch_pending()
        features = {}
        if self.features:
            self.bin_pending()
            if self.counts is not None:
                features = self.features.split(self.counts)
            else:
                features = {name: [0] * size for name, size in zip(self.features.names, self.features.sizes)}
        return {
            "version": version,
            "requests": self.requests,
            "errors": self.errors,
            "error_kinds": dict(self.error_kinds),
            "latency": self.latency.to_dict(),
            "features": features,
            "batch_sizes": {str(rows): runs for rows, runs in sorted(self.batch_sizes.items())},
            "inference_latency": {str(rows): sketch.to_dict() for rows, sketch in sorted(self.inference.items())},
            "request_latency": self.request_latency(),
        }

    def add_timings(self, timings):
        """[(rows, ms)] of session.run calls, into the inference sketch of each batch size."""
        by_rows = {}
        for rows, ms in timings:
            by_rows.setdefault(rows, []).append(ms)
        for rows, values in by_rows.items():
            sketch = self.inference.get(rows)
            if sketch is None:
                sketch = self.inference[rows] = LogSketch()
            sketch.add_many(values)


class Telemetry:
    """The current window (event loop only) and what to do when it is full."""

    def __init__(self, endpoint, sender, *, flush_seconds=10.0, flush_requests=1000):
        self.endpoint = endpoint
        self.sender = sender
        self.flush_seconds = flush_seconds
        self.flush_requests = flush_requests
        self.features = {}  # version -> FeatureSet of the routing table in use
        self.sessions = {}  # version -> ModelSession whose session.run timings this window reads
        self.describe = None  # () -> the replica object every flush carries (see Runtime.replica)
        self._open()

    def _open(self):
        self.window = {}
        self.requests = 0
        self.started_wall = time.time()
        self.started = time.monotonic()

    def configure(self, *, flush_seconds, flush_requests, features, sessions=None):
        """A new routing table: new flush settings, the feature sets by version and the sessions
        by version (whose session.run timings become the inference-only latency). A version
        whose features changed starts a new window, so a window's histograms share one set of
        edges."""
        changed = any(
            version in self.window and self.window[version].features is not feature_set
            for version, feature_set in features.items()
        )
        if changed:
            self.flush()
        self._take_timings()  # what ran so far, under the versions of the table it ran under
        self.flush_seconds, self.flush_requests, self.features = flush_seconds, flush_requests, features
        if sessions is not None:
            for session in sessions.values():
                if session.timings is None:
                    session.timings = collections.deque(maxlen=TIMINGS_KEPT)
            self.sessions = sessions

    def record(
        self, version, latency_ms, error_kind=None, features=None, inputs=None, outputs=None, encoding=None, rows=None
    ):
        """Count one request routed to ``version`` (event loop); a successful one that came in
        ``encoding`` with ``rows`` rows is also kept in the request latency by encoding and rows."""
        stats = self.window.get(version)
        if stats is None:
            stats = self.window[version] = VersionStats(self.features.get(version))
        stats.requests += 1
        latencies = stats.latencies
        latencies.append(latency_ms)
        if encoding is not None and rows is not None:
            entry = stats.by_encoding.get((encoding, rows))
            if entry is None and len(stats.by_encoding) < REQUEST_SKETCHES:
                entry = stats.by_encoding[(encoding, rows)] = [LogSketch(), []]
            if entry is not None:
                entry[1].append(latency_ms)
        if len(latencies) >= LATENCY_BATCH:
            stats.sketch_pending()
        if error_kind is not None:
            stats.errors += 1
            stats.error_kinds[error_kind] = stats.error_kinds.get(error_kind, 0) + 1
        elif features is not None and features is stats.features:
            buffer = stats.buffer
            buffer.add(inputs, outputs)
            if buffer.requests >= BUFFER_REQUESTS or buffer.nbytes >= BUFFER_BYTES:
                stats.bin_pending()
        self.requests += 1
        if self.requests >= self.flush_requests:
            self.flush()

    def batch(self, version, rows):
        """Count one model run of ``rows`` rows for ``version`` (event loop)."""
        stats = self.window.get(version)
        if stats is None:
            stats = self.window[version] = VersionStats(self.features.get(version))
        stats.batch_sizes[rows] = stats.batch_sizes.get(rows, 0) + 1

    def flush(self):
        """Close the current window and queue it for the dashboard (event loop)."""
        self._take_timings()
        window, started_wall, started = self.window, self.started_wall, self.started
        self._open()
        seconds = round(self.started - started, 3)
        payload = {
            "endpoint": self.endpoint,
            "flush_id": str(uuid.uuid4()),
            "start": datetime.fromtimestamp(started_wall, timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "seconds": int(seconds) if seconds == int(seconds) else seconds,
            "series": [stats.series(version) for version, stats in window.items()],
            "dropped": 0,
        }
        if self.describe is not None:
            payload["replica"] = self.describe()
        self.sender.enqueue(payload)
        return payload

    def _take_timings(self):
        """Move each session's session.run timings into its version's window (event loop; the
        inference threads append meanwhile, popleft takes only what is there)."""
        for version, session in self.sessions.items():
            timings = session.timings
            if not timings:
                continue
            taken = []
            try:
                while True:
                    taken.append(timings.popleft())
            except IndexError:
                pass
            stats = self.window.get(version)
            if stats is None:
                stats = self.window[version] = VersionStats(self.features.get(version))
            stats.add_timings(taken)

    def next_boundary(self, now=None):
        """Seconds until the next wall-clock multiple of flush_seconds (windows align to it)."""
        now = time.time() if now is None else now
        period = self.flush_seconds
        return (int(now // period) + 1) * period - now


class Sender:
    """Posts flushes to the dashboard from its own thread; bounded queue, retries, idempotency."""

    def __init__(self, client_factory, url, *, capacity=100, metrics=None, first_backoff=1.0, max_backoff=60.0):
        self._client_factory = client_factory
        self.url = url
        self.capacity = capacity
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.metrics = metrics
        self._queue = collections.deque()  # waiting flushes, oldest first
        self._current = None  # the flush being posted (never dropped)
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._closing = False
        self._deadline = None
        self.dropped = 0  # flushes discarded since the last delivered flush, not yet reported
        self.delivered = 0
        self.refused = 0
        self.lost = 0
        self._thread = threading.Thread(target=self._run, name="berth-telemetry", daemon=True)

    def start(self):
        self._thread.start()

    def pending(self):
        """Flushes not delivered yet (queued or being posted)."""
        with self._lock:
            return len(self._queue) + (self._current is not None)

    def enqueue(self, payload):
        """Queue a flush (never blocks on the network); the oldest goes when the queue is full."""
        with self._lock:
            if len(self._queue) >= self.capacity:
                oldest = self._queue.popleft()
                self.dropped += 1
                log.error(
                    "telemetry: the queue of %d flushes is full (dashboard unreachable?); dropped the flush "
                    "of %s with %d requests (%d dropped since the last delivery)",
                    self.capacity,
                    oldest["start"],
                    sum(s["requests"] for s in oldest["series"]),
                    self.dropped,
                )
                if self.metrics:
                    self.metrics.telemetry("dropped")
            self._queue.append(payload)
            self._ready.notify()

    def close(self, timeout):
        """Stop after sending what is queued, for at most ``timeout`` seconds (blocking)."""
        with self._lock:
            self._closing = True
            self._deadline = time.monotonic() + timeout
            self._ready.notify()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout + 1)
        with self._lock:
            left = list(self._queue) + ([self._current] if self._current is not None else [])
            self._queue.clear()
            self._current = None
        if left:
            self.lost += len(left)
            log.error(
                "telemetry: %d flush(es) with %d requests could not be delivered before shutdown and are lost",
                len(left),
                sum(s["requests"] for p in left for s in p["series"]),
            )

    def _run(self):
        client = self._client_factory()
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._closing:
                        self._ready.wait()
                    if not self._queue:
                        return
                    payload = self._current = self._queue.popleft()
                    # Drops so far are reported by this flush (its retries carry the same number).
                    payload["dropped"] += self.dropped
                    self.dropped = 0
                if not self._deliver(client, payload):
                    return
        finally:
            client.close()

    def _deliver(self, client, payload):
        """Post until accepted or refused; False when shutdown's deadline ran out."""
        delay = self.first_backoff
        while True:
            outcome, detail = self._post(client, payload)
            if outcome == "accepted":
                with self._lock:
                    self._current = None
                self.delivered += 1
                if self.metrics:
                    self.metrics.telemetry("delivered")
                return True
            if outcome == "refused":
                log.error(
                    "telemetry: the dashboard refused the flush of %s (%s); it is discarded", payload["start"], detail
                )
                with self._lock:
                    self._current = None
                    self.dropped += payload["dropped"]  # still to be reported
                self.refused += 1
                if self.metrics:
                    self.metrics.telemetry("refused")
                return True
            if self.metrics:
                self.metrics.telemetry("retried")
            with self._lock:
                closing, deadline, waiting = self._closing, self._deadline, len(self._queue)
            wait = min(delay, self.max_backoff)
            if closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wait = min(wait, left)
            log.warning("telemetry: %s; retrying in %.1f s (%d more flush(es) waiting)", detail, wait, waiting)
            if closing:
                time.sleep(wait)
            else:
                self._wake.wait(wait)  # close() cuts a long backoff short
            delay *= 2

    def _post(self, client, payload):
        try:
            response = client.post_json(self.url, payload)
        except DashboardUnreachable as exc:
            return "retry", f"the dashboard is unreachable ({exc})"
        if response.status in (200, 201, 202, 204):
            return "accepted", None
        detail = f"{response.status}: {response.text(300)}"
        if response.status in (408, 429) or response.status >= 500:
            return "retry", f"the dashboard answered {detail}"
        return "refused", detail
