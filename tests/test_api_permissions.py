"""Every API route against anonymous, no-role, viewer and engineer callers.

Reads need the viewer role; writes the engineer role (targets: admin). A refused write
changes nothing."""

import uuid

import pytest

from tests.conftest import api_client, register

pytestmark = pytest.mark.django_db

READS = [
    "/api/v1/models/",
    "/api/v1/models/digits/",
    "/api/v1/models/digits/versions/1/",
    "/api/v1/models/digits/versions/1/artifact/",
    "/api/v1/targets/",
    "/api/v1/targets/cpu/",
    "/api/v1/jobs/",
    "/api/v1/jobs/{job}/",
    "/api/v1/benchmarks/",
    "/api/v1/benchmarks/?format=csv",
    "/api/v1/workers/",
    "/api/v1/alerts/",
    "/api/v1/alerts/?state=firing&endpoint=digits-prod",
    "/api/v1/endpoints/digits-prod/alert-rules/",
    "/api/v1/endpoints/digits-prod/alert-rules/{rule}/",
]
# (method, path, body, the role it needs)
WRITES = [
    ("post", "/api/v1/models/", {"name": "other"}, "engineer"),
    ("post", "/api/v1/models/digits/versions/", {}, "engineer"),
    ("post", "/api/v1/models/digits/versions/1/datasets/", {}, "engineer"),
    ("put", "/api/v1/models/digits/aliases/production/", {"version": "1"}, "engineer"),
    ("delete", "/api/v1/models/digits/aliases/production/", None, "engineer"),
    ("post", "/api/v1/uploads/", {"size": 10}, "engineer"),
    ("put", "/api/v1/uploads/{upload}/", None, "engineer"),
    ("delete", "/api/v1/uploads/{upload}/", None, "engineer"),
    ("post", "/api/v1/uploads/{upload}/complete/", {}, "engineer"),
    ("post", "/api/v1/targets/", {"slug": "gpu"}, "admin"),
    ("post", "/api/v1/jobs/", {"kind": "validate", "version": "digits:1"}, "engineer"),
    ("post", "/api/v1/jobs/{job}/cancel/", None, "engineer"),
    ("post", "/api/v1/endpoints/digits-prod/alert-rules/", {"metric": "error_rate", "threshold": 5}, "engineer"),
    ("patch", "/api/v1/endpoints/digits-prod/alert-rules/{rule}/", {"threshold": 7}, "engineer"),
    ("delete", "/api/v1/endpoints/digits-prod/alert-rules/{rule}/", None, "engineer"),
    ("post", "/api/v1/endpoints/digits-prod/alert-rules/{rule}/silence/", {"minutes": 60}, "engineer"),
]


@pytest.fixture
def world(engineer_api, onnx_file):
    from jobs.models import Job
    from registry.models import HardwareTarget

    from monitoring import alerts, services as monitoring_services
    from registry.models import Model

    register(engineer_api, onnx_file, version="1")
    cpu = HardwareTarget.objects.create(slug="cpu", name="CPU")
    endpoint, _ = monitoring_services.endpoint_create(
        name="digits-prod", model=Model.objects.get(name="digits"), target=cpu
    )
    rule = alerts.rule_create(endpoint=endpoint, metric="error_rate", threshold=5)
    return {"job": Job.objects.get().id, "upload": uuid.uuid4(), "rule": rule.pk}


def counts():
    from django.apps import apps

    return (
        {model.__name__: model.objects.count() for model in apps.get_app_config("registry").get_models()}
        | {model.__name__: model.objects.count() for model in apps.get_app_config("jobs").get_models()}
        | {
            model.__name__: list(model.objects.values())
            for model in apps.get_app_config("monitoring").get_models()
            if model.__name__ in ("AlertRule", "Alert", "Notification")
        }
    )


@pytest.mark.parametrize("path", READS)
def test_reads_need_a_viewer(world, anon_api, nobody, viewer_api, path):
    url = path.format(**world)
    assert anon_api.get(url).status_code == 401
    assert api_client(nobody).get(url).status_code == 403
    assert viewer_api.get(url).status_code == 200


@pytest.mark.parametrize("method,path,body,role", WRITES)
def test_writes_need_their_role(world, anon_api, viewer_api, engineer_api, method, path, body, role):
    url = path.format(**world)
    before = counts()
    call = lambda client: getattr(client, method)(url, body, format="json")  # noqa: E731
    assert call(anon_api).status_code == 401
    assert call(viewer_api).status_code == 403
    if role == "admin":
        assert call(engineer_api).status_code == 403
    assert counts() == before
    if role == "engineer":
        assert call(engineer_api).status_code != 403  # allowed; it may still be a 400 or 404 for this body


REGISTER_ACTIONS = {
    ("post", "/api/v1/models/"),
    ("post", "/api/v1/models/digits/versions/"),
    ("post", "/api/v1/uploads/"),
    ("put", "/api/v1/uploads/{upload}/"),
    ("delete", "/api/v1/uploads/{upload}/"),
    ("post", "/api/v1/uploads/{upload}/complete/"),
}


@pytest.mark.parametrize("method,path,body,role", WRITES)
def test_token_scopes_narrow_the_role(world, admin_user, method, path, body, role):
    """An admin's register-scoped token may only register (and upload); a read-scoped one nothing."""
    url = path.format(**world)
    before = counts()
    registering = api_client(admin_user, scope="register")
    reading = api_client(admin_user, scope="read")
    refused = getattr(reading, method)(url, body, format="json")
    assert refused.status_code == 403 and "may only read" in refused.json()["detail"]
    if (method, path) in REGISTER_ACTIONS:
        assert getattr(registering, method)(url, body, format="json").status_code != 403
    else:
        answer = getattr(registering, method)(url, body, format="json")
        assert answer.status_code == 403 and "scope is 'register'" in answer.json()["detail"]
        assert counts() == before


@pytest.mark.parametrize("path", READS)
def test_scoped_tokens_still_read(world, engineer, path):
    url = path.format(**world)
    assert api_client(engineer, scope="register").get(url).status_code == 200
    assert api_client(engineer, scope="read").get(url).status_code == 200
