"""A serving profile in real Chromium: the version page draws its sweep and recommendation, and
the endpoint page applies it after the confirmation; from a serve_profile job run here."""

import pytest
from playwright.sync_api import expect

from monitoring.models import Endpoint

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_profile_is_shown_and_applied_with_one_click(logged_in_page, engineer, serving_profile):
    from monitoring import services
    from registry.models import HardwareTarget

    version = serving_profile.version
    endpoint, _token = services.endpoint_create(
        name="digits-prod", model=version.model, target=HardwareTarget.objects.get(slug="cpu"), created_by=engineer
    )
    services.deploy(endpoint=endpoint, version=version, weight=100, user=engineer)
    best, runs = serving_profile.result["recommended"], serving_profile.result["runs"]

    page = logged_in_page(engineer)
    page.goto(version.get_absolute_url())
    section = page.locator("#serving-profile-cpu")
    expect(section.locator(".serving-recommendation")).to_contain_text(
        f"max batch size {best['max_batch_size']}, max queue delay {best['max_queue_delay_us']} µs"
    )
    expect(section.locator(".serving-recommendation")).to_contain_text(f"{best['throughput']:,.0f} req/s")
    expect(section.locator('[data-chart="serving-cpu"] svg.main-svg').first).to_be_attached()
    lines = {(r["max_batch_size"], r["threads"]) for r in runs if r["p99_ms"] is not None}
    # one line per max batch size and thread count, and the recommended point
    expect(section.locator('[data-chart="serving-cpu"] .scatterlayer .trace')).to_have_count(len(lines) + 1)
    expect(section.locator("table.serving-runs tbody tr")).to_have_count(len(runs))
    expect(page.get_by_role("button", name="Run serving profile")).to_be_visible()

    section.get_by_role("link", name="digits-prod").click()
    expect(page.locator("#batching-now")).to_contain_text("Off: every request runs on its own")
    page.get_by_role("button", name="Apply profile of 1").click()
    expect(page.locator("h1")).to_have_text("Apply the serving profile of v1 to digits-prod?")
    threads = f"{best['threads']} inference thread{'s' if best['threads'] != 1 else ''}"
    expect(page.locator("#confirm")).to_contain_text(threads)
    assert Endpoint.objects.get().max_batch_size == 1  # nothing changes before the confirmation
    page.get_by_role("button", name="Yes, apply").click()
    expected = (
        f"On: requests of one version wait at most {best['max_queue_delay_us']} µs to run in batches of up to "
        f"{best['max_batch_size']} rows."
        if best["max_batch_size"] > 1
        else "Off: every request runs on its own"
    )
    expect(page.locator("#batching-now")).to_contain_text(expected)
    expect(page.locator("#batching-now")).to_contain_text(f"Inference threads: {best['threads']} per berth-serve")
    expect(page.locator(".messages")).to_contain_text("set from the serving profile of 1")
    applied = Endpoint.objects.get()
    assert (applied.max_batch_size, applied.max_queue_delay_us) == (best["max_batch_size"], best["max_queue_delay_us"])
    assert applied.inference_threads == best["threads"]
