"""Every page against anonymous, no-role, viewer, engineer and admin users."""

import pytest
from django.test import Client

from jobs.models import Job
from registry.models import Alias, HardwareTarget, Model, ModelVersion
from tests.conftest import register

pytestmark = pytest.mark.django_db


@pytest.fixture
def registered(engineer_api, onnx_file):
    register(engineer_api, onnx_file, version="1", metadata='{"commit": "abc123"}')
    HardwareTarget.objects.create(slug="cpu", name="CPU")
    return ModelVersion.objects.get()


def browser(user=None):
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


READ_PAGES = [
    "/",
    "/models/",
    "/models/?q=dig",
    "/models/digits/",
    "/models/digits/versions/1/",
    "/models/digits/versions/1/download/",
    "/targets/",
    "/jobs/",
    "/jobs/?kind=validate&status=queued",
    "/account/tokens/",
]


@pytest.mark.parametrize("url", READ_PAGES)
def test_anonymous_users_are_sent_to_log_in(registered, url):
    response = browser().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize("url", READ_PAGES)
def test_viewers_can_read_every_page(registered, viewer, url):
    assert browser(viewer).get(url).status_code == 200


def test_users_without_a_role_are_refused(registered, nobody):
    response = browser(nobody).get("/models/")
    assert response.status_code == 403
    assert b"viewer" in response.content


def test_the_job_page_is_readable(registered, viewer):
    job = Job.objects.get()
    assert browser(viewer).get(f"/jobs/{job.id}/").status_code == 200
    fragment = browser(viewer).get(f"/jobs/{job.id}/status/")
    assert b'hx-trigger="every 1s"' in fragment.content  # still queued: keeps polling


def test_the_version_page_shows_what_an_engineer_needs(registered, viewer):
    html = browser(viewer).get("/models/digits/versions/1/").content.decode()
    for text in (registered.sha256, "ONNX", "commit", "abc123", "validating", "Download"):
        assert text in html
    assert 'hx-trigger="every 2s"' in html
    ModelVersion.objects.update(
        status="ready",
        io_signature={
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 4], "dynamic_axes": [0]}],
            "outputs": [],
        },
    )
    html = browser(viewer).get("/models/digits/versions/1/").content.decode()
    assert html.count("every 2s") == 1  # the jobs table, while the validate job is queued
    Job.objects.update(status="succeeded", progress=100)
    html = browser(viewer).get("/models/digits/versions/1/").content.decode()
    assert "every 2s" not in html and "<code>x</code>" in html and "batch" in html


def test_viewers_get_no_write_forms_and_cannot_post(registered, viewer):
    client = browser(viewer)
    assert "Upload" not in client.get("/models/").content.decode().split("<main>")[0]
    assert client.get("/upload/").status_code == 403
    assert client.post("/new/model/", {"name": "x", "task": "other"}).status_code == 403
    assert client.post("/models/digits/aliases/", {"name": "production", "version": "1"}).status_code == 403
    assert client.post("/models/digits/versions/1/validate/").status_code == 403
    assert client.post("/new/target/", {"slug": "x", "device": "cpu"}).status_code == 403
    job = Job.objects.get()
    assert client.post(f"/jobs/{job.id}/cancel/").status_code == 403
    assert Model.objects.count() == 1 and not Alias.objects.exists() and Job.objects.count() == 1


def test_engineers_create_models_and_move_aliases(registered, engineer):
    client = browser(engineer)
    assert client.get("/upload/").status_code == 200
    response = client.post("/new/model/", {"name": "resnet", "task": "classification"})
    assert response.status_code == 302 and Model.objects.filter(name="resnet").exists()
    bad = client.post("/new/model/", {"name": "resnet", "task": "classification"})
    assert bad.status_code == 200 and b"already exists" in bad.content
    client.post("/models/digits/aliases/", {"name": "production", "version": "1"})
    assert Alias.objects.get().version == registered
    client.post("/models/digits/versions/1/validate/")
    assert Job.objects.filter(kind="validate").count() == 2
    assert client.post("/new/target/", {"slug": "x", "device": "cpu"}).status_code == 403


def test_engineers_cancel_jobs(registered, engineer):
    job = Job.objects.get()
    response = browser(engineer).post(f"/jobs/{job.id}/cancel/")
    assert response.status_code == 302
    job.refresh_from_db()
    assert job.status == "cancelled"
    registered.refresh_from_db()
    assert registered.status == "invalid" and "cancelled" in registered.status_detail


def test_admins_create_targets(registered, admin_user):
    client = browser(admin_user)
    response = client.post(
        "/new/target/",
        {"slug": "gpu-a100", "name": "A100", "device": "cuda", "execution_provider": "CUDAExecutionProvider"},
    )
    assert response.status_code == 302
    assert HardwareTarget.objects.get(slug="gpu-a100").queue == "target.gpu-a100"
    wrong = client.post(
        "/new/target/", {"slug": "cpu9", "device": "cpu", "execution_provider": "TensorrtExecutionProvider"}
    )
    assert wrong.status_code == 200 and b"cannot run on a cpu target" in wrong.content
    preset = client.post(
        "/new/target/",
        {"slug": "h100", "device": "cpu", "execution_provider": "CPUExecutionProvider", "preset": "tensorrt-fp16"},
    )
    assert preset.status_code == 302
    h100 = HardwareTarget.objects.get(slug="h100")
    assert (h100.device, h100.execution_provider) == ("cuda", "TensorrtExecutionProvider")
    assert h100.provider_options == {"trt_fp16_enable": "1", "trt_engine_cache_enable": "1"}


def test_model_names_and_metadata_are_escaped(engineer_api, viewer, onnx_file):
    register(
        engineer_api,
        onnx_file,
        model="digits",
        version="1",
        metadata='{"note": "<script>alert(1)</script>"}',
        description="<script>alert(2)</script>",
    )
    html = browser(viewer).get("/models/digits/versions/1/").content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(2)</script>" not in browser(viewer).get("/models/digits/").content.decode()


@pytest.mark.parametrize(
    "url", ["/models/nope/", "/models/digits/versions/9/", "/jobs/999/", "/models/digits/versions/9/download/"]
)
def test_what_does_not_exist_is_a_404_page_not_an_error(registered, viewer, url):
    response = browser(viewer).get(url)
    assert response.status_code == 404
    assert b"Not found" in response.content
