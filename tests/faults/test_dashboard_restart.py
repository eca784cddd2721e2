"""The dashboard killed (SIGKILL) and started again during a chunked upload: the upload resumes
from the offset the server recorded, by hand or by Berth's client on its own, and the version
it registers has exactly the file's bytes."""

import hashlib
import re
import threading

import pytest

from berth.client import Client, upload_complete, upload_file
from registry.models import ModelVersion, Upload
from tests.conftest import api_token_key, wait_for

from .conftest import CHUNK, HalfSentChunk, part_file

pytestmark = pytest.mark.django_db(transaction=True)


def registered_bytes_are(version_id, data):
    stored = ModelVersion.objects.get(pk=version_id)
    with stored.artifact.open("rb") as f:
        return f.read() == data and stored.sha256 == hashlib.sha256(data).hexdigest()


def test_an_upload_resumes_after_the_dashboard_is_killed_mid_chunk(processes, engineer, large_onnx_file, settings):
    dashboard = processes.dashboard()
    token = api_token_key(engineer)
    client = Client(dashboard.url, token)
    data = large_onnx_file.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    _, upload = client.json("POST", "/api/v1/uploads/", {"size": len(data), "filename": "large.onnx", "sha256": sha256})
    _, upload = client.json(
        "PUT",
        f"/api/v1/uploads/{upload['id']}/",
        body=data[:CHUNK],
        headers={"Content-Type": "application/octet-stream", "Content-Range": f"bytes 0-{CHUNK - 1}/{len(data)}"},
    )
    assert upload["offset"] == CHUNK
    half = HalfSentChunk(dashboard, token, upload, data, start=CHUNK, sent=CHUNK * 3 // 4)
    wait_for(
        lambda: part_file(settings, upload["id"]).stat().st_size > CHUNK,
        timeout=10,
        message="the server to write part of the second chunk",
    )

    dashboard.kill()
    half.connection.close()
    client.close()
    dashboard.start()

    _, resumed = client.json("GET", f"/api/v1/uploads/{upload['id']}/")
    assert resumed["status"] == "open" and resumed["offset"] == CHUNK  # the half chunk counts for nothing
    offsets = []
    done = upload_file(client, large_onnx_file, chunk_size=CHUNK, progress=lambda offset, size: offsets.append(offset))
    assert done["id"] == upload["id"] and offsets == [CHUNK, 2 * CHUNK, len(data)]
    created, version = upload_complete(client, done["id"], model="digits", version="2", create_model=True)
    assert created and version["sha256"] == sha256 and version["size_bytes"] == len(data)
    assert registered_bytes_are(version["id"], data)
    assert Upload.objects.get(id=upload["id"]).status == "completed"
    assert not part_file(settings, upload["id"]).exists()


def test_the_client_rides_out_a_dashboard_restart_on_its_own(processes, engineer, large_onnx_file, settings):
    dashboard = processes.dashboard()
    client = Client(dashboard.url, api_token_key(engineer))
    data = large_onnx_file.read_bytes()
    chunk = 512 * 1024
    chunks = -(-len(data) // chunk)
    offsets, outcome, killed = [], {}, threading.Event()

    def progress(offset, size):
        offsets.append(offset)
        if offset == 3 * chunk and not killed.is_set():
            dashboard.kill()  # the client's next chunk finds no server
            killed.set()

    def upload():
        try:
            outcome["upload"] = upload_file(client, large_onnx_file, chunk_size=chunk, retry_for=60, progress=progress)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=upload)
    thread.start()
    try:
        assert killed.wait(timeout=30), "the upload never reached its third chunk"
        dashboard.start()
    finally:
        thread.join(timeout=90)
    assert not thread.is_alive(), "the client did not finish within 90 s"
    assert "error" not in outcome, outcome.get("error")

    assert outcome["upload"]["offset"] == len(data)
    assert dashboard.log().count("Listening at:") == 2  # killed mid-upload and started again
    # Progress after every accepted chunk: it went on from the server's offset, never from 0 again.
    assert offsets == [*range(0, len(data), chunk), len(data)]

    def accepted_after_restart():  # gunicorn logs a request once it has answered it
        line = rf'"PUT /api/v1/uploads/{outcome["upload"]["id"]}/ HTTP/1.1" 200'
        return len(re.findall(line, dashboard.log().split("Listening at:")[-1]))

    wait_for(lambda: accepted_after_restart() >= chunks - 3, timeout=10, message="the access log")
    assert accepted_after_restart() == chunks - 3  # the rest of the chunks, each once
    created, version = upload_complete(client, outcome["upload"]["id"], model="digits", version="2", create_model=True)
    assert created and registered_bytes_are(version["id"], data)
    assert not part_file(settings, outcome["upload"]["id"]).exists()
