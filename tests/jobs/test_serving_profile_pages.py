"""A serving profile on the version page: the newest per target with its recommendation, sweep
and batches formed, from a serve_profile job run here; and starting one from the page."""

import json

import pytest
from django.test import Client

from jobs.models import Job
from tests.conftest import QUICK_SERVING_SWEEP

pytestmark = pytest.mark.django_db


def browser(user):
    client = Client()
    client.force_login(user)
    return client


def test_it_shows_the_newest_profile_with_its_recommendation_and_sweep(serving_profile, viewer):
    html = browser(viewer).get("/models/digits/versions/1/").content.decode()
    section = html.split('id="version-serving"')[1].split("<h2>")[0]
    best = serving_profile.result["recommended"]
    threads = best["threads"]
    assert (
        f"max batch size {best['max_batch_size']}, max queue delay {best['max_queue_delay_us']} µs, "
        f"{threads} inference thread{'s' if threads != 1 else ''}" in section
    )
    assert f"{best['throughput']:,.0f} req/s at concurrency {best['concurrency']}" in section
    formed = ", ".join(f"{rows}×{runs}" for rows, runs in sorted((int(k), v) for k, v in best["batch_sizes"].items()))
    assert f"batches formed (rows×runs) {formed}." in section
    runs = serving_profile.result["runs"]
    assert section.count("<tr") == 1 + len(runs) and section.count('class="recommended"') == 1
    figure = json.loads(section.split('id="chart-serving-cpu">')[1].split("</script>")[0])
    plotted = sorted(y for trace in figure["data"] if trace["name"] != "recommended" for y in trace["y"])
    # every configuration that timed a request (on a loaded machine one may time none)
    assert plotted == sorted(r["throughput"] for r in runs if r["p99_ms"] is not None)
    assert figure["layout"]["shapes"][0]["x0"] > 0  # the budget line
    assert "Run serving profile" not in html


def test_it_says_how_much_of_the_grid_a_quick_search_measured(serving_profile, viewer):
    html = browser(viewer).get("/models/digits/versions/1/").content.decode()
    assert "Every configuration of the grid measured (4)." in html
    result = dict(serving_profile.result, search="quick", runs=serving_profile.result["runs"][:3])
    Job.objects.filter(pk=serving_profile.pk).update(result=result)
    html = browser(viewer).get("/models/digits/versions/1/").content.decode()
    assert "Quick search: 3 of the 4 configurations measured" in html


def test_a_sweep_without_a_search_is_a_quick_one(digits_version, engineer):
    browser(engineer).post(
        "/models/digits/versions/1/run/serve_profile/",
        {
            "serve_profile-target": "cpu",
            "serve_profile-concurrency": "1",
            "serve_profile-batch_sizes": "1",
            "serve_profile-seconds": "1",
            "serve_profile-p99_budget_ms": "50",
        },
    )
    assert Job.objects.get(kind="serve_profile").params["search"] == "quick"


def test_it_says_when_nothing_kept_the_budget(serving_profile, viewer):
    result = dict(serving_profile.result, recommended=None, p99_budget_ms=0.001)
    Job.objects.filter(pk=serving_profile.pk).update(result=result)
    html = browser(viewer).get("/models/digits/versions/1/").content.decode()
    assert "No configuration kept p99 within the 1.0 µs budget" in html


def test_an_engineer_starts_a_serving_profile_from_the_page(digits_version, engineer):
    client = browser(engineer)
    html = client.get("/models/digits/versions/1/").content.decode()
    assert "No serving profile yet" in html and "Run serving profile" in html
    response = client.post(
        "/models/digits/versions/1/run/serve_profile/",
        {
            "serve_profile-target": "cpu",
            "serve_profile-concurrency": "1, 4",
            "serve_profile-batch_sizes": "1,4",
            "serve_profile-threads": "1",
            "serve_profile-seconds": str(QUICK_SERVING_SWEEP["seconds"]),
            "serve_profile-p99_budget_ms": "25",
            "serve_profile-search": "full",
        },
    )
    job = Job.objects.get(kind="serve_profile")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.id}/"
    assert job.params == {**QUICK_SERVING_SWEEP, "p99_budget_ms": 25.0} and job.queue == "target.cpu"


def test_a_bad_sweep_is_explained_beside_its_field(digits_version, engineer):
    response = browser(engineer).post(
        "/models/digits/versions/1/run/serve_profile/",
        {
            "serve_profile-target": "cpu",
            "serve_profile-concurrency": "1,8",
            "serve_profile-batch_sizes": "1,2000",
            "serve_profile-seconds": "1",
            "serve_profile-p99_budget_ms": "50",
        },
    )
    html = response.content.decode()
    assert response.status_code == 400 and not Job.objects.filter(kind="serve_profile").exists()
    field = html.split('id="serve-profile-form"')[1].split("</form>")[0]
    assert 'value="1,2000"' in field and "batch_sizes" in field and "1024" in field
