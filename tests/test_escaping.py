"""User-written text (model descriptions, version tags and metadata, endpoint descriptions,
dataset names, alert e-mails) is shown escaped on every page: a script payload stays text."""

import pytest

from monitoring import alerts, services
from registry.models import HardwareTarget, Model, ModelVersion
from tests.conftest import register

pytestmark = pytest.mark.django_db

PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>'
TAG = '<script>alert("t")</script>'


def test_script_payloads_stay_text_everywhere(client, engineer, engineer_api, onnx_file):
    from jobs import services as job_services
    from jobs.models import Job

    HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})
    response = register(
        engineer_api,
        onnx_file,
        version="1",
        tags=TAG,
        metadata='{"commit": "%s", "%s": 1}' % (PAYLOAD.replace('"', '\\"'), "</script>"),
    )
    assert response.status_code == 201, response.json()
    for job in Job.objects.filter(kind="validate"):
        job_services.job_run(job_id=job.id, worker_host="test")
    model = Model.objects.get(name="digits")
    model.description = PAYLOAD
    model.save()
    version = ModelVersion.objects.get(version="1")
    endpoint, _ = services.endpoint_create(
        name="digits-prod", model=model, target=HardwareTarget.objects.get(), description=PAYLOAD
    )
    services.deploy(endpoint=endpoint, version=version)
    alerts.rule_create(endpoint=endpoint, metric="error_rate", threshold=5)

    client.force_login(engineer)
    for path in (
        "/",
        "/models/",
        "/models/digits/",
        "/models/digits/versions/1/",
        "/endpoints/",
        "/endpoints/digits-prod/",
        "/endpoints/digits-prod/alerts/",
        "/alerts/",
        "/compare/?model=digits",
        "/jobs/",
    ):
        html = client.get(path).content.decode()
        assert "<script>alert" not in html and "<img src=x" not in html, path
        assert '</script>"' not in html, path
    page = client.get("/models/digits/versions/1/").content.decode()
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;" in page  # the tag, shown as text
    assert "onerror=alert(1)&gt;" in page  # the metadata too
    assert "&lt;script&gt;alert(&quot;x&quot;)" in client.get("/endpoints/digits-prod/").content.decode()
