"""PostgreSQL connections dropped under the dashboard (gunicorn, CONN_MAX_AGE with health checks):
a request that loses its connection midway answers 503 with a clear message and keeps nothing
of what it was doing; the next requests get a new connection and succeed. With the database
unreachable for a while, pages and the API say so (503) and work again once it is back."""

import hashlib
import json
import urllib.error
import urllib.request

import pytest
from django.db import connection
from django.test import Client as BrowserClient

from berth.client import Client, upload_complete, upload_file
from common.errors import DATABASE_UNAVAILABLE_MESSAGE
from registry.models import ModelVersion, Upload
from tests.conftest import api_token_key, wait_for

from .conftest import CHUNK, HalfSentChunk, part_file, postgres_only

pytestmark = pytest.mark.django_db(transaction=True)

OTHER_BACKENDS = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"


def other_backends(terminate=False):
    """How many other sessions the test database has (the dashboard's), after terminating them if asked."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(pg_terminate_backend(pid)) {OTHER_BACKENDS}"
            if terminate
            else f"SELECT count(*) {OTHER_BACKENDS}"
        )
        return cursor.fetchone()[0]


def test_a_request_that_loses_its_database_connection_fails_cleanly_and_the_next_succeeds(
    processes, engineer, large_onnx_file, settings
):
    postgres_only()
    dashboard = processes.dashboard()
    token = api_token_key(engineer)
    client = Client(dashboard.url, token)
    data = large_onnx_file.read_bytes()
    _, upload = client.json("POST", "/api/v1/uploads/", {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    upload_path = f"/api/v1/uploads/{upload['id']}/"
    client.json(
        "PUT",
        upload_path,
        body=data[:CHUNK],
        headers={"Content-Type": "application/octet-stream", "Content-Range": f"bytes 0-{CHUNK - 1}/{len(data)}"},
    )

    # Mid-request: the server has read the upload's offset and is writing the chunk to disk.
    half = HalfSentChunk(dashboard, token, upload, data, start=CHUNK, sent=CHUNK * 3 // 4)
    wait_for(
        lambda: part_file(settings, upload["id"]).stat().st_size > CHUNK,
        timeout=10,
        message="the server to write part of the second chunk",
    )
    assert other_backends(terminate=True) >= 1
    wait_for(lambda: other_backends() == 0, timeout=10, message="the dashboard's sessions to end")
    status, headers, body = half.finish()

    assert status == 503 and headers["Retry-After"] == "5"
    assert body == {"detail": DATABASE_UNAVAILABLE_MESSAGE, "errors": {}}
    # Nothing of the chunk is kept: not counted, and cut from the part file.
    assert Upload.objects.get(id=upload["id"]).offset == CHUNK
    assert part_file(settings, upload["id"]).stat().st_size == CHUNK
    # The next requests (on any of the server's threads) reconnect and succeed.
    for _ in range(6):
        assert client.json("GET", upload_path)[1]["offset"] == CHUNK
    offsets = []
    done = upload_file(client, large_onnx_file, chunk_size=CHUNK, progress=lambda offset, size: offsets.append(offset))
    assert offsets == [CHUNK, 2 * CHUNK, len(data)]
    created, version = upload_complete(client, done["id"], model="digits", version="1", create_model=True)
    assert created and version["sha256"] == hashlib.sha256(data).hexdigest()
    with ModelVersion.objects.get(pk=version["id"]).artifact.open("rb") as f:
        assert f.read() == data
    assert "database unavailable during " + upload_path in dashboard.log()


def _get(url, headers):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def test_pages_and_the_api_say_when_the_database_is_unreachable_and_recover(processes, database_proxy, engineer):
    dashboard = processes.dashboard(DATABASE_URL=database_proxy.database_url)
    browser = BrowserClient()
    browser.force_login(engineer)
    as_browser = {"Cookie": f"sessionid={browser.cookies['sessionid'].value}"}
    as_ci = {"Authorization": f"Token {api_token_key(engineer)}"}

    def page():
        return _get(dashboard.url + "/models/", as_browser)

    def api():
        return _get(dashboard.url + "/api/v1/models/", as_ci)

    assert page()[0] == 200 and api()[0] == 200
    database_proxy.cut()
    try:
        status, headers, html = page()
        assert status == 503 and headers["Retry-After"] == "5"
        assert "<h1>Temporarily unavailable</h1>" in html and DATABASE_UNAVAILABLE_MESSAGE in html
        status, headers, body = api()
        assert status == 503 and json.loads(body) == {"detail": DATABASE_UNAVAILABLE_MESSAGE, "errors": {}}
    finally:
        database_proxy.restore()
    assert page()[0] == 200 and api()[0] == 200
