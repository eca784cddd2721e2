"""Endpoints and deployments: create (token once), deploy, canary, promote, rollback."""

from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring.models import Deployment, Endpoint
from registry.models import ModelVersion

pytestmark = pytest.mark.django_db


def split(client, name="digits-prod"):
    return {d["version"]: d["weight"] for d in client.get(f"/api/v1/endpoints/{name}/").json()["deployments"]}


def test_it_creates_an_endpoint_and_shows_the_token_once(engineer_api, endpoint):
    response = engineer_api.post(
        "/api/v1/endpoints/", {"name": "digits-canary", "model": "digits", "target": "cpu"}, format="json"
    )
    assert response.status_code == 201
    token = response.json()["token"]
    assert len(token) >= 40 and response.json()["token_prefix"] == token[:8]
    stored = Endpoint.objects.get(name="digits-canary")
    assert token not in (stored.token_hash, stored.token_prefix) and len(stored.token_hash) == 64
    assert "token" not in engineer_api.get("/api/v1/endpoints/digits-canary/").json()
    duplicate = engineer_api.post(
        "/api/v1/endpoints/", {"name": "digits-canary", "model": "digits", "target": "cpu"}, format="json"
    )
    assert duplicate.status_code == 409


def test_a_canary_takes_its_share_and_promotion_takes_all(engineer_api, endpoint):
    response = engineer_api.post("/api/v1/endpoints/digits-prod/deploy/", {"version": "2", "weight": 10}, format="json")
    assert response.status_code == 200
    assert split(engineer_api) == {"1": 90, "2": 10}
    engineer_api.post("/api/v1/endpoints/digits-prod/deploy/", {"version": "2", "weight": 100}, format="json")
    assert split(engineer_api) == {"2": 100}
    assert Deployment.objects.filter(endpoint=endpoint, state="active").count() == 1


def test_rollback_restores_the_previous_split(engineer_api, endpoint):
    engineer_api.post("/api/v1/endpoints/digits-prod/deploy/", {"version": "2", "weight": 25}, format="json")
    engineer_api.post("/api/v1/endpoints/digits-prod/deploy/", {"version": "2", "weight": 100}, format="json")
    assert engineer_api.post("/api/v1/endpoints/digits-prod/rollback/").status_code == 200
    assert split(engineer_api) == {"1": 75, "2": 25}
    assert engineer_api.post("/api/v1/endpoints/digits-prod/rollback/").status_code == 200
    assert split(engineer_api) == {"2": 100}  # rolling back a rollback goes forward again
    actions = list(
        Deployment.objects.filter(endpoint=endpoint)
        .order_by("generation")
        .values_list("generation", "action")
        .distinct()
    )
    assert [a for _, a in actions] == ["deploy", "deploy", "promote", "rollback", "rollback"]


def test_weights_can_be_set_and_always_sum_to_100(engineer_api, endpoint):
    body = {"weights": [{"version": "1", "weight": 70}, {"version": "2", "weight": 30}]}
    assert engineer_api.post("/api/v1/endpoints/digits-prod/deploy/", body, format="json").status_code == 200
    assert split(engineer_api) == {"1": 70, "2": 30}
    bad = engineer_api.post(
        "/api/v1/endpoints/digits-prod/deploy/",
        {"weights": [{"version": "1", "weight": 70}, {"version": "2", "weight": 20}]},
        format="json",
    )
    assert bad.status_code == 400 and "add up to 90" in bad.json()["detail"]
    assert split(engineer_api) == {"1": 70, "2": 30}


@pytest.mark.parametrize(
    "weights,expected",
    [
        ({"1": 50, "2": 50}, {"1": 45, "2": 45}),
        ({"1": 67, "2": 33}, {"1": 60, "2": 30}),
    ],
)
def test_a_new_canary_keeps_the_others_proportions(
    engineer_api, endpoint, weights, expected, other_onnx_file, tmp_path
):
    from tests.conftest import register, tiny_onnx_bytes

    path = tmp_path / "v3.onnx"
    path.write_bytes(tiny_onnx_bytes(seed=3))
    register(engineer_api, path, version="3")
    ModelVersion.objects.filter(version="3").update(status="ready")
    engineer_api.post(
        "/api/v1/endpoints/digits-prod/deploy/",
        {"weights": [{"version": v, "weight": w} for v, w in weights.items()]},
        format="json",
    )
    engineer_api.post("/api/v1/endpoints/digits-prod/deploy/", {"version": "3", "weight": 10}, format="json")
    assert split(engineer_api) == {**expected, "3": 10}


def test_only_ready_onnx_versions_of_the_model_can_be_deployed(engineer_api, endpoint):
    ModelVersion.objects.filter(version="2").update(status="validating")
    response = engineer_api.post("/api/v1/endpoints/digits-prod/deploy/", {"version": "2"}, format="json")
    assert response.status_code == 409 and "only ready versions" in response.json()["detail"]
    ModelVersion.objects.filter(version="2").update(status="ready", format="torchscript")
    response = engineer_api.post("/api/v1/endpoints/digits-prod/deploy/", {"version": "2"}, format="json")
    assert response.status_code == 409 and "Convert it first" in response.json()["detail"]
    assert split(engineer_api) == {"1": 100}


def test_the_first_deployment_takes_all_the_traffic(engineer_api, engineer, endpoint):
    from monitoring import services

    fresh, _ = services.endpoint_create(name="fresh", model=endpoint.model, target=endpoint.target)
    response = engineer_api.post("/api/v1/endpoints/fresh/deploy/", {"version": "1", "weight": 10}, format="json")
    assert response.status_code == 400 and "takes 100 %" in response.json()["detail"]
    assert engineer_api.post("/api/v1/endpoints/fresh/rollback/").status_code == 409


def test_deploying_needs_the_engineer_role(viewer_api, anon_api, endpoint):
    for client, code in ((viewer_api, 403), (anon_api, 401)):
        assert client.post("/api/v1/endpoints/digits-prod/deploy/", {"version": "2"}, format="json").status_code == code
        assert client.post("/api/v1/endpoints/digits-prod/rollback/").status_code == code
        assert client.post("/api/v1/endpoints/digits-prod/token/").status_code == code
        assert (
            client.post(
                "/api/v1/endpoints/", {"name": "x", "model": "digits", "target": "cpu"}, format="json"
            ).status_code
            == code
        )
    assert viewer_api.get("/api/v1/endpoints/digits-prod/").status_code == 200
    assert split(viewer_api) == {"1": 100}


def test_a_new_token_replaces_the_old_one_after_its_grace_period(engineer_api, endpoint, runtime):
    assert runtime.get("/api/v1/endpoints/digits-prod/spec/").status_code == 200
    response = engineer_api.post("/api/v1/endpoints/digits-prod/token/")
    assert response.status_code == 200
    body = response.json()
    assert body["old_token_prefix"] == endpoint.token[:8] and body["old_token_expires"]
    # The old token works through the grace period (10 minutes by default) ...
    assert runtime.get("/api/v1/endpoints/digits-prod/spec/").status_code == 200
    # ... and not after it.
    Endpoint.objects.filter(pk=endpoint.pk).update(old_token_expires=timezone.now() - timedelta(seconds=1))
    refused = runtime.get("/api/v1/endpoints/digits-prod/spec/")
    assert refused.status_code == 401 and "grace period is over" in refused.json()["detail"]
    runtime.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert runtime.get("/api/v1/endpoints/digits-prod/spec/").status_code == 200


def test_a_rotation_without_grace_stops_the_old_token_at_once(engineer_api, endpoint, runtime):
    response = engineer_api.post("/api/v1/endpoints/digits-prod/token/", {"grace_minutes": 0}, format="json")
    assert response.status_code == 200 and response.json()["old_token_expires"] is None
    assert runtime.get("/api/v1/endpoints/digits-prod/spec/").status_code == 401
    bad = engineer_api.post("/api/v1/endpoints/digits-prod/token/", {"grace_minutes": -1}, format="json")
    assert bad.status_code == 400 and "grace_minutes" in bad.json()["errors"]


def test_a_second_rotation_ends_the_first_tokens_grace(engineer_api, endpoint, runtime):
    engineer_api.post("/api/v1/endpoints/digits-prod/token/")
    engineer_api.post("/api/v1/endpoints/digits-prod/token/")
    assert runtime.get("/api/v1/endpoints/digits-prod/spec/").status_code == 401


def test_tokens_never_start_with_a_dash(monkeypatch):
    from monitoring import services

    made = iter(["-looks-like-an-option", "_fine-token"])
    monkeypatch.setattr(services.secrets, "token_urlsafe", lambda n: next(made))
    token, _, prefix = services._new_token()
    assert token == "_fine-token" and prefix == "_fine-to"


def test_deploying_applies_the_versions_serving_profile_when_asked(engineer_api, endpoint, engineer):
    from common.models import AuditEvent
    from tests.conftest import profile_serving

    job = profile_serving(ModelVersion.objects.get(version="2"), user=engineer)
    best = job.result["recommended"]
    response = engineer_api.post(
        "/api/v1/endpoints/digits-prod/deploy/",
        {"version": "2", "weight": 10, "apply_serving_profile": True},
        format="json",
    )
    assert response.status_code == 200, response.json()
    applied = response.json()
    assert (applied["max_batch_size"], applied["max_queue_delay_us"], applied["inference_threads"]) == (
        best["max_batch_size"],
        best["max_queue_delay_us"],
        best["threads"],
    )
    assert split(engineer_api) == {"1": 90, "2": 10}
    assert AuditEvent.objects.get(action="endpoint_batching").details["serving_profile_job"] == job.pk


def test_applying_a_missing_serving_profile_changes_nothing(engineer_api, endpoint):
    response = engineer_api.post(
        "/api/v1/endpoints/digits-prod/deploy/",
        {"version": "2", "weight": 10, "apply_serving_profile": True},
        format="json",
    )
    assert response.status_code == 400
    assert "2 has no serving profile on cpu" in response.json()["errors"]["apply_serving_profile"][0]
    assert split(engineer_api) == {"1": 100}
    with_weights = engineer_api.post(
        "/api/v1/endpoints/digits-prod/deploy/",
        {"weights": [{"version": "1", "weight": 100}], "apply_serving_profile": True},
        format="json",
    )
    assert with_weights.status_code == 400 and "apply_serving_profile" in with_weights.json()["errors"]
