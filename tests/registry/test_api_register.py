"""POST /api/v1/models/{name}/versions/ — what CI calls for every build."""

import pytest

from jobs.models import Job
from registry.models import Model, ModelVersion
from tests.conftest import register, sha256_of

pytestmark = pytest.mark.django_db


def test_it_registers_a_version_and_queues_validation(engineer_api, onnx_file):
    response = register(engineer_api, onnx_file, version="1.0.0", metadata='{"commit": "abc123"}', tags="ci,nightly")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["model"] == "digits"
    assert body["version"] == "1.0.0"
    assert body["status"] == "validating"
    assert body["format"] == "onnx"
    assert body["sha256"] == sha256_of(onnx_file)
    assert body["size_bytes"] == onnx_file.stat().st_size
    assert body["metadata"] == {"commit": "abc123"}
    assert body["tags"] == ["ci", "nightly"]
    version = ModelVersion.objects.get(model__name="digits", version="1.0.0")
    assert version.artifact.read() == onnx_file.read_bytes()
    assert Job.objects.filter(version=version, kind="validate", status="queued").count() == 1


def test_it_stores_the_artifact_under_a_generated_name(engineer_api, tmp_path):
    from tests.conftest import tiny_onnx_bytes

    evil = tmp_path / "..%2F..%2Fetc%2Fpasswd.onnx"
    evil.write_bytes(tiny_onnx_bytes())
    response = register(engineer_api, evil)
    assert response.status_code == 201
    name = ModelVersion.objects.get().artifact.name
    assert name.startswith("artifacts/digits/") and "passwd" not in name and ".." not in name


def test_it_returns_the_existing_version_for_the_same_bytes(engineer_api, onnx_file):
    first = register(engineer_api, onnx_file)
    again = register(engineer_api, onnx_file)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert ModelVersion.objects.count() == 1
    assert Job.objects.count() == 1


def test_it_refuses_other_bytes_for_an_existing_version(engineer_api, onnx_file, other_onnx_file, media_files):
    register(engineer_api, onnx_file)
    before = media_files()
    response = register(engineer_api, other_onnx_file)
    assert response.status_code == 409
    assert "already exists with different content" in response.json()["detail"]
    assert response.json()["errors"] == {"version": [response.json()["detail"]]}
    assert ModelVersion.objects.count() == 1
    assert media_files() == before


def test_it_needs_create_model_for_an_unknown_model(engineer_api, onnx_file):
    response = register(engineer_api, onnx_file, model="nope", create_model=False)
    assert response.status_code == 404
    assert "create_model=true" in response.json()["detail"]
    assert not Model.objects.exists()


def test_it_refuses_a_file_over_the_size_limit(engineer_api, onnx_file, settings, media_files):
    settings.BERTH_MAX_UPLOAD_BYTES = 100
    response = register(engineer_api, onnx_file)
    assert response.status_code == 413
    assert "at most 100 bytes" in response.json()["detail"]
    assert not ModelVersion.objects.exists() and not Model.objects.exists()
    assert media_files() == []


def test_it_refuses_a_pickle_without_unpickling_it(engineer_api, pickle_bomb, media_files):
    path, marker = pickle_bomb
    response = register(engineer_api, path)
    assert response.status_code == 422
    assert "pickled checkpoint" in response.json()["detail"]
    assert "torch.jit.save" in response.json()["detail"]
    assert not marker.exists()
    assert not ModelVersion.objects.exists() and not Model.objects.exists()
    assert media_files() == []


def test_it_refuses_a_torch_save_zip_without_unpickling_it(engineer_api, torch_save_bomb):
    path, marker = torch_save_bomb
    response = register(engineer_api, path)
    assert response.status_code == 422
    assert "pickled checkpoint" in response.json()["detail"]
    assert not marker.exists()


def test_it_refuses_a_truncated_onnx_with_the_parsers_reason(engineer_api, onnx_file, tmp_path, media_files):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(onnx_file.read_bytes()[:-40])
    response = register(engineer_api, truncated)
    assert response.status_code == 422
    assert "cannot be parsed" in response.json()["detail"]
    assert "truncated" in response.json()["detail"]
    assert response.json()["errors"]["artifact"]
    assert not ModelVersion.objects.exists()
    assert media_files() == []


def test_it_refuses_an_archive_with_a_damaged_member(engineer_api, tmp_path, media_files):
    import zipfile

    path = tmp_path / "model.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/archive_format", "pt2")
        archive.writestr("model/models/model.json", "{}")
        archive.writestr("model/data/weights/model_weights_config.json", '{"config": {}}')
    data = bytearray(path.read_bytes())
    data[data.index(b'{"config"') + 2] ^= 0x20  # "Config": the member no longer matches its CRC
    path.write_bytes(bytes(data))
    response = register(engineer_api, path)
    assert response.status_code == 422
    assert "cannot be read: Bad CRC-32" in response.json()["errors"]["artifact"][0]
    assert not ModelVersion.objects.exists() and media_files() == []


def test_it_refuses_an_unknown_format(engineer_api, tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"this is plainly not a model\n" * 10)
    response = register(engineer_api, path)
    assert response.status_code == 422
    assert "Unrecognised model file" in response.json()["detail"]


@pytest.mark.parametrize(
    "field,value,expected",
    [
        ("version", "has space", "version"),
        ("version", "", "version"),
        ("metadata", "{not json", "metadata"),
        ("metadata", "[1, 2]", "metadata"),
        # PostgreSQL stores no NUL character, in text or in jsonb.
        ("metadata", '{"commit": "abc\\u0000"}', "metadata"),
        ("tags", "ci,a\x00b", "tags"),
    ],
)
def test_it_explains_bad_fields(engineer_api, onnx_file, field, value, expected):
    fields = {"version": "1", field: value}
    version = fields.pop("version")
    response = register(engineer_api, onnx_file, version=version, **fields)
    assert response.status_code == 400
    assert expected in response.json()["errors"]
    assert not ModelVersion.objects.exists()


def test_it_requires_a_token(anon_api, onnx_file):
    response = register(anon_api, onnx_file)
    assert response.status_code == 401
    assert response.json()["detail"]


def test_it_forbids_viewers(viewer_api, onnx_file):
    response = register(viewer_api, onnx_file)
    assert response.status_code == 403
    assert not ModelVersion.objects.exists()


def test_it_records_lineage(engineer_api, onnx_file, other_onnx_file):
    register(engineer_api, onnx_file, version="1")
    response = register(engineer_api, other_onnx_file, version="1-int8", parent="1")
    assert response.status_code == 201
    assert response.json()["parent"] == "digits:1"
    parent = engineer_api.get("/api/v1/models/digits/versions/1/").json()
    assert parent["children"] == ["digits:1-int8"]


def test_it_refuses_an_unknown_parent(engineer_api, onnx_file):
    response = register(engineer_api, onnx_file, version="2", parent="1")
    assert response.status_code == 400
    assert "parent" in response.json()["errors"]
    assert not ModelVersion.objects.exists()
