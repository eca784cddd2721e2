"""Production against the benchmark, like for like.

A benchmark of scope ``session_run`` times ``session.run`` of one version on one target at one batch
size; berth-serve reports, beside each request's latency (decode, route, infer, encode), the
``session.run`` time of each model run by its batch size. So production's inference latency is
compared with that benchmark of the same version, on the endpoint's target, at the batch size
production ran most.

An end-to-end benchmark (scope ``request``, ``measure=requests``) times requests through a local
berth-serve in one encoding (json, binary, grpc) at one batch size; berth-serve reports its
successful requests' latency by the encoding they came in and their rows. So production's request
latency is compared with the end-to-end benchmark of the same version, on the endpoint's target, in
the encoding and at the rows production served most. A request figure is never divided by a
session.run one, nor one encoding by another. Where no like figure exists, the answer says so and
why, with no ratio.
"""

from jobs.models import BenchmarkResult, Job

KINDS = ("inference", "request")  # what production latency a comparison (and a gap alert rule) reads


def benchmarks(versions, target):
    """{version id: {"inference": {batch size: figures}, "request": {encoding: {batch size: figures}}}}:
    the newest succeeded benchmark of each version on ``target`` (an id) at each batch size, of the
    model alone and end to end in each encoding; figures are {p50_ms, p95_ms, p99_ms, timing_mode}."""
    rows = (
        BenchmarkResult.objects.filter(version__in=versions, target=target, job__status=Job.Status.SUCCEEDED)
        .order_by("version_id", "batch_size", "-created")
        .values("version_id", "scope", "encoding", "batch_size", "p50_ms", "p95_ms", "p99_ms", "timing_mode")
    )
    found = {}
    for row in rows:
        measured = found.setdefault(row["version_id"], {"inference": {}, "request": {}})
        if row["scope"] == BenchmarkResult.Scope.REQUEST:
            by_batch = measured["request"].setdefault(row["encoding"], {})
        else:
            by_batch = measured["inference"]
        by_batch.setdefault(
            row["batch_size"],
            {
                "p50_ms": row["p50_ms"],
                "p95_ms": row["p95_ms"],
                "p99_ms": row["p99_ms"],
                "timing_mode": row["timing_mode"],
            },
        )
    return found


def compare(*, version, target, inference, measured, request=None):
    """The like-for-like comparisons of one version over some time.

    ``inference``: {batch size: {runs, p50_ms, p95_ms, p99_ms}} of its session.run times in
    production (series.Bucket.inference_summary); ``request``: {encoding: {rows: {requests, p50_ms,
    p95_ms, p99_ms}}} of its successful requests (series.Bucket.request_summary); ``measured``: the
    version's benchmarks on the endpoint's target (benchmarks()[version id]). Returns
    {"inference": {...}, "request": {...}}, each with ``comparable`` and either the figures and
    ``ratio`` (production p95 / benchmark p95) or ``why`` there is none."""
    label = f"v{version} on {target}"
    return {
        "inference": _inference(label, inference, measured.get("inference", {})),
        "request": _request(label, request or {}, measured.get("request", {})),
    }


def _inference(label, inference, measured):
    if not inference:
        return {
            "comparable": False,
            "why": "no inference-only latency was reported (a berth-serve older than "
            "this dashboard, raw events or a scraped server report request "
            "latency only), and request latency is not comparable with a "
            "session.run benchmark",
        }
    rows, figures = max(inference.items(), key=lambda item: (item[1]["runs"], -item[0]))
    bench = measured.get(rows)
    if bench is None:
        sizes = ", ".join(str(size) for size in sorted(measured))
        return {
            "comparable": False,
            "batch_size": rows,
            "production_p95_ms": figures["p95_ms"],
            "why": f"{label} has no benchmark at batch size {rows}, the size production ran"
            + (f" (benchmarked at {sizes})" if sizes else " (never benchmarked there)"),
        }
    return _ratio(
        {"batch_size": rows, "runs": figures["runs"], "timing_mode": bench["timing_mode"]},
        figures["p95_ms"],
        bench["p95_ms"],
    )


def _request(label, request, measured):
    if not request:
        return {
            "comparable": False,
            "why": "production did not report which encoding served its requests (a berth-serve older "
            "than this dashboard, raw events or a scraped server), so no end-to-end benchmark is like "
            "them; a session.run benchmark never is",
        }
    served = [(encoding, rows, figures) for encoding, by_rows in request.items() for rows, figures in by_rows.items()]
    total = sum(figures["requests"] for _, _, figures in served)
    encoding, rows, figures = max(served, key=lambda item: (item[2]["requests"], -item[1], item[0]))
    found = {
        "encoding": encoding,
        "batch_size": rows,
        "requests": figures["requests"],
        # The share of production's successful requests this comparison speaks for.
        "share": figures["requests"] / total if total else None,
        "production_p95_ms": figures["p95_ms"],
    }
    bench = measured.get(encoding, {}).get(rows)
    if bench is None:
        others = "; ".join(
            f"{name} at {', '.join(str(size) for size in sorted(sizes))}" for name, sizes in sorted(measured.items())
        )
        return {
            **found,
            "comparable": False,
            "why": f"{label} has no end-to-end benchmark in {encoding} at batch size {rows}, the encoding and "
            "size production served most"
            + (
                f" (end-to-end benchmarks: {others})"
                if others
                else f" (none yet: a benchmark with measure=requests, encoding={encoding})"
            ),
        }
    return _ratio(found, figures["p95_ms"], bench["p95_ms"])


def _ratio(found, production_p95_ms, benchmark_p95_ms):
    ratio = production_p95_ms / benchmark_p95_ms if production_p95_ms and benchmark_p95_ms else None
    result = {
        **found,
        "comparable": ratio is not None,
        "production_p95_ms": production_p95_ms,
        "benchmark_p95_ms": benchmark_p95_ms,
        "ratio": ratio,
    }
    if ratio is None:
        result["why"] = "a p95 of zero cannot be compared"
    return result
