"""Server time and database queries of the comparison page and API at scale.

50 versions × 5 targets × 4 batch sizes of benchmark results on PostgreSQL (a throw-away
database), served in-process through Django's full stack (middleware, auth, templates,
Plotly figure building); each figure is the median of repeated requests. The baseline is the
same model with 5 versions, measured in the same run: the query count must not grow with the
number of versions, and the 50-version page must stay under 300 ms.

    .venv/bin/python bench/compare_page.py        # DATABASE_URL defaults to the local PostgreSQL
"""

import sys

import djangobench

djangobench.configure("berth_bench")

from django.db import connection  # noqa: E402

GOAL_MS = 300
REPEATS = 15
BATCH_SIZES = (1, 8, 32, 128)


def populate(name, versions, targets):
    from jobs.models import BenchmarkResult, Job
    from registry.models import HardwareTarget, Model, ModelVersion

    model = Model.objects.create(name=name, task="classification")
    hosts = [
        HardwareTarget.objects.get_or_create(slug=f"t{i}", defaults={"name": f"target {i}"})[0] for i in range(targets)
    ]
    created = []
    for i in range(versions):
        created.append(
            ModelVersion.objects.create(
                model=model,
                version=f"v{i}",
                parent=created[0] if created else None,
                format="onnx",
                artifact=f"artifacts/{name}/{i}.onnx",
                sha256=f"{i:064x}",
                size_bytes=1_000_000 - i * 1000,
                status="ready",
            )
        )
    rows = []
    for version in created:
        for target in hosts:
            job = Job.objects.create(kind="benchmark", version=version, target=target, status="succeeded")
            for batch in BATCH_SIZES:
                p50 = 1.0 + 0.01 * version.pk + batch * 0.1
                rows.append(
                    djangobench.benchmark_result(
                        job=job, batch_size=batch, p50_ms=p50, accuracy=0.98 - 0.0001 * version.pk
                    )
                )
    BenchmarkResult.objects.bulk_create(rows)
    return len(rows)


def main():
    with djangobench.test_database() as database:
        client = djangobench.viewer_client()
        populate("few", 5, 5)
        count = populate("many", 50, 5)
        print(
            f"# {connection.vendor} database {database}: {count} benchmark rows for the 50-version model",
            file=sys.stderr,
        )
        met = True
        for label, path in (
            ("compare_page", "/compare/?model={}&budget_ms=5&max_drop_pt=0.5"),
            ("compare_api", "/api/v1/compare/?model={}&budget_ms=5&max_drop_pt=0.5"),
        ):
            few_ms, few_queries, _ = djangobench.measure(client, path.format("few"), REPEATS)
            many_ms, many_queries, _ = djangobench.measure(client, path.format("many"), REPEATS)
            print(
                f"{label}.server_time: ours={many_ms:.1f} ms (50 versions) baseline={few_ms:.1f} ms (5 versions) "
                f"ratio={many_ms / few_ms:.2f}"
            )
            print(f"{label}.queries: ours={many_queries} baseline={few_queries} ratio={many_queries / few_queries:.2f}")
            met &= many_ms < GOAL_MS and many_queries == few_queries
        print(
            f"goals (< {GOAL_MS} ms with 50 versions × 5 targets × 4 batch sizes, constant queries): "
            f"{'met' if met else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
