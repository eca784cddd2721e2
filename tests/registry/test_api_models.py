"""Models, versions, aliases, datasets and targets through the API."""

import io

import numpy as np
import pytest

from registry.models import Alias, Dataset, HardwareTarget, Model, ModelVersion
from tests.conftest import register

pytestmark = pytest.mark.django_db


def ready(model="digits", version="1"):
    """Mark a registered version ready with the tiny model's signature (as the validate job would)."""
    ModelVersion.objects.filter(model__name=model, version=version).update(
        status="ready",
        io_signature={
            "inputs": [{"name": "x", "dtype": "float32", "shape": ["batch", 4], "dynamic_axes": [0]}],
            "outputs": [{"name": "probs", "dtype": "float32", "shape": ["batch", 3], "dynamic_axes": [0]}],
        },
    )


def npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    buffer.name = "data.npz"
    return buffer


def test_it_creates_and_lists_models(engineer_api, viewer_api):
    response = engineer_api.post(
        "/api/v1/models/", {"name": "digits", "task": "classification", "description": "8x8 digits"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["owner"] == "ed"
    listing = viewer_api.get("/api/v1/models/").json()
    assert listing["count"] == 1 and listing["results"][0]["name"] == "digits"
    assert viewer_api.get("/api/v1/models/?q=8x8").json()["count"] == 1
    assert viewer_api.get("/api/v1/models/?q=nothing").json()["count"] == 0


def test_it_refuses_a_duplicate_or_bad_model_name(engineer_api):
    engineer_api.post("/api/v1/models/", {"name": "digits"}, format="json")
    duplicate = engineer_api.post("/api/v1/models/", {"name": "digits"}, format="json")
    assert duplicate.status_code == 409
    assert duplicate.json()["errors"] == {"name": ["A model named 'digits' already exists."]}
    bad = engineer_api.post("/api/v1/models/", {"name": "Bad Name!"}, format="json")
    assert bad.status_code == 400 and "name" in bad.json()["errors"]
    assert Model.objects.count() == 1


def test_viewers_cannot_create_models(viewer_api, anon_api):
    assert viewer_api.post("/api/v1/models/", {"name": "x"}, format="json").status_code == 403
    assert anon_api.get("/api/v1/models/").status_code == 401
    assert not Model.objects.exists()


def test_users_without_a_role_cannot_read(nobody):
    from tests.conftest import api_client

    assert api_client(nobody).get("/api/v1/models/").status_code == 403


def test_model_detail_lists_versions_and_aliases(engineer_api, viewer_api, onnx_file, other_onnx_file):
    register(engineer_api, onnx_file, version="1")
    register(engineer_api, other_onnx_file, version="2", alias="candidate")
    body = viewer_api.get("/api/v1/models/digits/").json()
    assert [v["version"] for v in body["versions"]] == ["2", "1"]
    assert body["aliases"] == {"candidate": "2"}
    assert body["versions"][0]["aliases"] == ["candidate"]
    assert viewer_api.get("/api/v1/models/nope/").status_code == 404


def test_the_version_detail_has_what_ci_needs(engineer_api, viewer_api, onnx_file):
    register(engineer_api, onnx_file, version="1", metadata='{"commit": "abc"}')
    body = viewer_api.get("/api/v1/models/digits/versions/1/").json()
    for key in ("status", "sha256", "io_signature", "parent", "children", "jobs", "artifact_url", "page_url"):
        assert key in body
    assert body["jobs"][0]["kind"] == "validate"
    download = viewer_api.get(body["artifact_url"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == onnx_file.read_bytes()
    assert viewer_api.get("/api/v1/models/digits/versions/9/").status_code == 404


def test_aliases_move_between_versions(engineer_api, viewer_api, onnx_file, other_onnx_file):
    register(engineer_api, onnx_file, version="1")
    register(engineer_api, other_onnx_file, version="2")
    assert (
        engineer_api.put("/api/v1/models/digits/aliases/production/", {"version": "1"}, format="json").status_code
        == 200
    )
    moved = engineer_api.put("/api/v1/models/digits/aliases/production/", {"version": "2"}, format="json")
    assert moved.status_code == 200 and moved.json()["version"] == "2"
    assert Alias.objects.get(name="production").version.version == "2"
    assert (
        viewer_api.put("/api/v1/models/digits/aliases/production/", {"version": "1"}, format="json").status_code == 403
    )
    assert engineer_api.delete("/api/v1/models/digits/aliases/production/").status_code == 204
    assert not Alias.objects.exists()


def test_an_alias_cannot_point_at_an_invalid_version(engineer_api, onnx_file):
    register(engineer_api, onnx_file, version="1")
    ModelVersion.objects.update(status="invalid", status_detail="broken")
    response = engineer_api.put("/api/v1/models/digits/aliases/production/", {"version": "1"}, format="json")
    assert response.status_code == 400
    assert "invalid" in response.json()["detail"]
    assert not Alias.objects.exists()


def test_it_attaches_a_dataset_checked_against_the_signature(engineer_api, onnx_file):
    register(engineer_api, onnx_file, version="1")
    ready()
    data = {"file": npz(x=np.zeros((10, 4), np.float32), labels=np.arange(10)), "name": "eval", "kind": "evaluation"}
    response = engineer_api.post("/api/v1/models/digits/versions/1/datasets/", data, format="multipart")
    assert response.status_code == 201, response.json()
    assert response.json()["rows"] == 10
    assert response.json()["arrays"]["x"] == {"dtype": "float32", "shape": [10, 4]}
    dataset = Dataset.objects.get()
    assert dataset.has_labels and dataset.file.name.startswith("datasets/digits/")


@pytest.mark.parametrize(
    "arrays,message",
    [
        ({"pixels": np.zeros((3, 4), np.float32)}, "named after the model's inputs"),
        ({"x": np.zeros((3, 4), np.float32), "labels": np.arange(2)}, "different numbers of rows"),
        ({"x": np.array([{}] * 3, dtype=object)}, "never unpickles"),
    ],
)
def test_it_explains_a_bad_dataset(engineer_api, onnx_file, arrays, message, media_files):
    register(engineer_api, onnx_file, version="1")
    ready()
    before = media_files()
    data = {"file": npz(**arrays), "name": "eval", "kind": "evaluation"}
    response = engineer_api.post("/api/v1/models/digits/versions/1/datasets/", data, format="multipart")
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert not Dataset.objects.exists()
    assert media_files() == before


def test_a_dataset_that_is_not_an_npz_is_refused(engineer_api, onnx_file):
    register(engineer_api, onnx_file, version="1")
    data = {"file": io.BytesIO(b"a,b\n1,2\n"), "name": "eval", "kind": "evaluation"}
    response = engineer_api.post("/api/v1/models/digits/versions/1/datasets/", data, format="multipart")
    assert response.status_code == 400
    assert ".npz" in response.json()["detail"]


def test_a_damaged_npz_is_refused_with_the_reason(engineer_api, onnx_file, media_files):
    register(engineer_api, onnx_file, version="1")
    ready()
    damaged = bytearray(npz(x=np.zeros((3, 4), np.float32)).getvalue())
    damaged[2] ^= 0xFF  # the first member's local header signature: zipfile reads the directory, then fails
    before = media_files()
    data = {"file": io.BytesIO(bytes(damaged)), "name": "eval", "kind": "evaluation"}
    response = engineer_api.post("/api/v1/models/digits/versions/1/datasets/", data, format="multipart")
    assert response.status_code == 400
    assert "damaged" in response.json()["errors"]["file"][0]
    assert not Dataset.objects.exists() and media_files() == before


def test_only_admins_create_targets(admin_api, engineer_api, viewer_api):
    body = {
        "slug": "gpu-a100",
        "name": "A100",
        "device": "cuda",
        "execution_provider": "CUDAExecutionProvider",
        "provider_options": {"device_id": 0},
    }
    assert engineer_api.post("/api/v1/targets/", body, format="json").status_code == 403
    created = admin_api.post("/api/v1/targets/", body, format="json")
    assert created.status_code == 201
    assert created.json()["queue"] == "target.gpu-a100"
    assert viewer_api.get("/api/v1/targets/").json()[0]["slug"] == "gpu-a100"
    assert admin_api.post("/api/v1/targets/", body, format="json").status_code == 409


def test_a_target_refuses_nul_characters_in_its_options(admin_api):
    response = admin_api.post(
        "/api/v1/targets/", {"slug": "cpu2", "provider_options": {"arena": "a\x00"}}, format="json"
    )
    assert response.status_code == 400 and "provider_options" in response.json()["errors"]
    assert not HardwareTarget.objects.exists()


def test_a_target_needs_a_provider_that_fits_its_device(admin_api):
    response = admin_api.post(
        "/api/v1/targets/",
        {"slug": "cpu2", "device": "cpu", "execution_provider": "CUDAExecutionProvider"},
        format="json",
    )
    assert response.status_code == 400
    assert "execution_provider" in response.json()["errors"]
    assert not HardwareTarget.objects.exists()


def test_a_target_preset_fills_its_provider_and_options_and_given_options_win(admin_api):
    created = admin_api.post(
        "/api/v1/targets/",
        {"slug": "h100-trt", "preset": "tensorrt-int8", "provider_options": {"device_id": 1}},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["device"] == "cuda" and body["execution_provider"] == "TensorrtExecutionProvider"
    assert body["provider_options"] == {
        "trt_int8_enable": "1",
        "trt_fp16_enable": "1",
        "trt_engine_cache_enable": "1",
        "device_id": 1,
    }
    exhaustive = admin_api.post(
        "/api/v1/targets/",
        {"slug": "h100", "preset": "cuda-exhaustive", "provider_options": {"cudnn_conv_algo_search": "DEFAULT"}},
        format="json",
    ).json()
    assert exhaustive["provider_options"] == {"cudnn_conv_algo_search": "DEFAULT"}
    unknown = admin_api.post("/api/v1/targets/", {"slug": "x", "preset": "tpu"}, format="json")
    assert unknown.status_code == 400 and "preset" in unknown.json()["errors"]
    assert HardwareTarget.objects.count() == 2


def test_the_schema_declares_the_errors_and_nulls_the_api_answers(client):
    schema = client.get("/api/schema/?format=json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert {"401", "403"} <= set(operation["responses"]), f"{method.upper()} {path}"
            if "requestBody" in operation:  # DRF answers 415 to a body without a Content-Type it reads
                assert "415" in operation["responses"], f"{method.upper()} {path}"
    for method, path in (("get", "/api/v1/jobs/"), ("get", "/api/v1/benchmarks/")):
        assert "404" in schema["paths"][path][method]["responses"]  # ?version= or ?format= it does not know
    components = schema["components"]["schemas"]
    for component, field in (
        ("Job", "target"),
        ("Job", "created_by"),
        ("JobDetail", "target"),
        ("VersionDetail", "created_by"),
        ("ModelSummary", "owner"),
        ("Gate", "target"),
        ("Gate", "created_by"),
        ("AliasMoved", "updated_by"),
        ("AliasEvent", "user"),
    ):
        assert components[component]["properties"][field].get("nullable"), (component, field)


def test_a_huge_page_limit_is_capped(viewer_api, onnx_file, engineer_api):
    register(engineer_api, onnx_file, version="1")
    response = viewer_api.get(f"/api/v1/models/?limit={10**22}")
    assert response.status_code == 200 and response.json()["count"] == 1


def test_the_schema_and_docs_are_served_without_a_cdn(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/uploads/{upload_id}/complete/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "cdn" not in html.lower() and "https://" not in html.split("<body")[0]
