"""Endpoint pages: list, create (token shown once), deploy, promote, roll back."""

import pytest
from django.test import Client

from monitoring.models import Deployment, Endpoint
from tests.conftest import api_client, profile_serving, register

pytestmark = pytest.mark.django_db


def browser(user):
    client = Client()
    client.force_login(user)
    return client


def test_an_engineer_creates_an_endpoint_and_sees_its_token_once(endpoint, engineer):
    client = browser(engineer)
    response = client.post("/new/endpoint/", {"name": "digits-eu", "model": "digits", "target": "cpu"})
    html = response.content.decode()
    assert response.status_code == 200 and "Copy it now" in html
    token = html.split('<code id="endpoint-token">')[1].split("</code>")[0]
    assert f"printf '%s\\n' '{token}' &gt; berth-endpoint-token" in html
    assert "berth-serve --dashboard http://testserver --endpoint digits-eu --token-file berth-endpoint-token" in html
    assert token not in client.get("/endpoints/digits-eu/").content.decode()
    assert Endpoint.objects.get(name="digits-eu").token_prefix == token[:8]


def test_the_endpoint_page_deploys_promotes_and_rolls_back(endpoint, engineer):
    client = browser(engineer)
    page = client.get("/endpoints/digits-prod/").content.decode()
    assert "Serving now" in page and "Export bundle" in page
    client.post("/endpoints/digits-prod/deploy/", {"version": "2", "weight": "10"})
    current = {d.version.version: d.weight for d in Deployment.objects.filter(state="active")}
    assert current == {"1": 90, "2": 10}
    assert "Promote to 100 %" in client.get("/endpoints/digits-prod/").content.decode()
    # Promoting asks first: what changes, for whom, how to undo it; nothing changes until confirmed.
    asked = client.post("/endpoints/digits-prod/promote/2/").content.decode()
    assert "Send all of digits-prod&#x27;s traffic to v2?" in asked
    assert "Stop serving: v1 (now 90 %)" in asked and "restores the current split (v1 90 %, v2 10 %)" in asked
    assert {d.version.version: d.weight for d in Deployment.objects.filter(state="active")} == {"1": 90, "2": 10}
    client.post("/endpoints/digits-prod/promote/2/", {"confirmed": "yes"})
    assert {d.version.version: d.weight for d in Deployment.objects.filter(state="active")} == {"2": 100}
    asked = client.post("/endpoints/digits-prod/rollback/").content.decode()
    assert "goes from v2 100 % back to v1 90 %, v2 10 %" in asked and "Roll back again" in asked
    client.post("/endpoints/digits-prod/rollback/", {"confirmed": "yes"})
    assert {d.version.version: d.weight for d in Deployment.objects.filter(state="active")} == {"1": 90, "2": 10}
    history = client.get("/endpoints/digits-prod/").content.decode().split("Deployment history")[1]
    assert history.count("<tr>") == 5  # header + 4 generations


def test_deploying_at_100_and_a_new_token_ask_first(endpoint, engineer):
    client = browser(engineer)
    asked = client.post("/endpoints/digits-prod/deploy/", {"version": "2", "weight": "100"}).content.decode()
    assert "Send all of digits-prod&#x27;s traffic to v2?" in asked and 'name="confirmed" value="yes"' in asked
    assert {d.version.version for d in Deployment.objects.filter(state="active")} == {"1"}
    client.post("/endpoints/digits-prod/deploy/", {"version": "2", "weight": "100", "confirmed": "yes"})
    assert {d.version.version for d in Deployment.objects.filter(state="active")} == {"2"}

    prefix = Endpoint.objects.get().token_prefix
    asked = client.post("/endpoints/digits-prod/token/").content.decode()
    assert f"A new token replaces {prefix}…" in asked and "keeps working for 10 minutes" in asked
    assert "cannot be brought back" in asked and Endpoint.objects.get().token_prefix == prefix
    made = client.post("/endpoints/digits-prod/token/", {"confirmed": "yes"}).content.decode()
    assert "Copy it now" in made and Endpoint.objects.get().token_prefix != prefix


def test_a_refused_deploy_explains_itself(endpoint, engineer):
    from registry.models import ModelVersion

    ModelVersion.objects.filter(version="2").update(status="invalid")
    response = browser(engineer).post("/endpoints/digits-prod/deploy/", {"version": "2", "weight": "10"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()  # only ready versions are offered
    assert Deployment.objects.filter(state="active").count() == 1


def test_viewers_see_but_cannot_change_endpoints(endpoint, viewer):
    client = browser(viewer)
    page = client.get("/endpoints/digits-prod/").content.decode()
    assert "digits-prod" in page and "Deploy</button>" not in page
    assert client.post("/endpoints/digits-prod/deploy/", {"version": "2", "weight": "10"}).status_code == 403
    assert client.post("/endpoints/digits-prod/rollback/").status_code == 403
    assert client.post("/endpoints/digits-prod/token/").status_code == 403
    assert client.post("/new/endpoint/", {"name": "x", "model": "digits", "target": "cpu"}).status_code == 403
    assert client.get("/endpoints/nope/").status_code == 404


def test_the_version_page_says_where_it_is_deployed(endpoint, viewer):
    html = browser(viewer).get("/models/digits/versions/1/").content.decode()
    assert "digits-prod</a> with 100 % of its traffic" in html


def test_the_endpoint_page_sets_dynamic_batching(endpoint, engineer, viewer):
    from common.models import AuditEvent

    client = browser(engineer)
    assert "Off: every request runs on its own" in client.get("/endpoints/digits-prod/").content.decode()
    response = client.post(
        "/endpoints/digits-prod/batching/", {"max_batch_size": "32", "max_queue_delay_us": "500"}, follow=True
    )
    page = response.content.decode()
    assert "up to 32 rows, waiting at most 500 µs" in page and "batches of up to 32 rows" in page
    assert "Inference threads: berth-serve&#x27;s own" in page or "Inference threads: berth-serve's own" in page
    assert (Endpoint.objects.get().max_batch_size, Endpoint.objects.get().max_queue_delay_us) == (32, 500)
    response = client.post(
        "/endpoints/digits-prod/batching/",
        {"max_batch_size": "32", "max_queue_delay_us": "500", "inference_threads": "3"},
        follow=True,
    )
    assert "Inference threads: 3 per berth-serve worker process" in response.content.decode()
    assert "3 inference threads; runtimes pick it up" in response.content.decode()
    assert Endpoint.objects.get().inference_threads == 3
    client.post("/endpoints/digits-prod/batching/", {"max_batch_size": "32", "max_queue_delay_us": "500"})
    assert Endpoint.objects.get().inference_threads is None  # an empty field: berth-serve's own again
    refused = client.post(
        "/endpoints/digits-prod/batching/",
        {"max_batch_size": "32", "max_queue_delay_us": "0", "inference_threads": "0"},
    )
    assert refused.status_code == 400 and "Inference threads:" in refused.content.decode()
    assert (Endpoint.objects.get().max_queue_delay_us, Endpoint.objects.get().inference_threads) == (500, None)
    assert AuditEvent.objects.filter(action="endpoint_batching", target="digits-prod").exists()
    refused = client.post("/endpoints/digits-prod/batching/", {"max_batch_size": "5000", "max_queue_delay_us": "0"})
    assert refused.status_code == 400 and "Max batch size:" in refused.content.decode()
    assert Endpoint.objects.get().max_batch_size == 32
    assert (
        browser(viewer)
        .post("/endpoints/digits-prod/batching/", {"max_batch_size": "1", "max_queue_delay_us": "0"})
        .status_code
        == 403
    )


def test_the_endpoint_page_applies_a_serving_profile_after_confirming(endpoint, engineer):
    from common.models import AuditEvent
    from registry.models import ModelVersion

    job = profile_serving(ModelVersion.objects.get(version="1"), user=engineer)
    best = job.result["recommended"]
    client = browser(engineer)
    offered = client.get("/endpoints/digits-prod/").content.decode().split('id="serving-profile"')[1]
    assert (
        f"recommends max batch size {best['max_batch_size']}, max queue delay {best['max_queue_delay_us']} µs"
        in offered
    )
    assert f'name="job" value="{job.pk}"' in offered and "Apply profile of 1" in offered
    # The live refresh (every 5 s) brings the profiles along, out of band.
    refreshed = client.get("/endpoints/digits-prod/live/").content.decode()
    assert 'id="serving-profile" hx-swap-oob="true"' in refreshed and "Apply profile of 1" in refreshed
    asked = client.post("/endpoints/digits-prod/apply-profile/", {"job": job.pk}).content.decode()
    threads = f"{best['threads']} inference thread{'s' if best['threads'] != 1 else ''}"
    assert "Apply the serving profile of v1 to digits-prod?" in asked and threads in asked
    assert (
        "Set Dynamic batching back on this page: max batch size 1, max queue delay 0 µs, inference threads empty"
        in asked
    )
    assert Endpoint.objects.get().max_batch_size == 1 and not AuditEvent.objects.filter(action="endpoint_batching")
    client.post("/endpoints/digits-prod/apply-profile/", {"job": job.pk, "confirmed": "yes"})
    applied = Endpoint.objects.get()
    assert (applied.max_batch_size, applied.max_queue_delay_us) == (best["max_batch_size"], best["max_queue_delay_us"])
    assert applied.inference_threads == best["threads"]
    event = AuditEvent.objects.get(action="endpoint_batching", target="digits-prod")
    assert event.details["serving_profile_job"] == job.pk and event.actor == engineer


def test_a_serving_profile_that_does_not_fit_the_endpoint_is_refused(endpoint, engineer, viewer, onnx_file):
    from jobs import services as job_services
    from jobs.models import Job
    from registry.models import HardwareTarget, ModelVersion

    client = browser(engineer)
    assert register(api_client(engineer), onnx_file, model="other", version="1").status_code == 201
    other = ModelVersion.objects.get(model__name="other")
    job_services.job_run(job_id=Job.objects.get(kind="validate", version=other).id, worker_host="test")
    other.refresh_from_db()
    foreign = profile_serving(other, user=engineer)
    HardwareTarget.objects.create(slug="cpu-b", name="CPU B")
    elsewhere = profile_serving(ModelVersion.objects.get(model__name="digits", version="2"), target="cpu-b")
    over_budget = profile_serving(ModelVersion.objects.get(model__name="digits", version="1"), p99_budget_ms=0.1)
    Job.objects.filter(pk=over_budget.pk).update(result={**over_budget.result, "recommended": None})
    benchmark = Job.objects.create(kind="benchmark", version=other, target=foreign.target, status="succeeded")
    for job, reason in (
        ("", "Say which serving profile to apply"),
        ("99999", "There is no job 99999"),
        (benchmark.pk, "is a Benchmark job, not a serving profile"),
        (foreign.pk, "profiled other:1, but digits-prod serves digits"),
        (elsewhere.pk, "measured on cpu-b, but digits-prod serves on cpu"),
        (over_budget.pk, "found no configuration whose p99 stayed within its 0.1 ms budget"),
    ):
        response = client.post("/endpoints/digits-prod/apply-profile/", {"job": job, "confirmed": "yes"})
        assert response.status_code == 400 and reason in response.content.decode(), (job, reason)
    assert Endpoint.objects.get().max_batch_size == 1
    assert browser(viewer).post("/endpoints/digits-prod/apply-profile/", {"job": foreign.pk}).status_code == 403


def test_the_deploy_form_applies_the_serving_profile_in_the_same_click(endpoint, engineer):
    from registry.models import ModelVersion

    client = browser(engineer)
    refused = client.post(
        "/endpoints/digits-prod/deploy/", {"version": "2", "weight": "10", "apply_serving_profile": "on"}
    )
    assert refused.status_code == 400 and "2 has no serving profile on cpu" in refused.content.decode()
    assert {d.version.version for d in Deployment.objects.filter(state="active")} == {"1"}
    best = profile_serving(ModelVersion.objects.get(version="2"), user=engineer).result["recommended"]
    asked = client.post(
        "/endpoints/digits-prod/deploy/", {"version": "2", "weight": "100", "apply_serving_profile": "on"}
    ).content.decode()
    assert "Dynamic batching and inference threads are set from v2&#x27;s newest serving profile on cpu" in asked
    assert 'name="apply_serving_profile" value="on"' in asked and Endpoint.objects.get().max_batch_size == 1
    done = client.post(
        "/endpoints/digits-prod/deploy/",
        {"version": "2", "weight": "100", "apply_serving_profile": "on", "confirmed": "yes"},
        follow=True,
    ).content.decode()
    assert "batched as its serving profile recommends" in done
    applied = Endpoint.objects.get()
    assert (applied.max_batch_size, applied.max_queue_delay_us) == (best["max_batch_size"], best["max_queue_delay_us"])
    assert applied.inference_threads == best["threads"]
    assert {d.version.version for d in Deployment.objects.filter(state="active")} == {"2"}
