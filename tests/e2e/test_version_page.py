"""The version and job pages stay live without a reload (jobs table, cancel button), and a bad
job form answers beside its fields with the typed values kept; at 1440 and 1024 px."""

import pytest
from playwright.sync_api import expect

from jobs.models import Job

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=[1440, 1024], ids=["1440px", "1024px"])
def width(request):
    return request.param


def test_jobs_follow_their_state_without_a_reload(logged_in_page, engineer, world, width):
    version = world.version("1")
    job = Job.objects.create(kind="benchmark", version=version, target=world.cpu, status="queued")
    page = logged_in_page(engineer)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"/jobs/{job.id}/")
    expect(page.get_by_role("button", name="Cancel job")).to_be_visible()
    page.evaluate("window.berthSamePage = true")
    Job.objects.filter(pk=job.pk).update(status="running", progress=40, message="Measuring batch 8")
    expect(page.locator("#job-status")).to_contain_text("Measuring batch 8")
    Job.objects.filter(pk=job.pk).update(
        status="succeeded",
        progress=100,
        message="Stored 1 result",
        result={
            "results": [
                {
                    "batch_size": 8,
                    "threads": None,
                    "p50_ms": 0.008,
                    "p95_ms": 0.01,
                    "p99_ms": 0.02,
                    "throughput": 1e6,
                    "stable": True,
                }
            ]
        },
    )
    expect(page.locator("#job-status .badge")).to_have_text("succeeded")
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    expect(page.locator("table.result-latency")).to_contain_text("8.0 µs")
    assert page.evaluate("window.berthSamePage") is True

    second = Job.objects.create(kind="benchmark", version=version, target=world.cpu, status="queued")
    page.goto(version.get_absolute_url())
    row = page.locator("#version-jobs tbody tr").filter(has_text=f"#{second.id}")
    expect(row).to_contain_text("queued")
    page.evaluate("window.berthSamePage = true")
    Job.objects.filter(pk=second.pk).update(status="succeeded", progress=100)
    expect(row).to_contain_text("succeeded")
    expect(row).to_contain_text("100 %")
    assert page.evaluate("window.berthSamePage") is True
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_a_bad_benchmark_value_is_explained_beside_it(logged_in_page, engineer, world, width):
    version = world.version("1")
    page = logged_in_page(engineer)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(version.get_absolute_url())
    page.locator("#id_benchmark-batch_sizes").fill("1, eight")
    page.locator("#id_benchmark-min_runs").fill("77")
    page.get_by_role("button", name="Benchmark", exact=True).click()
    batch = page.locator("#id_benchmark-batch_sizes")
    expect(batch).to_have_value("1, eight")
    expect(page.locator("#id_benchmark-min_runs")).to_have_value("77")
    error = page.locator("#id_benchmark-batch_sizes ~ .errorlist")
    expect(error).to_contain_text("whole numbers separated by commas")
    # Beside the field: just below it, not in a banner at the top of the page.
    field_box, error_box = batch.bounding_box(), error.bounding_box()
    assert 0 <= error_box["y"] - (field_box["y"] + field_box["height"]) < 40
    expect(page.locator(".messages")).to_have_count(0)
    assert not Job.objects.exists()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # A checkbox sits on one line with its label, not above it.
    box = page.locator("#id_compress-benchmark_after").bounding_box()
    label = page.locator('label[for="id_compress-benchmark_after"]').bounding_box()
    assert label["height"] < 2 * max(box["height"], 12) and label["width"] > box["width"] * 3, (box, label)
