"""Production against the benchmark, like for like.

A benchmark times ``session.run`` of one version on one target at one batch size; berth-serve
reports, beside each request's latency (decode, route, infer, encode), the ``session.run`` time of
each model run by its batch size. So production's inference latency is compared with the
benchmark of the same version, on the endpoint's target, at the batch size production ran most;
request latency would need an end-to-end benchmark (requests through a local berth-serve), which
Berth does not run yet: it is never divided by a session.run figure. Where no like figure exists,
the answer says so and why, with no ratio.
"""

from jobs.models import BenchmarkResult, Job


def benchmarks(versions, target):
    """{version id: {batch size: {p50_ms, p95_ms, p99_ms, timing_mode}}}: the newest succeeded
    benchmark of each version on ``target`` (an id) at each batch size."""
    rows = (
        BenchmarkResult.objects.filter(version__in=versions, target=target, job__status=Job.Status.SUCCEEDED)
        .order_by("version_id", "batch_size", "-created")
        .values("version_id", "batch_size", "p50_ms", "p95_ms", "p99_ms", "timing_mode")
    )
    found = {}
    for row in rows:
        found.setdefault(row["version_id"], {}).setdefault(
            row["batch_size"],
            {
                "p50_ms": row["p50_ms"],
                "p95_ms": row["p95_ms"],
                "p99_ms": row["p99_ms"],
                "timing_mode": row["timing_mode"],
            },
        )
    return found


def compare(*, version, target, inference, measured):
    """The like-for-like comparison of one version over some time.

    ``inference``: {batch size: {runs, p50_ms, p95_ms, p99_ms}} of its session.run times in
    production (series.Bucket.inference_summary); ``measured``: {batch size: benchmark figures}
    of the version on the endpoint's target (benchmarks()[version id]). Returns
    {"inference": {...}, "request": {...}}, each with ``comparable`` and either the figures and
    ``ratio`` (production p95 / benchmark p95) or ``why`` there is none."""
    label = f"v{version} on {target}"
    if not inference:
        result = {
            "comparable": False,
            "why": "no inference-only latency was reported (a berth-serve older than "
            "this dashboard, raw events or a scraped server report request "
            "latency only), and request latency is not comparable with a "
            "session.run benchmark",
        }
    else:
        rows, figures = max(inference.items(), key=lambda item: (item[1]["runs"], -item[0]))
        bench = measured.get(rows)
        if bench is None:
            sizes = ", ".join(str(size) for size in sorted(measured))
            result = {
                "comparable": False,
                "batch_size": rows,
                "production_p95_ms": figures["p95_ms"],
                "why": f"{label} has no benchmark at batch size {rows}, the size production ran"
                + (f" (benchmarked at {sizes})" if sizes else " (never benchmarked there)"),
            }
        else:
            ratio = figures["p95_ms"] / bench["p95_ms"] if figures["p95_ms"] and bench["p95_ms"] else None
            result = {
                "comparable": ratio is not None,
                "batch_size": rows,
                "runs": figures["runs"],
                "production_p95_ms": figures["p95_ms"],
                "benchmark_p95_ms": bench["p95_ms"],
                "ratio": ratio,
                "timing_mode": bench["timing_mode"],
            }
            if ratio is None:
                result["why"] = "a p95 of zero cannot be compared"
    request = {
        "comparable": False,
        "why": f"no end-to-end benchmark of {label} (requests through a local berth-serve); a benchmark times "
        "session.run only, while a request also decodes, routes and encodes",
    }
    return {"inference": result, "request": request}
