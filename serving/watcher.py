"""The spec watcher: polls the source, loads what a new spec needs and hands the finished
routing table to the event loop.

- Polls every ``poll_seconds`` with the ETag (the dashboard answers 304 when nothing changed).
- New versions are downloaded, verified (sha256), loaded and warmed up BEFORE the table that
  routes to them is handed over, so a switch never sends a request to a version still loading.
- A version that cannot be obtained or loaded is refused (logged as an error) and retried with
  a backoff; the others are served. When none of a spec's weighted versions loads, the last
  good table stays in place.
- Unreachable dashboard, 5xx, a malformed spec: logged, and the last good table keeps serving.
"""

import json
import logging
import threading
import time

from .features import FeatureSet
from .routing import LoadFailed, RoutingTable, VersionRoute, load_session
from .sources import ArtifactMismatch, ArtifactRejected, Refused, SourceUnavailable
from .spec import SpecError, parse_spec

log = logging.getLogger("berth.serve")

RETRY_FIRST, RETRY_MAX = 10.0, 300.0


class SpecWatcher:
    def __init__(self, source, install, *, poll_seconds=5.0, intra_op_threads=1, features=True):
        self.source = source
        self.install = install  # called from this thread with each new RoutingTable
        self.poll_seconds = poll_seconds
        self.intra_op_threads = intra_op_threads
        self.features_enabled = features
        self.table = None  # the last table handed over
        self.etag = None
        self.polled = None  # wall-clock time (s) of the last spec fetch the source answered
        self._failed = {}  # sha256 -> (retry at (monotonic), delay, reason)
        self._feature_sets = {}  # (sha256, features as JSON) -> FeatureSet, stable across tables
        self._problem = None  # the last logged problem, so an outage is logged once, not every poll
        self._stop = threading.Event()
        self.first_poll = threading.Event()  # set once the first poll has loaded, or failed
        self._thread = threading.Thread(target=self._run, name="berth-spec", daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # never let the watcher die: the runtime would stop following the spec
                log.exception("spec watcher: unexpected error; the current routing table keeps serving")
            self.first_poll.set()
            self._stop.wait(self.poll_seconds)

    def poll_once(self):
        """Fetch the spec; load and install a new table when it changed. Returns the table
        installed by this poll, or None."""
        retry_due = any(at <= time.monotonic() for at, _, _ in self._failed.values())
        try:
            data, etag = self.source.fetch_spec(None if retry_due else self.etag)
        except Refused as exc:
            self._report(f"{exc}; still serving {self._serving()}", error=True)
            return None
        except SourceUnavailable as exc:
            self._report(f"{exc}; still serving {self._serving()}, retrying every {self.poll_seconds:g} s")
            return None
        self.polled = time.time()
        if self._problem is not None:
            log.info("spec source %s answers again", self.source.describe())
            self._problem = None
        if data is None:
            return None
        self.etag = etag
        try:
            spec = parse_spec(data)
        except SpecError as exc:
            log.error("the spec (ETag %s) cannot be served: %s; still serving %s", etag, exc, self._serving())
            return None
        table = self._build(spec)
        if table is None:
            return None
        if self.table is not None and _same(table, self.table):
            return None
        self.table = table
        self.install(table)
        return table

    def _build(self, spec):
        in_spec = {d.sha256 for d in spec.deployments}
        self._failed = {sha: failed for sha, failed in self._failed.items() if sha in in_spec}
        current = {r.session.sha256: r.session for r in self.table.routes.values()} if self.table else {}
        loaded, routes, unavailable = {}, {}, {}
        for deployment in spec.deployments:
            sha = deployment.sha256
            label = f"{spec.model}:{deployment.version} (sha256 {sha[:12]})"
            session = loaded.get(sha) or current.get(sha)
            if session is None:
                failed = self._failed.get(sha)
                if failed is not None and failed[0] > time.monotonic():
                    unavailable[deployment.version] = failed[2]
                    continue
                session = self._load(spec, deployment, label)
                if session is None:
                    unavailable[deployment.version] = self._failed[sha][2]
                    continue
            loaded[sha] = session
            routes[deployment.version] = VersionRoute(spec.model, deployment, session, self._features(deployment))
        weighted = any(d.weight > 0 for d in spec.deployments)
        if weighted and not any(r.weight > 0 for r in routes.values()) and self.table is not None:
            log.error(
                "none of the weighted versions of %s generation %d could be loaded (%s); still serving %s",
                spec.model,
                spec.generation,
                "; ".join(f"{v}: {r}" for v, r in unavailable.items()),
                self._serving(),
            )
            return None
        return RoutingTable(spec, routes, unavailable)

    def _load(self, spec, deployment, label):
        started = time.monotonic()
        try:
            path = self.source.artifact(deployment)
            session = load_session(
                path,
                sha256=deployment.sha256,
                label=label,
                signature=deployment.signature,
                target=spec.target,
                intra_op_threads=self.intra_op_threads,
            )
        except (ArtifactRejected, LoadFailed, OSError) as exc:
            if isinstance(exc, ArtifactMismatch):
                self.source.report_mismatch(deployment, exc)
            previous = self._failed.get(deployment.sha256)
            delay = RETRY_FIRST if previous is None else min(previous[1] * 2, RETRY_MAX)
            self._failed[deployment.sha256] = (time.monotonic() + delay, delay, str(exc))
            log.error("REFUSED %s: %s. It gets no traffic; retrying in %.0f s", label, exc, delay)
            return None
        self._failed.pop(deployment.sha256, None)
        log.info(
            "loaded %s from %s in %.2f s on %s", label, path, time.monotonic() - started, ", ".join(session.providers)
        )
        return session

    def _features(self, deployment):
        if not self.features_enabled or not deployment.features:
            return None
        key = (deployment.sha256, json.dumps(deployment.features, sort_keys=True))
        features = self._feature_sets.get(key)
        if features is None:
            features = self._feature_sets[key] = FeatureSet(deployment.features, deployment.signature)
        return features or None

    def _serving(self):
        if self.table is None:
            return "nothing (no spec loaded yet)"
        return f"{self.table.model} generation {self.table.generation}: {self.table.split_text()}"

    def _report(self, message, error=False):
        if message != self._problem:
            (log.error if error else log.warning)("spec: %s", message)
            self._problem = message


def _same(a, b):
    """Whether two tables route identically (a re-fetched spec with nothing new loaded)."""
    return (
        a.spec == b.spec
        and a.unavailable.keys() == b.unavailable.keys()
        and {v: (r.session, r.features) for v, r in a.routes.items()}
        == {v: (r.session, r.features) for v, r in b.routes.items()}
    )
