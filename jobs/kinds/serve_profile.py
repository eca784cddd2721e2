from serving.profile import SEARCHES

from . import params as p
from .base import JobKind, artifact_path, require_ready_onnx, require_target, require_usable_provider, scaled


class ServeProfileKind(JobKind):
    """berth-serve's inference core in process on the target's worker, over configurations of
    concurrency x max_batch_size x inference threads (serving.profile: a quick hill climb by
    default, ``search`` "full" for the whole grid): throughput, p50/p99 and
    the batch sizes formed per configuration, and the one with the highest throughput whose p99
    stays within ``p99_budget_ms`` (what to set on an endpoint serving this version there)."""

    runs_on_target = True
    time_limits = (1800, 1900)

    def clean_params(self, params, *, version, target):
        require_target(target, "serve_profile")
        require_ready_onnx(version, "profiled for serving")
        require_usable_provider(target)
        p.only_known(
            params, {"concurrency", "batch_sizes", "threads", "seconds", "p99_budget_ms", "search"}, "serve_profile"
        )
        return {
            "search": p.choice(params, "search", "quick", SEARCHES),
            "concurrency": p.int_list(params, "concurrency", [1, 8, 32], low=1, high=256, most=4),
            "batch_sizes": p.int_list(params, "batch_sizes", [1, 8, 32], low=1, high=1024, most=4),
            "threads": p.int_list(params, "threads", [None], low=1, high=64, most=3, allow_none=True),
            "seconds": p.number(params, "seconds", 2.0, low=0.1, high=60),
            "p99_budget_ms": p.number(params, "p99_budget_ms", 50.0, low=0.1, high=60_000),
        }

    def run(self, job, report):
        from serving.profile import sweep

        target = job.target
        params = job.params
        threads = [t for t in params["threads"] if t] or None
        with artifact_path(job.version) as path:
            result = sweep(
                path,
                job.version.io_signature,
                concurrency=params["concurrency"],
                batch_sizes=params["batch_sizes"],
                threads=threads,
                seconds=params["seconds"],
                p99_budget_ms=params["p99_budget_ms"],
                search=params.get("search", "full"),  # jobs queued before the quick search measured the grid
                progress=scaled(report, 5, 95),
                target={
                    "slug": target.slug,
                    "execution_provider": target.execution_provider,
                    "provider_options": target.provider_options or {},
                },
            )
        best = result["recommended"]
        report(
            100,
            "No configuration kept p99 within the budget"
            if best is None
            else f"Recommended: max_batch_size {best['max_batch_size']}, {best['threads']} thread(s): "
            f"{best['throughput']:.0f} req/s at concurrency {best['concurrency']}, p99 {best['p99_ms']:.2f} ms",
        )
        return result
