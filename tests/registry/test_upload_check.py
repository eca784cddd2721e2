"""GET /api/v1/uploads/check/: the upload page's pre-flight check of a model:version name."""

import pytest

pytestmark = pytest.mark.django_db


def check(client, **query):
    return client.get("/api/v1/uploads/check/", query)


def test_it_tells_a_free_name_a_clash_and_the_same_bytes_apart(engineer_api, world):
    world.version("1")  # sha256 "0" * 64
    free = check(engineer_api, model="digits", version="2").json()
    assert free["ok"] is True and "free" in free["message"]
    clash = check(engineer_api, model="digits", version="1").json()
    assert clash["ok"] is False and clash["field"] == "version" and "already exists" in clash["message"]
    assert clash["existing_url"] == "/models/digits/versions/1/"
    other = check(engineer_api, model="digits", version="1", sha256="a" * 64).json()
    assert other["ok"] is False and "yours aaaaaaaaaaaa" in other["message"]
    same = check(engineer_api, model="digits", version="1", sha256="0" * 64).json()
    assert same["ok"] is True and "these very bytes" in same["message"]
    assert check(engineer_api, model="new-model", version="1").json()["ok"] is True
    missing = check(engineer_api, model="new-model", version="1", create_model="false").json()
    assert missing["ok"] is False and missing["field"] == "model"


def test_bad_queries_and_roles(engineer_api, viewer_api, anon_api):
    answer = check(engineer_api, model="digits")
    assert answer.status_code == 400 and "version" in answer.json()["errors"]
    assert check(engineer_api, model="d", version="1", sha256="xyz").status_code == 400
    assert check(viewer_api, model="d", version="1").status_code == 403
    assert check(anon_api, model="d", version="1").status_code in (401, 403)
