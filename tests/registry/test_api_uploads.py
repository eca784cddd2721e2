"""Resumable chunked uploads: /api/v1/uploads/ (the browser's progress bar and the CLI)."""

import hashlib

import pytest

from registry import uploads
from registry.models import ModelVersion, Upload
from tests.conftest import api_client, make_user, tiny_onnx_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def payload():
    # Padding the doc string makes the ONNX big enough for several chunks.
    import onnx

    model = onnx.load_model_from_string(tiny_onnx_bytes())
    model.doc_string = "x" * 20000
    return model.SerializeToString()


def start(client, payload, **extra):
    return client.post("/api/v1/uploads/", {"size": len(payload), "filename": "model.onnx", **extra}, format="json")


def put(client, upload_id, payload, first, last, total=None):
    total = len(payload) if total is None else total
    return client.put(
        f"/api/v1/uploads/{upload_id}/",
        data=payload[first : last + 1],
        content_type="application/octet-stream",
        HTTP_CONTENT_RANGE=f"bytes {first}-{last}/{total}",
    )


def send_all(client, upload_id, payload, chunk=2000, start_at=0, stop_at=None):
    stop_at = len(payload) if stop_at is None else stop_at
    for first in range(start_at, stop_at, chunk):
        last = min(first + chunk, stop_at) - 1
        response = put(client, upload_id, payload, first, last)
        assert response.status_code == 200, response.json()
    return response


def complete(client, upload_id, **fields):
    body = {"model": "digits", "version": "1", "create_model": True, **fields}
    return client.post(f"/api/v1/uploads/{upload_id}/complete/", body, format="json")


def test_it_registers_a_file_sent_in_chunks(engineer_api, payload):
    upload = start(engineer_api, payload).json()
    assert upload["offset"] == 0 and upload["status"] == "open"
    last = send_all(engineer_api, upload["id"], payload)
    assert last.json()["offset"] == len(payload)
    response = complete(engineer_api, upload["id"], sha256=hashlib.sha256(payload).hexdigest(), tags=["chunked"])
    assert response.status_code == 201, response.json()
    assert response.json()["sha256"] == hashlib.sha256(payload).hexdigest()
    assert response.json()["tags"] == ["chunked"]
    version = ModelVersion.objects.get()
    assert version.artifact.read() == payload
    assert Upload.objects.get().status == "completed"
    assert not uploads.part_path(upload["id"]).exists()


def test_it_refuses_a_chunk_out_of_order(engineer_api, payload):
    upload = start(engineer_api, payload).json()
    response = put(engineer_api, upload["id"], payload, 2000, 3999)
    assert response.status_code == 409
    assert response.json()["offset"] == 0
    assert "resume from byte 0" in response.json()["detail"]
    assert engineer_api.get(f"/api/v1/uploads/{upload['id']}/").json()["offset"] == 0


def test_it_refuses_an_overlapping_chunk(engineer_api, payload):
    upload = start(engineer_api, payload).json()
    put(engineer_api, upload["id"], payload, 0, 1999)
    response = put(engineer_api, upload["id"], payload, 1000, 2999)
    assert response.status_code == 409
    assert response.json()["offset"] == 2000
    assert uploads.part_path(upload["id"]).stat().st_size == 2000


@pytest.mark.parametrize(
    "header,field",
    [
        ("", "Content-Range"),
        ("bytes 0-9/99999999", "Content-Range"),
        ("bytes 9-0/{total}", "Content-Range"),
        ("items 0-9/{total}", "Content-Range"),
    ],
)
def test_it_explains_a_bad_content_range(engineer_api, payload, header, field):
    upload = start(engineer_api, payload).json()
    response = engineer_api.put(
        f"/api/v1/uploads/{upload['id']}/",
        data=payload[:10],
        content_type="application/octet-stream",
        HTTP_CONTENT_RANGE=header.format(total=len(payload)),
    )
    assert response.status_code == 400
    assert field in response.json()["errors"]


def test_it_refuses_a_body_that_does_not_match_the_range(engineer_api, payload):
    upload = start(engineer_api, payload).json()
    response = engineer_api.put(
        f"/api/v1/uploads/{upload['id']}/",
        data=payload[:10],
        content_type="application/octet-stream",
        HTTP_CONTENT_RANGE=f"bytes 0-19/{len(payload)}",
    )
    assert response.status_code == 400
    assert "Content-Length" in response.json()["errors"]


def test_it_resumes_with_the_same_sha256_after_the_server_forgot_its_hash(engineer_api, payload):
    upload = start(engineer_api, payload).json()
    send_all(engineer_api, upload["id"], payload, chunk=2000, stop_at=6000)
    # A restart (or another web process) loses the running hash; the final one is read back from disk.
    uploads._hashes.drop(upload["id"])
    status = engineer_api.get(f"/api/v1/uploads/{upload['id']}/").json()
    assert status["offset"] == 6000
    send_all(engineer_api, upload["id"], payload, start_at=status["offset"])
    response = complete(engineer_api, upload["id"])
    assert response.status_code == 201
    assert response.json()["sha256"] == hashlib.sha256(payload).hexdigest()


def test_starting_again_with_the_same_sha256_resumes_the_open_upload(engineer_api, payload):
    sha = hashlib.sha256(payload).hexdigest()
    first = start(engineer_api, payload, sha256=sha)
    put(engineer_api, first.json()["id"], payload, 0, 1999)
    again = start(engineer_api, payload, sha256=sha)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["offset"] == 2000


def test_a_sha256_mismatch_registers_nothing(engineer_api, payload, media_files):
    upload = start(engineer_api, payload).json()
    send_all(engineer_api, upload["id"], payload)
    response = complete(engineer_api, upload["id"], sha256="0" * 64)
    assert response.status_code == 400
    assert "sha256" in response.json()["errors"]
    assert "nothing was registered" in response.json()["detail"]
    assert not ModelVersion.objects.exists()
    assert media_files() == []
    assert Upload.objects.get().status == "failed"
    assert not uploads.part_path(upload["id"]).exists()
    # The discarded upload takes no more data.
    assert put(engineer_api, upload["id"], payload, 0, 9).status_code == 409


def test_it_refuses_to_complete_an_incomplete_upload(engineer_api, payload):
    upload = start(engineer_api, payload).json()
    put(engineer_api, upload["id"], payload, 0, 1999)
    response = complete(engineer_api, upload["id"])
    assert response.status_code == 409
    assert response.json()["offset"] == 2000
    assert not ModelVersion.objects.exists()


def test_completing_twice_returns_the_version(engineer_api, payload):
    upload = start(engineer_api, payload).json()
    send_all(engineer_api, upload["id"], payload)
    first = complete(engineer_api, upload["id"])
    second = complete(engineer_api, upload["id"])
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


def test_a_rejected_file_can_be_completed_again_under_another_version(engineer_api, payload, onnx_file):
    from tests.conftest import register

    register(engineer_api, onnx_file, version="1")
    upload = start(engineer_api, payload).json()
    send_all(engineer_api, upload["id"], payload)
    conflict = complete(engineer_api, upload["id"], version="1")
    assert conflict.status_code == 409
    retried = complete(engineer_api, upload["id"], version="2")
    assert retried.status_code == 201


def test_a_pickle_sent_in_chunks_is_refused_and_never_unpickled(engineer_api, pickle_bomb):
    path, marker = pickle_bomb
    payload = path.read_bytes()
    upload = start(engineer_api, payload).json()
    send_all(engineer_api, upload["id"], payload)
    response = complete(engineer_api, upload["id"])
    assert response.status_code == 422
    assert "pickled checkpoint" in response.json()["detail"]
    assert not marker.exists()
    assert not ModelVersion.objects.exists()


def test_it_refuses_an_upload_over_the_size_limit(engineer_api, settings):
    settings.BERTH_MAX_UPLOAD_BYTES = 1000
    response = engineer_api.post("/api/v1/uploads/", {"size": 1001}, format="json")
    assert response.status_code == 413
    assert not Upload.objects.exists()


def test_it_refuses_a_chunk_over_the_chunk_limit(engineer_api, payload, settings):
    settings.BERTH_MAX_CHUNK_BYTES = 1000
    upload = start(engineer_api, payload).json()
    response = put(engineer_api, upload["id"], payload, 0, 1999)
    assert response.status_code == 413
    assert engineer_api.get(f"/api/v1/uploads/{upload['id']}/").json()["offset"] == 0


def test_other_users_cannot_see_or_write_an_upload(engineer_api, payload):
    upload = start(engineer_api, payload).json()
    other = api_client(make_user("eve", "engineer"))
    assert other.get(f"/api/v1/uploads/{upload['id']}/").status_code == 404
    assert put(other, upload["id"], payload, 0, 99).status_code == 404
    assert complete(other, upload["id"]).status_code == 404


def test_viewers_and_anonymous_cannot_upload(viewer_api, anon_api, payload):
    assert start(viewer_api, payload).status_code == 403
    assert start(anon_api, payload).status_code == 401
    assert not Upload.objects.exists()


def test_a_discarded_upload_is_gone(engineer_api, payload):
    upload = start(engineer_api, payload).json()
    put(engineer_api, upload["id"], payload, 0, 999)
    assert engineer_api.delete(f"/api/v1/uploads/{upload['id']}/").status_code == 204
    assert not uploads.part_path(upload["id"]).exists()
    assert complete(engineer_api, upload["id"]).status_code == 409


def test_stale_uploads_expire(engineer_api, payload):
    from datetime import timedelta

    from django.utils import timezone

    from registry.services import uploads_expire

    upload = start(engineer_api, payload).json()
    put(engineer_api, upload["id"], payload, 0, 999)
    assert uploads_expire() == 0
    Upload.objects.update(updated=timezone.now() - timedelta(days=10))
    assert uploads_expire() == 1
    assert not uploads.part_path(upload["id"]).exists()
    assert Upload.objects.get().status == "failed"
