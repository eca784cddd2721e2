"""Prometheus metrics at ``/metrics``: requests, failures and latency by model and version.

With several worker processes (``--workers``), prometheus_client's multiprocess mode is used
(PROMETHEUS_MULTIPROC_DIR, set by the CLI before the workers start) and a scrape sums them.
"""

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self):
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        kwargs = {"registry": None if self.multiprocess else self.registry}
        self.requests = Counter(
            "berth_requests",
            "Inference requests routed to a model version (errors included).",
            ["model", "version"],
            **kwargs,
        )
        self.failures = Counter(
            "berth_request_failures",
            "Inference requests that failed, by error kind.",
            ["model", "version", "kind"],
            **kwargs,
        )
        self.latency = Histogram(
            "berth_request_duration_seconds",
            "Time from receiving an inference request to sending its response.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            **kwargs,
        )
        self.batch_sizes = Histogram(
            "berth_batch_size",
            "Rows of each model run (the batch formed by dynamic batching, or one request's rows).",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            **kwargs,
        )
        self.flushes = Counter(
            "berth_telemetry_flushes",
            "Telemetry flushes by outcome (delivered, retried, refused, dropped).",
            ["outcome"],
            **kwargs,
        )
        self.request_timeouts = Counter(
            "berth_request_timeouts",
            "HTTP connections answered 408 and closed: the request did not arrive within --request-timeout.",
            **kwargs,
        )
        gauge = {"multiprocess_mode": "livemax"} if self.multiprocess else {}
        self.loaded = Gauge(
            "berth_model_version_loaded",
            "1 while a version is in the routing table, 0 after it left.",
            ["model", "version"],
            **kwargs,
            **gauge,
        )
        self.generation = Gauge("berth_spec_generation", "Generation of the spec being served.", **kwargs, **gauge)
        self.threads = Gauge(
            "berth_inference_threads",
            "Inference threads of a worker process (the spec's batching.threads, or --threads).",
            **kwargs,
            **gauge,
        )
        self._children = {}  # (model, version) -> (requests, latency) children
        self._batch_children = {}  # (model, version) -> batch_sizes child

    def observe(self, model, version, seconds, error_kind=None):
        children = self._children.get((model, version))
        if children is None:
            children = self._children[(model, version)] = (
                self.requests.labels(model, version),
                self.latency.labels(model, version),
            )
        children[0].inc()
        children[1].observe(seconds)
        if error_kind is not None:
            self.failures.labels(model, version, error_kind).inc()

    def batch(self, model, version, rows):
        # Unbatched, this runs once per request: labels() costs more than the observation.
        child = self._batch_children.get((model, version))
        if child is None:
            child = self._batch_children[(model, version)] = self.batch_sizes.labels(model, version)
        child.observe(rows)

    def telemetry(self, outcome):
        self.flushes.labels(outcome).inc()

    def table(self, table, previous):
        if previous is not None:
            for version in previous.routes:
                if version not in table.routes or previous.model != table.model:
                    self.loaded.labels(previous.model, version).set(0)
        for version in table.routes:
            self.loaded.labels(table.model, version).set(1)
        self.generation.set(table.generation)

    def render(self):
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
