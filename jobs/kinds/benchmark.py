import contextlib

from django.db import transaction

from jobs.models import BenchmarkResult, Job
from serving.protocol import ENCODINGS

from . import params as p
from .base import (
    JobKind,
    artifact_path,
    load_dataset,
    onnx_reference,
    require_ready_onnx,
    require_target,
    require_usable_provider,
    scaled,
    worker_provider_options,
)

MEASUREMENT_KEYS = {
    "batch_sizes",
    "threads",
    "warmup",
    "min_runs",
    "min_seconds",
    "max_seconds",
    "measure_memory",
    "io",
    "cuda_graph",
}


# What a benchmark times: the model alone (session.run, what comparisons rank), or requests end
# to end through a local berth-serve in one encoding (what production's request latency is
# compared with).
MEASURES = {
    "inference": "session.run alone",
    "requests": "requests end to end through a local berth-serve",
}
# The API schema's view of the two (README: Benchmarks, end to end).
BENCHMARK_MEASURE_SCHEMA = {
    "title": "benchmark",
    "type": "object",
    "properties": {
        "measure": {
            "enum": list(MEASURES),
            "default": "inference",
            "description": "; ".join(f"{name}: {what}" for name, what in MEASURES.items())
            + " (request-scope results, compared with production's request latency)",
        },
        "encoding": {
            "enum": list(ENCODINGS),
            "default": "json",
            "description": "measure=requests only: JSON tensors, the binary tensor extension, or gRPC",
        },
        "batch_sizes": {"type": "array", "items": {"type": "integer", "minimum": 1}, "default": [1]},
    },
}
# Options of the model-alone measurement that a request benchmark has no use for.
INFERENCE_ONLY_KEYS = {"threads", "measure_memory", "io", "cuda_graph", "evaluation_dataset"}


def clean_measurement(params, *, target=None):
    """How to measure: batch sizes, thread counts, the perf_analyzer-style stopping rules and the timing
    mode (``io`` host or device, ``cuda_graph``), checked against ``target``'s provider when given;
    or, with ``measure=requests``, the ``encoding`` of requests through a local berth-serve."""
    from ..engine.errors import EngineError
    from ..engine.gpu import IO_MODES, timing_mode

    p.only_known(params, MEASUREMENT_KEYS | {"evaluation_dataset", "measure", "encoding"}, "benchmark")
    measure = p.choice(params, "measure", "inference", tuple(MEASURES))
    if measure == "requests":
        wrong = sorted(INFERENCE_ONLY_KEYS & set(params))
        if wrong:
            p.fail(
                wrong[0],
                f"{wrong[0]} applies to measure=inference only; a request benchmark runs berth-serve as "
                "production does (one intra-op thread, inputs on the host, no accuracy).",
            )
        return {
            "measure": measure,
            "encoding": p.choice(params, "encoding", "json", ENCODINGS),
            "batch_sizes": p.int_list(params, "batch_sizes", [1], low=1, high=4096, most=8),
            "warmup": p.integer(params, "warmup", 5, low=0, high=10_000),
            "min_runs": p.integer(params, "min_runs", 30, low=1, high=1_000_000),
            "min_seconds": p.number(params, "min_seconds", 1.0, low=0, high=600),
            "max_seconds": p.number(params, "max_seconds", 60.0, low=1, high=3600),
        }
    if "encoding" in params:
        p.fail("encoding", "encoding applies to measure=requests only (requests through a local berth-serve).")
    cleaned = {
        "batch_sizes": p.int_list(params, "batch_sizes", [1], low=1, high=4096, most=8),
        "threads": p.int_list(params, "threads", [None], low=1, high=256, most=4, allow_none=True),
        "warmup": p.integer(params, "warmup", 5, low=0, high=10_000),
        "min_runs": p.integer(params, "min_runs", 30, low=1, high=1_000_000),
        "min_seconds": p.number(params, "min_seconds", 1.0, low=0, high=600),
        "max_seconds": p.number(params, "max_seconds", 60.0, low=1, high=3600),
        "measure_memory": p.boolean(params, "measure_memory", True),
        "io": p.choice(params, "io", "host", IO_MODES),
        "cuda_graph": p.boolean(params, "cuda_graph", False),
    }
    if target is not None:
        try:
            timing_mode(target.execution_provider, cleaned["io"], cleaned["cuda_graph"])
        except EngineError as exc:
            p.fail("cuda_graph" if cleaned["cuda_graph"] else "io", f"{exc} (target {target.slug})")
    if "evaluation_dataset" in params:
        cleaned["evaluation_dataset"] = params["evaluation_dataset"]
    return cleaned


class BenchmarkKind(JobKind):
    """Latency percentiles, throughput, memory and load time of a ready ONNX version on a target,
    plus its accuracy (or output fidelity) against its parent."""

    runs_on_target = True
    time_limits = (3600, 3700)

    def clean_params(self, params, *, version, target):
        require_target(target, "benchmark")
        require_ready_onnx(version, "benchmarked")
        require_usable_provider(target)
        cleaned = clean_measurement(params, target=target)
        if cleaned.get("measure") == "requests":
            return cleaned
        cleaned["evaluation_dataset"] = p.dataset(
            params, "evaluation_dataset", model=version.model, kind="evaluation", required=False
        )
        return cleaned

    def run(self, job, report):
        from ..engine.benchmark import run_benchmark

        version, target, params = job.version, job.target, job.params
        if params.get("measure") == "requests":
            return self._run_requests(job, report)
        with artifact_path(version) as path:
            provider_options = worker_provider_options(target, version, path)
            measured = run_benchmark(
                path,
                inputs=version.io_signature["inputs"],
                provider=target.execution_provider,
                provider_options=provider_options,
                batch_sizes=params["batch_sizes"],
                threads=params["threads"],
                warmup_runs=params["warmup"],
                min_runs=params["min_runs"],
                min_seconds=params["min_seconds"],
                max_seconds=params["max_seconds"],
                measure_memory=params["measure_memory"],
                io=params.get("io", "host"),
                cuda_graph=params.get("cuda_graph", False),
                progress=scaled(report, 2, 80),
                should_stop=lambda: _cancelled(job.id),
            )
            report(82, "Measuring accuracy against the parent")
            quality = self._quality(
                version, path, target, params.get("evaluation_dataset"), scaled(report, 82, 97), provider_options
            )
        rows = [
            BenchmarkResult(
                job=job,
                version=version,
                target=target,
                **_timed(m),
                peak_memory_bytes=m.peak_memory_bytes,
                load_time_ms=m.load_time_ms,
                device_memory_bytes=m.device_memory_bytes,
                timing_mode=m.timing_mode,
                gpu_utilization=(m.gpu_utilization or {}).get("mean_percent"),
                accuracy=quality.get("accuracy"),
                accuracy_delta=quality.get("accuracy_delta"),
                fidelity=quality.get("fidelity", {}),
                quality=quality.get("quality", {}),
                environment=measured.environment,
            )
            for m in measured.measurements
        ]
        with transaction.atomic():
            BenchmarkResult.objects.bulk_create(rows)
        report(100, f"Stored {len(rows)} result{'s' if len(rows) != 1 else ''}")
        return {
            "scope": BenchmarkResult.Scope.SESSION_RUN,
            "results": [_summary(r) for r in rows],
            "quality": quality,
            "environment": measured.environment,
        }

    def _run_requests(self, job, report):
        """Requests end to end: a berth-serve on a loopback port with the version's artifact and the
        target's provider, one keep-alive client in ``encoding``; one request-scope row per batch size."""
        from serving.request_benchmark import RequestClient, local_server, server_environment

        from ..engine.request_benchmark import run_request_benchmark

        version, target, params = job.version, job.target, job.params
        encoding = params["encoding"]
        intra_op_threads = 1  # berth-serve's default, as production runs it
        with artifact_path(version) as path:
            provider_options = worker_provider_options(target, version, path) or {}
            report(2, f"Starting berth-serve ({encoding})")
            served = {
                "slug": target.slug,
                "execution_provider": target.execution_provider,
                "provider_options": provider_options,
            }
            with local_server(
                path, version.io_signature, target=served, grpc=encoding == "grpc", intra_op_threads=intra_op_threads
            ) as server:
                client = RequestClient(server, encoding)
                try:
                    measured = run_request_benchmark(
                        client.prepare,
                        inputs=version.io_signature["inputs"],
                        provider=target.execution_provider,
                        provider_options=provider_options,
                        batch_sizes=params["batch_sizes"],
                        threads=intra_op_threads,
                        warmup_runs=params["warmup"],
                        min_runs=params["min_runs"],
                        min_seconds=params["min_seconds"],
                        max_seconds=params["max_seconds"],
                        progress=scaled(report, 5, 97),
                        should_stop=lambda: _cancelled(job.id),
                    )
                finally:
                    client.close()
        environment = {**measured.environment, **server_environment(encoding)}
        rows = [
            BenchmarkResult(
                job=job,
                version=version,
                target=target,
                scope=BenchmarkResult.Scope.REQUEST,
                encoding=encoding,
                **_timed(m),
                environment=environment,
            )
            for m in measured.measurements
        ]
        with transaction.atomic():
            BenchmarkResult.objects.bulk_create(rows)
        report(100, f"Stored {len(rows)} end-to-end result{'s' if len(rows) != 1 else ''} ({encoding})")
        return {
            "scope": BenchmarkResult.Scope.REQUEST,
            "encoding": encoding,
            "results": [_summary(r) for r in rows],
            "environment": environment,
        }

    def _quality(self, version, path, target, dataset_name, progress, provider_options=None):
        """accuracy / accuracy_delta on the labelled evaluation set, or output fidelity against
        the parent (on the evaluation inputs, else generated ones); {} with neither."""
        from ..engine.evaluate import evaluate
        from ..engine.quality import LABEL_METRICS
        from ..engine.validate import example_inputs

        from registry.models import Dataset

        reference = onnx_reference(version)
        dataset = load_dataset(version.model, dataset_name) if dataset_name else None
        labelled = dataset is not None and "labels" in dataset
        evaluation_set = None
        if labelled:
            row = Dataset.objects.get(model=version.model, name=dataset_name)
            evaluation_set = {"name": row.name, "sha256": row.sha256, "samples": row.rows}
        if not labelled:
            if reference is None:
                return {"note": "No labelled evaluation set and no ONNX parent: nothing to compare with."}
            dataset = dataset or example_inputs(version.io_signature["inputs"], batch=64)
        with contextlib.ExitStack() as stack:
            reference_path = stack.enter_context(artifact_path(reference)) if reference else None
            result = evaluate(
                path,
                dataset=dataset,
                reference_path=reference_path,
                providers=(target.execution_provider,),
                provider_options=provider_options,
                task=version.model.task,
                progress=progress,
            )
        fidelity = {
            key: getattr(result, key)
            for key in (
                "metric",
                "samples",
                "cosine_mean",
                "cosine_min",
                "max_abs_diff",
                "agreement",
                "reference_accuracy",
                "relative_error",
                "max_relative_error",
            )
        }
        fidelity["reference"] = reference.ref if reference else None
        on_labels = any(key in result.metrics for key in LABEL_METRICS)
        stored = {
            "task": version.model.task,
            "evaluation_set": evaluation_set if on_labels else None,
            "reference": fidelity["reference"],
            "samples": result.samples,
            "metrics": result.metrics,
        }
        return {
            "accuracy": result.accuracy,
            "accuracy_delta": result.accuracy_delta,
            "fidelity": fidelity,
            "quality": stored,
        }


def _cancelled(job_id):
    return Job.objects.filter(id=job_id, status=Job.Status.CANCELLED).exists()


def _timed(measurement):
    """The fields of a BenchmarkResult that every benchmark takes from an engine Measurement,
    whatever it timed (session.run or whole requests): runs, latency percentiles and spread (ms),
    throughput (items/s), stability and the timed runs themselves (compressed)."""
    from ..engine.benchmark import compress_samples

    m = measurement
    return {
        "batch_size": m.batch_size,
        "threads": m.threads,
        "iterations": m.iterations,
        "warmup": m.warmup,
        "p25_ms": m.p25_ms,
        "p50_ms": m.p50_ms,
        "p75_ms": m.p75_ms,
        "p90_ms": m.p90_ms,
        "p95_ms": m.p95_ms,
        "p99_ms": m.p99_ms,
        "min_ms": m.min_ms,
        "max_ms": m.max_ms,
        "mean_ms": m.mean_ms,
        "std_ms": m.std_ms,
        "intervals": m.intervals,
        "throughput": m.throughput,
        "stable": m.stable,
        "windows": m.windows,
        "samples": compress_samples(m.samples_ms),
    }


def _summary(row):
    """What the job's result says of one stored BenchmarkResult (a request-scope row has no
    device memory: None)."""
    return {
        "batch_size": row.batch_size,
        "threads": row.threads,
        "p50_ms": row.p50_ms,
        "p95_ms": row.p95_ms,
        "p99_ms": row.p99_ms,
        "throughput": row.throughput,
        "stable": row.stable,
        "timing_mode": row.timing_mode,
        "device_memory_bytes": row.device_memory_bytes,
    }
