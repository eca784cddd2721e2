"""Serving profiles in the comparison: the newest per version × target in the compare API, its
CSV and the compare page, from serve_profile jobs run here."""

import csv
import io

import pytest
from django.test import Client

from jobs.comparison import SERVING_COLUMNS
from tests.conftest import profile_serving

pytestmark = pytest.mark.django_db

QUERY = "model=digits&versions=1&targets=cpu"


def test_the_compare_api_and_csv_carry_the_newest_profile(serving_profile, viewer_api, engineer):
    newer = profile_serving(serving_profile.version, user=engineer)
    best = newer.result["recommended"]
    (row,) = viewer_api.get(f"/api/v1/compare/?{QUERY}").json()["rows"]
    assert row["serving_profile_job"] == newer.pk and row["serving_p99_budget_ms"] == 10_000
    for key in ("max_batch_size", "max_queue_delay_us", "threads", "concurrency", "throughput", "p50_ms", "p99_ms"):
        assert row[f"serving_{key}"] == best[key], key
    assert row["status"] == "missing"  # profiled, never benchmarked: the benchmark figures stay empty
    exported = viewer_api.get(f"/api/v1/compare/?{QUERY}&format=csv")
    (line,) = csv.DictReader(io.StringIO(exported.content.decode()))
    assert [c for c in line if c.startswith("serving_")] == SERVING_COLUMNS
    assert float(line["serving_throughput"]) == pytest.approx(best["throughput"])
    assert int(line["serving_max_batch_size"]) == best["max_batch_size"]


def test_a_version_without_a_profile_has_empty_serving_columns(digits_version, viewer_api):
    (row,) = viewer_api.get(f"/api/v1/compare/?{QUERY}").json()["rows"]
    assert all(row[column] is None for column in SERVING_COLUMNS)


def test_the_compare_page_shows_the_profile(serving_profile, viewer):
    client = Client()
    client.force_login(viewer)
    html = client.get(f"/compare/?{QUERY}").content.decode()
    table = html.split('id="serving-table"')[1].split("</table>")[0]
    best = serving_profile.result["recommended"]
    cells = [f"<td>{best['max_batch_size']}</td>", f"<td>{best['max_queue_delay_us']}</td>"]
    assert all(cell in table for cell in cells)
    assert f'class="verdict-better">{best["throughput"]:.0f}</td>' in table
    assert f'href="/jobs/{serving_profile.pk}/"' in table


def test_a_profiled_version_is_compared_without_being_named(serving_profile, viewer_api):
    body = viewer_api.get("/api/v1/compare/?model=digits").json()
    assert body["versions"] == ["1"] and body["targets"] == ["cpu"]
    assert body["rows"][0]["serving_profile_job"] == serving_profile.pk
