"""API tokens: created with a name and scope (the key shown once, only its sha256 kept), listed
with when each was last used, revoked, expired; the same on the page, the API and the shell."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from common.models import ApiToken, AuditEvent
from tests.conftest import api_client, api_token_key
from tests.registry.test_pages import browser

pytestmark = pytest.mark.django_db


def with_key(key):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_token_made_through_the_api_works_and_only_its_hash_is_kept(engineer):
    created = api_client(engineer).post("/api/v1/tokens/", {"name": "CI: digits", "scope": "register"}, format="json")
    assert created.status_code == 201
    body = created.json()
    key = body["key"]
    assert (
        body["scope"] == "register"
        and body["prefix"] == key[:12]
        and key.startswith("berth_")
        and body["active"] is True
    )
    stored = ApiToken.objects.get(pk=body["id"])
    assert key not in str(list(ApiToken.objects.values_list()))
    assert stored.key_hash != key and len(stored.key_hash) == 64

    assert with_key(key).get("/api/v1/models/").status_code == 200
    listed = with_key(key).get("/api/v1/tokens/").json()["results"]
    assert "key" not in listed[0] and {t["name"] for t in listed} == {"tests", "CI: digits"}
    stored.refresh_from_db()
    assert stored.last_used is not None


def test_a_revoked_token_stops_working_and_the_revocation_is_audited(engineer):
    key = api_token_key(engineer, name="laptop")
    token = ApiToken.objects.get(name="laptop")
    manager = api_client(engineer)
    revoked = manager.delete(f"/api/v1/tokens/{token.pk}/")
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    refused = with_key(key).get("/api/v1/models/")
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]
    assert manager.delete(f"/api/v1/tokens/{token.pk}/").status_code == 200  # twice is harmless
    events = AuditEvent.objects.filter(action="api_token", details__name="laptop")
    assert [e.details["op"] for e in events.order_by("id")] == ["created", "revoked"]


def test_an_expired_token_says_so(engineer):
    key = api_token_key(engineer, name="short")
    ApiToken.objects.filter(name="short").update(expires=timezone.now() - timedelta(minutes=1))
    refused = with_key(key).get("/api/v1/models/")
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]


def test_an_inactive_users_tokens_stop_working(engineer):
    key = api_token_key(engineer)
    engineer.is_active = False
    engineer.save()
    assert with_key(key).get("/api/v1/models/").status_code == 401


@pytest.mark.parametrize(
    "body,field",
    [
        ({"name": ""}, "name"),
        ({"name": "x", "scope": "root"}, "scope"),
        ({"name": "x", "expires_days": 0}, "expires_days"),
        ({"name": "x" * 101}, "name"),
        ({"name": "x", "user": "ghost"}, "user"),
    ],
)
def test_bad_requests_create_nothing(admin_user, body, field):
    manager = api_client(admin_user)
    before = ApiToken.objects.count()
    answer = manager.post("/api/v1/tokens/", body, format="json")
    assert 400 <= answer.status_code < 500 and field in answer.json()["errors"]
    assert ApiToken.objects.count() == before


def test_people_see_and_revoke_their_own_tokens_admins_everyones(engineer, viewer, admin_user):
    api_token_key(viewer, name="viewer's")
    theirs = ApiToken.objects.get(name="viewer's")
    engineer_api = api_client(engineer)
    assert engineer_api.delete(f"/api/v1/tokens/{theirs.pk}/").status_code == 404
    assert {t["name"] for t in engineer_api.get("/api/v1/tokens/?all=true").json()["results"]} == {"tests"}
    refused = engineer_api.post("/api/v1/tokens/", {"name": "for vera", "user": viewer.username}, format="json")
    assert refused.status_code == 403
    theirs.refresh_from_db()
    assert theirs.revoked is None

    admin_api = api_client(admin_user)
    assert "viewer's" in {t["name"] for t in admin_api.get("/api/v1/tokens/?all=true").json()["results"]}
    issued = admin_api.post(
        "/api/v1/tokens/", {"name": "ci-bot", "user": viewer.username, "scope": "read"}, format="json"
    )
    assert issued.status_code == 201 and issued.json()["user"] == viewer.username
    assert admin_api.delete(f"/api/v1/tokens/{theirs.pk}/").status_code == 200
    active = {t["name"] for t in admin_api.get("/api/v1/tokens/?all=true&active=true").json()["results"]}
    assert "viewer's" not in active and "ci-bot" in active


def test_the_page_shows_a_new_key_once_lists_and_revokes(viewer):
    client = browser(viewer)
    page = client.post("/account/tokens/", {"name": "notebook", "scope": "read"}).content.decode()
    token = ApiToken.objects.get(name="notebook")
    key = page.split('id="new-token">')[1].split("<")[0]
    assert key[:12] == token.prefix and with_key(key).get("/api/v1/models/").status_code == 200
    listing = client.get("/account/tokens/").content.decode()
    assert "notebook" in listing and key not in listing and f"{token.prefix}…" in listing

    bad = client.post("/account/tokens/", {"name": "", "scope": "read"})
    assert bad.status_code == 200 and ApiToken.objects.count() == 1

    client.post("/account/tokens/", {"revoke": token.pk})
    token.refresh_from_db()
    assert token.revoked is not None and with_key(key).get("/api/v1/models/").status_code == 401
    assert "revoked" in client.get("/account/tokens/").content.decode()


def test_admins_see_others_active_tokens_on_the_page(viewer, admin_user):
    api_token_key(viewer, name="vera's script")
    assert "vera's script" in browser(admin_user).get("/account/tokens/").content.decode().replace("&#x27;", "'")
    assert "Other users" not in browser(viewer).get("/account/tokens/").content.decode()


def test_the_shell_command_prints_a_working_key(engineer, capsys):
    call_command("api_token", engineer.username, "--name", "from the shell", "--scope", "register")
    key = capsys.readouterr().out.strip()
    assert ApiToken.objects.get(name="from the shell").scope == "register"
    assert with_key(key).get("/api/v1/models/").status_code == 200


def test_keys_from_drfs_token_table_keep_working_hashed(engineer):
    """An install from before Berth's own tokens: the migration moves DRF's keys over as hashes."""
    import importlib
    from types import SimpleNamespace

    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    migration = importlib.import_module("dashboard.migrations.0005_api_tokens")
    # the models as that migration saw them (ApiToken was the dashboard app's then; common's now)
    apps = MigrationLoader(connection).project_state(("dashboard", "0005_api_tokens")).apps
    old_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id integer)")
        cursor.execute("INSERT INTO authtoken_token (key, user_id) VALUES (%s, %s)", [old_key, engineer.pk])
    migration.carry_over_drf_tokens(apps, SimpleNamespace(connection=connection))
    carried = ApiToken.objects.get(user=engineer, prefix=old_key[:12])
    assert carried.key_hash != old_key and carried.scope == "full"
    assert with_key(old_key).get("/api/v1/models/").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0  # no clear-text key left behind
        cursor.execute("DROP TABLE authtoken_token")
