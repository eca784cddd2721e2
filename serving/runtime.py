"""The runtime's lifecycle on the event loop: the inference core (routing table, thread pool,
metrics, telemetry) and the background threads that feed it (spec watcher, telemetry sender)."""

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from . import __version__
from .dashboard import DashboardClient
from .core import InferenceCore
from .sources import BundleSource, DashboardSource
from .spec import TelemetrySpec
from .telemetry import Sender, Telemetry
from .transport import DEADLINES
from .watcher import SpecWatcher

log = logging.getLogger("berth.serve")

OPTIONS_ENV = "BERTH_SERVE_OPTIONS"
STARTUP_WAIT = 30.0  # seconds the server waits for its first spec before it listens anyway


@dataclass
class ServeOptions:
    """Everything a worker process needs (the CLI passes it to workers as JSON in the environment)."""

    dashboard: str | None = None
    endpoint: str | None = None
    token: str | None = None
    bundle: str | None = None
    cache_dir: str = "~/.cache/berth-serve"
    poll_seconds: float = 5.0
    threads: int = 0  # inference threads; 0 = one per CPU
    intra_op_threads: int = 1
    telemetry: bool = True
    shutdown_flush_seconds: float = 5.0
    graceful_seconds: float = 30.0
    request_timeout: float = 60.0  # seconds an HTTP request may take to arrive (transport.py)
    queue_capacity: int = 100
    log_level: str = "info"
    host: str = "127.0.0.1"
    grpc_port: int | None = None  # the gRPC transport's port; None: no gRPC
    # This berth-serve's id (all its worker processes share it): the dashboard lists replicas by it.
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_env(self):
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls):
        return cls(**json.loads(os.environ[OPTIONS_ENV]))

    @property
    def telemetry_enabled(self):
        return self.telemetry and bool(self.dashboard) and bool(self.token)

    def inference_threads(self):
        return self.threads or max(1, min(8, os.cpu_count() or 1))


def configure_logging(level):
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s berth-serve: %(message)s")


class Runtime:
    def __init__(self, options):
        self.options = options
        self.core = InferenceCore(options.inference_threads())
        self.metrics = self.core.metrics
        self.loop = None
        self.telemetry = None
        self.sender = None
        self.watcher = None
        self.grpc = None
        self._timer = None
        self.started = time.time()

    # --- lifecycle (lifespan startup / shutdown) ---------------------------------------------

    async def start(self):
        self.loop = asyncio.get_running_loop()
        self.core.start(self.loop)
        options = self.options
        DEADLINES.start(options.request_timeout, self.metrics.request_timeouts.inc)
        if options.bundle:
            reporter = (
                DashboardClient(options.dashboard, options.token, timeout=10, instance=options.instance)
                if options.dashboard
                else None
            )
            source = BundleSource(options.bundle, client=reporter, endpoint=options.endpoint)
        else:
            source = DashboardSource(
                DashboardClient(options.dashboard, options.token, instance=options.instance),
                options.endpoint,
                options.cache_dir,
            )
        if options.telemetry_enabled:
            self.sender = Sender(
                lambda: DashboardClient(options.dashboard, options.token, timeout=10, instance=options.instance),
                TelemetrySpec().url,
                capacity=options.queue_capacity,
                metrics=self.metrics,
            )
            self.telemetry = self.core.telemetry = Telemetry(options.endpoint or "", self.sender)
            self.telemetry.describe = self.replica
            self.sender.start()
            self._timer = asyncio.ensure_future(self._flush_timer())
        self.watcher = SpecWatcher(
            source,
            self._install_threadsafe,
            poll_seconds=options.poll_seconds,
            intra_op_threads=options.intra_op_threads,
            features=self.telemetry is not None,
        )
        self.watcher.start()
        log.info(
            "following %s (every %g s); telemetry %s",
            source.describe(),
            options.poll_seconds,
            f"to {options.dashboard}" if self.telemetry else "off",
        )
        # Listen once the first spec is loaded (so that a worker that takes connections can serve
        # them), or has failed (unreachable dashboard: listen and answer ready 503 meanwhile), or
        # after STARTUP_WAIT (a slow download: the same).
        await self.loop.run_in_executor(None, self.watcher.first_poll.wait, STARTUP_WAIT)
        if options.grpc_port is not None:
            from .grpc_server import GrpcTransport  # grpcio only where gRPC is served

            self.grpc = GrpcTransport(self.core, options.host, options.grpc_port, options.request_timeout)
            await self.grpc.start()

    async def stop(self):
        """After the server stopped accepting and finished the requests in flight: stop the
        watcher, flush the last window and send what is pending (bounded by a deadline)."""
        loop = asyncio.get_running_loop()
        DEADLINES.stop()
        if self.grpc is not None:
            await self.grpc.stop(self.options.graceful_seconds)
        if self.watcher is not None:
            await loop.run_in_executor(None, self.watcher.stop)
        if self._timer is not None:
            self._timer.cancel()
        if self.telemetry is not None:
            self.telemetry.flush()
            pending = self.sender.pending()
            log.info(
                "shutting down: sending %d pending telemetry flush(es) (at most %g s)",
                pending,
                self.options.shutdown_flush_seconds,
            )
            await loop.run_in_executor(None, self.sender.close, self.options.shutdown_flush_seconds)
        await loop.run_in_executor(None, self.core.stop)

    async def _flush_timer(self):
        while True:
            await asyncio.sleep(self.telemetry.next_boundary())
            self.telemetry.flush()

    # --- routing tables ------------------------------------------------------------------------

    def _install_threadsafe(self, table):
        self.loop.call_soon_threadsafe(self.install, table)

    def install(self, table):
        """Switch to ``table`` (event loop): one assignment; sessions that left are released
        once their requests in flight finish."""
        previous = self.core.table
        if self.telemetry is not None:
            spec = table.spec.telemetry or TelemetrySpec()
            if table.spec.endpoint:
                self.telemetry.endpoint = table.spec.endpoint
            self.sender.url = spec.url
            period = self.telemetry.flush_seconds
            self.telemetry.configure(
                flush_seconds=spec.flush_seconds,
                flush_requests=spec.flush_requests,
                features={v: r.features for v, r in table.routes.items()},
                sessions={v: r.session for v, r in table.routes.items()},
            )
            if spec.flush_seconds != period:  # the timer sleeps towards the old period's boundary
                self._timer.cancel()
                self._timer = asyncio.ensure_future(self._flush_timer())
        self.core.install(table)
        if previous is not None:
            kept = table.sessions()
            for key, session in previous.sessions().items():
                if key not in kept:
                    session.retire()
        self.metrics.table(table, previous)
        if self.grpc is not None:
            asyncio.ensure_future(self.grpc.update_health())
        message = f"serving {table.model} generation {table.generation}: {table.split_text()}"
        if table.unavailable:
            message += "; refused: " + ", ".join(table.unavailable)
        (log.warning if table.unavailable or not table.routes else log.info)(message)

    def replica(self):
        """What this replica reports about itself in every telemetry flush (README "Replicas")."""
        table, watcher = self.table, self.watcher
        polled = watcher.polled if watcher is not None else None
        return {
            "instance": self.options.instance,
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "runtime": f"berth-serve {__version__}"[:40],
            "generation": table.generation if table is not None else None,
            "versions": sorted(table.routes) if table is not None else [],
            "spec_polled": _iso(polled) if polled else None,
            "started": _iso(self.started),
        }

    @property
    def table(self):
        return self.core.table

    @property
    def ready(self):
        return self.core.ready


def _iso(seconds):
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
