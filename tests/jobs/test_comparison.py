"""Benchmark comparisons: the table, its verdicts, the recommendation, the API and the page."""

import csv
import io

import pytest
from django.test import Client

from jobs.comparison import benchmark_comparison, table
from jobs.models import Job
from registry.models import HardwareTarget
from tests.conftest import BenchWorld as World

pytestmark = pytest.mark.django_db


def row(comparison, version, target="cpu"):
    return next(r for r in comparison.rows if r.version.version == version and r.target.slug == target)


def test_it_recommends_the_fastest_variant_that_qualifies(world):
    fp32 = world.version("1", size=4000)
    int8 = world.version("1-int8", parent=fp32, size=1000)
    fp16 = world.version("1-fp16", parent=fp32, size=2000)
    world.result(fp32, world.cpu, p95=10.0, accuracy=0.980)
    world.result(int8, world.cpu, p95=4.0, accuracy=0.960)  # fastest, but 2 pt less accurate
    world.result(fp16, world.cpu, p95=6.0, accuracy=0.978)
    comparison = benchmark_comparison(model_name="digits", budget_ms=8, max_drop=0.005)
    (recommendation,) = comparison.recommendations
    assert recommendation.choice.version == fp16
    assert recommendation.runner_up is None
    assert "p95 6.000 ms within the 8.000 ms budget" in recommendation.reason
    assert (
        "accuracy 97.80 % on evaluation set eval (360 samples): -0.20 pt against the reference 1"
        in recommendation.reason
    )
    assert "1-int8: accuracy 96.00 % on evaluation set eval (360 samples): -2.00 pt" in recommendation.reason
    loose = benchmark_comparison(model_name="digits", budget_ms=8, max_drop=0.05).recommendations[0]
    assert (loose.choice.version, loose.runner_up.version) == (int8, fp16)


def test_none_qualifies_and_says_why(world):
    fp32 = world.version("1")
    int8 = world.version("1-int8", parent=fp32)
    world.result(fp32, world.cpu, p95=10.0)
    world.result(int8, world.cpu, p95=9.0, accuracy=0.90)
    (recommendation,) = benchmark_comparison(model_name="digits", budget_ms=5, max_drop=0.005).recommendations
    assert recommendation.choice is None
    assert recommendation.reason.startswith("None qualifies on cpu:")
    assert "1: p95 10.00 ms > 5.000 ms" in recommendation.reason and "1-int8: p95 9.000 ms" in recommendation.reason


def test_small_differences_are_within_noise_and_large_ones_are_not(world):
    fp32 = world.version("1")
    close = world.version("close", parent=fp32)
    far = world.version("far", parent=fp32)
    world.result(fp32, world.cpu, p95=10.0, noise=0.05)
    world.result(close, world.cpu, p95=10.4, noise=0.05)  # 4 % apart, spreads of ±5 % overlap
    world.result(far, world.cpu, p95=5.0, noise=0.05)
    comparison = benchmark_comparison(model_name="digits")
    assert row(comparison, "1").figures["p95_ms"].verdict == "baseline"
    assert row(comparison, "close").figures["p95_ms"].verdict == "noise"
    far_p95 = row(comparison, "far").figures["p95_ms"]
    assert far_p95.verdict == "better" and far_p95.ratio == pytest.approx(0.5)
    assert row(comparison, "far").figures["throughput"].verdict == "better"
    assert row(comparison, "far").figures["load_time_ms"].verdict is None  # a single measurement: no verdict


def test_variants_within_noise_of_each_other_go_to_the_smaller_file(world):
    fp32 = world.version("1", size=4000)
    big = world.version("big", parent=fp32, size=3000)
    small = world.version("small", parent=fp32, size=1000)
    world.result(fp32, world.cpu, p95=10.0)
    world.result(big, world.cpu, p95=4.0, noise=0.1)
    world.result(small, world.cpu, p95=4.1, noise=0.1)
    (recommendation,) = benchmark_comparison(model_name="digits").recommendations
    assert recommendation.choice.version == small and recommendation.runner_up.version == big
    assert "within noise of each other" in recommendation.reason


def test_missing_results_are_missing_not_zero(world):
    fp32 = world.version("1")
    int8 = world.version("1-int8", parent=fp32)
    world.result(fp32, world.cpu, p95=10.0)
    world.result(fp32, world.gpu, p95=2.0)
    world.result(int8, world.cpu, p95=8.0)
    comparison = benchmark_comparison(model_name="digits", targets=["cpu", "gpu"])
    gpu_int8 = row(comparison, "1-int8", "gpu")
    assert gpu_int8.missing and gpu_int8.figures["p95_ms"].value is None
    exported = next(r for r in table(comparison) if r["version"] == "1-int8" and r["target"] == "gpu")
    assert exported["status"] == "missing" and exported["p95_ms"] is None and exported["p95_ms_ratio"] is None
    assert comparison.recommendations[1].choice.version == fp32  # gpu: only fp32 was measured


def test_the_baseline_can_be_chosen(world):
    fp32 = world.version("1")
    int8 = world.version("1-int8", parent=fp32)
    world.result(fp32, world.cpu, p95=10.0)
    world.result(int8, world.cpu, p95=5.0)
    comparison = benchmark_comparison(model_name="digits", baseline="1-int8")
    assert row(comparison, "1").figures["p95_ms"].ratio == pytest.approx(2.0)
    assert row(comparison, "1-int8").is_baseline


def test_unstable_results_are_flagged(world):
    fp32 = world.version("1")
    world.result(fp32, world.cpu, p95=10.0, stable=False)
    comparison = benchmark_comparison(model_name="digits", budget_ms=20)
    assert row(comparison, "1").unstable
    assert "unstable" in comparison.recommendations[0].reason
    assert table(comparison)[0]["status"] == "unstable"


def test_the_api_answers_what_the_page_shows(world, viewer_api):
    fp32 = world.version("1")
    int8 = world.version("1-int8", parent=fp32)
    world.result(fp32, world.cpu, p95=10.0)
    world.result(int8, world.cpu, p95=5.0, accuracy=0.979)
    body = viewer_api.get(
        "/api/v1/compare/?model=digits&versions=1,1-int8&targets=cpu&batch_size=1&budget_ms=6&max_drop_pt=0.5"
    ).json()
    assert [r["version"] for r in body["rows"]] == ["1", "1-int8"]
    assert body["rows"][1]["p95_ms"] == 5.0 and body["rows"][1]["p95_ms_ratio"] == 0.5
    assert body["rows"][1]["p95_ms_verdict"] == "better"
    assert body["recommendations"][0]["choice"] == "1-int8"
    exported = viewer_api.get("/api/v1/compare/?model=digits&versions=1&versions=1-int8&format=csv")
    rows = list(csv.DictReader(io.StringIO(exported.content.decode())))
    assert [r["version"] for r in rows] == ["1", "1-int8"] and rows[1]["p95_ms"] == "5.0"


def test_a_csv_export_has_its_header_even_with_no_rows(world, viewer_api):
    fp32 = world.version("1")
    urls = ("/api/v1/compare/?model=digits&format=csv", "/api/v1/benchmarks/?model=digits&format=csv")
    empty = [viewer_api.get(url) for url in urls]
    for response in empty:
        assert response.status_code == 200 and response["Content-Type"] == "text/csv; charset=utf-8"
    world.result(fp32, world.cpu, p95=10.0)
    for url, response in zip(urls, empty):
        header, row = viewer_api.get(url).content.decode().splitlines()
        assert response.content.decode().splitlines() == [header], url


@pytest.mark.parametrize(
    "query,field",
    [
        ("model=nope", "model"),
        ("model=digits&versions=9", "versions"),
        ("model=digits&targets=tpu", "targets"),
        ("model=digits&percentile=p42", "percentile"),
        ("model=digits&budget_ms=-1", "budget_ms"),
        ("model=digits&batch_size=0", "batch_size"),
        ("model=digits&timing_mode=gpu", "timing_mode"),
        ("", "model"),
    ],
)
def test_the_api_explains_a_bad_query(world, viewer_api, query, field):
    world.version("1")
    response = viewer_api.get(f"/api/v1/compare/?{query}")
    assert response.status_code in (400, 404)
    assert field in response.json()["errors"], response.json()


def test_only_results_timed_the_same_way_are_compared(world, viewer_api, viewer):
    fp32 = world.version("1")
    fp16 = world.version("1-fp16", parent=fp32)
    world.result(fp32, world.gpu, p95=6.0)  # inputs copied each run
    device = world.result(fp16, world.gpu, p95=4.0)
    device.timing_mode, device.device_memory_bytes = "device", 1_700 * 1024 * 1024
    device.save()
    host = viewer_api.get("/api/v1/compare/?model=digits&targets=gpu").json()
    assert host["timing_mode"] == "host" and [r["version"] for r in host["rows"]] == ["1"]
    resident = viewer_api.get("/api/v1/compare/?model=digits&targets=gpu&timing_mode=device").json()
    assert [r["version"] for r in resident["rows"]] == ["1-fp16"]
    assert resident["rows"][0]["device_memory_bytes"] == 1_700 * 1024 * 1024
    client = Client()
    client.force_login(viewer)
    page = client.get("/compare/?model=digits&targets=gpu&timing_mode=device").content.decode()
    assert "GPU memory" in page and "1.7\xa0GB" in page
    assert "GPU memory" not in client.get("/compare/?model=digits&targets=gpu").content.decode()
    # Against the smallest card a live worker on the target's queue reported.
    from jobs import services

    services.worker_report(
        hostname="gpu-1", queues=[world.gpu.queue], facts={"gpus": [{"index": 0, "name": "L4", "memory_mib": 1_024}]}
    )
    page = client.get("/compare/?model=digits&targets=gpu&timing_mode=device").content.decode()
    assert "(does not fit)" in page and "of the GPU&#x27;s 1,024 MiB" in page
    services.worker_report(
        hostname="gpu-1", queues=[world.gpu.queue], facts={"gpus": [{"index": 0, "name": "H100", "memory_mib": 81_559}]}
    )
    assert "(fits)" in client.get("/compare/?model=digits&targets=gpu&timing_mode=device").content.decode()


def test_the_page_shows_the_table_charts_and_recommendation(world, viewer):
    fp32 = world.version("1")
    int8 = world.version("1-int8", parent=fp32)
    world.result(fp32, world.cpu, p95=10.0)
    world.result(int8, world.cpu, p95=5.0)
    world.result(fp32, world.gpu, p95=2.0)
    client = Client()
    client.force_login(viewer)
    html = client.get("/compare/?model=digits&targets=cpu&targets=gpu&budget_ms=6").content.decode()
    assert "For target cpu</strong> with a p95 budget of 6.0 ms" in html and "ship" in html
    assert "none qualifies" not in html.split("For target gpu")[0]
    for name in ("distribution", "batch", "pareto", "history"):
        assert f'data-chart="{name}"' in html and f'id="chart-{name}"' in html
    assert html.count('class="missing"') == 1  # 1-int8 on gpu
    fragment = client.get("/compare/recommendations/?model=digits&targets=cpu&budget_ms=1")
    assert "none qualifies" in fragment.content.decode()
    assert fragment["HX-Replace-Url"] == "/compare/?model=digits&targets=cpu&budget_ms=1"


def _many_versions(world, count):
    root = world.version("root")
    world.result(root, world.cpu, p95=10.0)
    for i in range(count - 1):
        version = world.version(f"v{i}", parent=root)
        for target in (world.cpu, world.gpu):
            world.result(version, target, p95=5.0 + i)


def test_the_page_and_api_use_as_many_queries_for_50_versions_as_for_5(world, viewer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(viewer)

    def queries(path):
        with CaptureQueriesContext(connection) as captured:
            assert client.get(path).status_code == 200
        return len(captured)

    _many_versions(world, 5)
    few = queries("/compare/?model=digits"), queries("/api/v1/compare/?model=digits")
    _many_versions(World(world.owner, name="digits-big"), 50)
    many = queries("/compare/?model=digits-big"), queries("/api/v1/compare/?model=digits-big")
    assert few == many
    assert few[0] <= 12


def test_it_compares_real_benchmarks_of_a_model_and_its_int8_variant(digits_version, viewer_api):
    from jobs import services

    cpu = HardwareTarget.objects.get(slug="cpu")
    compress = services.job_create(
        kind="compress", version=digits_version, target=cpu, params={"method": "dynamic_int8"}
    )
    services.job_run(job_id=compress.id, worker_host="test")
    child = Job.objects.get(pk=compress.pk).output_version
    quick = {"batch_sizes": [1, 8], "min_runs": 10, "min_seconds": 0.05, "max_seconds": 5, "measure_memory": False}
    for version in (digits_version, child):
        job = services.job_create(kind="benchmark", version=version, target=cpu, params=quick)
        services.job_run(job_id=job.id, worker_host="test")
        assert Job.objects.get(pk=job.pk).status == "succeeded"

    comparison = benchmark_comparison(model_name="digits", batch_size=8, max_drop=0.005)
    assert [r.version.version for r in comparison.rows] == ["1", "1-int8-dynamic"]
    fp32, int8 = comparison.rows
    assert fp32.is_baseline and int8.baseline == digits_version
    assert int8.figures["size_bytes"].ratio < 0.5 and int8.figures["size_bytes"].verdict == "better"
    assert int8.figures["p95_ms"].verdict in ("better", "worse", "noise")  # whatever this CPU measured
    assert abs(int8.accuracy_delta) <= 0.01
    choice = comparison.recommendations[0].choice
    # The faster of the rows that lose at most 0.5 pt (int8 may lose a little more on some CPUs).
    eligible = [r for r in comparison.rows if r.is_baseline or -r.accuracy_delta <= 0.005]
    faster = min(eligible, key=lambda r: r.result.p95_ms)
    assert choice == faster or "within noise" in comparison.recommendations[0].reason
    assert comparison.batch_sizes == [1, 8]
    body = viewer_api.get("/api/v1/compare/?model=digits&batch_size=8").json()
    assert body["rows"][1]["p95_ms"] == int8.result.p95_ms


def test_every_chart_is_a_valid_plotly_figure(world):
    import json

    import plotly.graph_objects as go

    from jobs.charts import BUILDERS, all_charts, pareto_optimal

    fp32 = world.version("1", size=4000)
    int8 = world.version("1-int8", parent=fp32, size=1000)
    for batch in (1, 8):
        world.result(fp32, world.cpu, p95=10.0 * batch, batch=batch)
        world.result(int8, world.cpu, p95=4.0 * batch, batch=batch, accuracy=0.97)
    comparison = benchmark_comparison(model_name="digits")
    for name, figure in all_charts(comparison).items():
        go.Figure(json.loads(figure))  # raises on any property plotly.js would not understand
        assert json.loads(figure)["data"], name
    assert set(BUILDERS) == {"distribution", "batch", "pareto", "history"}
    # faster and less accurate, slower and more accurate: both optimal; a point beaten on both is not
    assert pareto_optimal([(1.0, 0.9), (2.0, 0.95), (3.0, 0.9)]) == [True, True, False]


def test_an_untrained_upload_of_another_lineage_is_never_recommended(world, viewer_api):
    trained = world.version("1", size=4000)
    untrained = world.version("3", size=4000)  # a new upload: its own root
    small = world.version("3-ux-small", parent=untrained, size=500)
    world.result(trained, world.cpu, p95=4.0, accuracy=0.992)
    world.result(untrained, world.cpu, p95=4.0, accuracy=0.108)  # the same p95, within noise
    world.result(small, world.cpu, p95=1.0, accuracy=0.105)
    for query in ("", "&max_drop_pt=0.5"):
        body = viewer_api.get(f"/api/v1/compare/?model=digits{query}").json()
        (recommendation,) = body["recommendations"]
        assert recommendation["choice"] == "1", recommendation["reason"]
        assert recommendation["reference"] == "1" and recommendation["measure"] == "accuracy"
        assert recommendation["evaluation_set"] == {"name": "eval", "samples": 360}
        assert recommendation["limit_text"] == "at most 0.50 pt accuracy drop"
        excluded = {e["version"]: e["reason"] for e in recommendation["excluded"]}
        assert set(excluded) == {"3", "3-ux-small"} and "-88.40 pt against the reference 1" in excluded["3"]
        rows = {r["version"]: r for r in body["rows"]}
        assert rows["3"]["qualifies"] is False and rows["3"]["quality_reference"] == "1"
        assert rows["3"]["quality_delta"] == pytest.approx(-0.884) and rows["1"]["evaluation_set"] == "eval"
    chosen = viewer_api.get("/api/v1/compare/?model=digits&reference=3").json()["recommendations"][0]
    assert chosen["reference"] == "3" and chosen["reference_chosen"] is True
    assert viewer_api.get("/api/v1/compare/?model=digits&reference=9").status_code == 404


def test_the_limit_field_follows_the_task(world, viewer):
    from registry.models import Model

    world.result(world.version("1"), world.cpu, p95=4.0)
    client = Client()
    client.force_login(viewer)
    assert 'name="max_drop_pt"' in client.get("/compare/?model=digits").content.decode()
    Model.objects.filter(name="digits").update(task="embedding")
    html = client.get("/compare/?model=digits").content.decode()
    assert 'name="min_cosine"' in html and 'name="max_drop_pt"' not in html and "Min cosine" in html
