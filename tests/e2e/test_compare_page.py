"""The comparison page in real Chromium: Plotly draws the charts, the recommendation follows
the budget as it is typed, and the CSV download is the table."""

import csv
import io

import pytest
from playwright.sync_api import expect

from .conftest import unbundled_trace_types

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def results(world):
    fp32 = world.version("1", size=4000)
    int8 = world.version("1-int8", parent=fp32, size=1000)
    fp16 = world.version("1-fp16", parent=fp32, size=2000)
    for batch in (1, 8):
        world.result(fp32, world.cpu, p95=10.0 * batch, batch=batch, accuracy=0.980)
        world.result(int8, world.cpu, p95=4.0 * batch, batch=batch, accuracy=0.978)
        world.result(fp16, world.cpu, p95=7.0 * batch, batch=batch, accuracy=0.980)
    world.result(fp32, world.gpu, p95=1.0, accuracy=0.980)
    return world


def test_the_charts_render_and_the_budget_drives_the_recommendation(logged_in_page, viewer, results):
    page = logged_in_page(viewer)
    page.goto("/compare/?model=digits&targets=cpu&targets=gpu&max_drop_pt=0.5")
    for name in ("distribution", "batch", "pareto", "history"):
        expect(page.locator(f'[data-chart="{name}"] svg.main-svg').first).to_be_attached()
    assert page.locator('[data-chart="distribution"] .boxlayer .trace').count() == 2  # cpu and gpu
    assert not unbundled_trace_types(page)

    recommendation = page.locator("#recommendations .recommendation").first
    expect(recommendation).to_contain_text("ship 1-int8")
    page.locator("#budget").fill("3")
    expect(recommendation).to_contain_text("none qualifies")
    expect(recommendation).to_contain_text("1-int8: p95 4.000 ms > 3.000 ms")
    assert "budget_ms=3" in page.url  # the shared link carries the budget
    page.locator("#budget").fill("8")
    expect(recommendation).to_contain_text("ship 1-int8")
    page.locator("#max-drop").fill("0.1")
    expect(recommendation).to_contain_text("ship 1-fp16")
    page.reload()
    expect(page.locator("#recommendations .recommendation").first).to_contain_text("ship 1-fp16")


def test_the_csv_download_is_the_table(logged_in_page, viewer, results):
    page = logged_in_page(viewer)
    page.goto("/compare/?model=digits&targets=cpu&targets=gpu&batch_size=1")
    shown = [
        [cell.strip() for cell in row.locator("td").all_inner_texts()]
        for row in page.locator("#compare-table tbody tr").all()
    ]
    with page.expect_download() as download:
        page.locator("#export-csv").click()
    exported = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    assert [(r["target"], r["version"]) for r in exported] == [(row[0], row[1]) for row in shown]
    for row, line in zip(shown, exported):
        if line["status"] == "missing":
            assert "missing" in row[2] and line["p95_ms"] == ""
        else:
            assert float(row[4].split()[0]) == pytest.approx(float(line["p95_ms"]), rel=1e-3)
    assert len(exported) == 6  # 3 versions × 2 targets, missing ones included


def test_charts_a_reader_trusts(logged_in_page, viewer, world):
    """A single fast version: axes from zero (never negative), µs below 1 ms, one tick per batch
    size, labelled points; a TorchScript version says it needs converting."""
    from registry.models import ModelVersion

    fp32 = world.version("1")
    for batch in (1, 8, 32):
        world.result(fp32, world.cpu, p95=0.008 * batch, batch=batch)
    ModelVersion.objects.create(
        model=world.model,
        version="2-ts",
        format="torchscript",
        artifact="a/2.pt",
        sha256="1" * 64,
        size_bytes=10,
        status="ready",
    )
    page = logged_in_page(viewer)
    page.goto("/compare/?model=digits&targets=cpu")
    for name in ("distribution", "batch", "history"):
        chart = page.locator(f'[data-chart="{name}"]')
        expect(chart.locator("svg.main-svg").first).to_be_attached()
        low = page.evaluate(f"document.querySelector('[data-chart=\"{name}\"]')._fullLayout.yaxis.range[0]")
        assert low >= 0, (name, low)
        expect(chart.locator(".ytitle")).to_have_text("µs")
    ticks = page.locator('[data-chart="batch"] .xtick text').all_text_contents()
    assert ticks == ["1", "8", "32"], ticks
    expect(page.locator('[data-chart="history"] .textpoint text')).to_have_text(["1"])
    expect(page.locator('[data-chart="history"] .legendtext')).to_have_text(["1 lineage on cpu"])
    page.goto("/compare/?model=digits&targets=cpu&versions=1&versions=2-ts")
    missing = page.locator("#compare-table tr.missing").filter(has_text="2-ts")
    expect(missing.locator("a.hint")).to_have_text("convert to ONNX first")
