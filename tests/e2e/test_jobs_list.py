"""The jobs list stays live: a job started elsewhere shows up on the newest page without a
reload, and its state follows it."""

import pytest
from playwright.sync_api import expect

from jobs.models import Job

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_job_started_elsewhere_shows_up_and_follows_its_state(logged_in_page, viewer, world):
    version = world.version("1")
    Job.objects.create(kind="benchmark", version=version, target=world.cpu, status="succeeded", progress=100)
    page = logged_in_page(viewer)
    page.goto("/jobs/")
    expect(page.locator("#job-list tbody tr")).to_have_count(1)
    page.evaluate("window.berthSamePage = true")
    job = Job.objects.create(kind="benchmark", version=version, target=world.cpu, status="queued")
    row = page.locator("#job-list tbody tr").filter(has_text=f"#{job.id}")
    expect(row).to_contain_text("queued", timeout=25_000)  # the idle list looks every 10 s
    Job.objects.filter(pk=job.pk).update(status="succeeded", progress=100)
    expect(row).to_contain_text("succeeded")  # every 2 s while a job is active
    assert page.evaluate("window.berthSamePage") is True
