"""The audit log records who uploaded, registered, moved aliases, created endpoints, deployed,
rolled back and changed tokens; admins read it and export it as CSV; others may not."""

import csv
import io

import pytest

from common.models import AuditEvent
from registry.models import HardwareTarget
from tests.conftest import register

pytestmark = pytest.mark.django_db


def actions():
    return [(e.actor_name, e.action, e.target) for e in AuditEvent.objects.order_by("id")]


def test_changes_are_recorded_with_who_and_what(client, engineer, engineer_api, onnx_file, other_onnx_file):
    from jobs import services as job_services
    from jobs.models import Job

    HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})
    assert register(engineer_api, onnx_file, version="1").status_code == 201
    payload = other_onnx_file.read_bytes()
    upload = engineer_api.post("/api/v1/uploads/", {"size": len(payload), "filename": "m.onnx"}, format="json").json()
    engineer_api.put(
        f"/api/v1/uploads/{upload['id']}/",
        data=payload,
        content_type="application/octet-stream",
        HTTP_CONTENT_RANGE=f"bytes 0-{len(payload) - 1}/{len(payload)}",
    )
    assert (
        engineer_api.post(
            f"/api/v1/uploads/{upload['id']}/complete/", {"model": "digits", "version": "2"}, format="json"
        ).status_code
        == 201
    )
    # A refused registration (other bytes under a taken version) records nothing.
    assert register(engineer_api, other_onnx_file, version="1").status_code == 409
    for job in Job.objects.filter(kind="validate"):
        job_services.job_run(job_id=job.id, worker_host="test")
    assert (
        engineer_api.put("/api/v1/models/digits/aliases/candidate/", {"version": "1"}, format="json").status_code == 200
    )
    assert engineer_api.delete("/api/v1/models/digits/aliases/candidate/").status_code in (200, 204)
    created = engineer_api.post(
        "/api/v1/endpoints/", {"name": "digits-prod", "model": "digits", "target": "cpu"}, format="json"
    )
    assert created.status_code == 201
    engineer_api.post("/api/v1/endpoints/digits-prod/deploy/", {"version": "1", "weight": 100}, format="json")
    engineer_api.post("/api/v1/endpoints/digits-prod/deploy/", {"version": "2", "weight": 10}, format="json")
    assert engineer_api.post("/api/v1/endpoints/digits-prod/rollback/").status_code == 200
    assert engineer_api.post("/api/v1/endpoints/digits-prod/token/").status_code == 200
    client.force_login(engineer)
    client.post("/account/tokens/", {"name": "CI", "scope": "register"})

    name = engineer.username
    assert actions() == [
        (name, "api_token", name),  # engineer_api's token
        (name, "register", "digits:1"),
        (name, "register", "digits:2"),
        (name, "upload", "digits:2"),
        (name, "alias_set", "digits@candidate"),
        (name, "alias_remove", "digits@candidate"),
        (name, "endpoint_create", "digits-prod"),
        (name, "deploy", "digits-prod"),
        (name, "deploy", "digits-prod"),
        (name, "rollback", "digits-prod"),
        (name, "endpoint_token", "digits-prod"),
        (name, "api_token", name),
    ]
    deploys = AuditEvent.objects.filter(action__in=["deploy", "rollback"]).order_by("id")
    assert [e.details["split"] for e in deploys] == [{"1": 100}, {"1": 90, "2": 10}, {"1": 100}]
    upload_event = AuditEvent.objects.get(action="upload")
    assert upload_event.details["size_bytes"] == len(payload) and upload_event.details["filename"] == "m.onnx"


def test_only_admins_read_and_export_it(client, engineer, admin_user):
    AuditEvent.objects.create(action="deploy", target="digits-prod", actor_name="eve", details={"split": {"1": 100}})
    AuditEvent.objects.create(action="api_token", target="eve", actor_name="eve")
    AuditEvent.objects.create(action="register", target="<script>x</script>", actor_name="bob")
    client.force_login(engineer)
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/?format=csv").status_code == 403
    client.force_login(admin_user)
    page = client.get("/audit/")
    assert page.status_code == 200 and "digits-prod" in page.content.decode()
    assert "<script>x" not in page.content.decode()
    filtered = client.get("/audit/?action=deploy").content.decode()
    assert "digits-prod" in filtered and "api_token" not in filtered.split("<tbody>")[1]
    exported = client.get("/audit/?actor=eve&format=csv")
    assert exported["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [
        ("eve", "api_token", "eve"),
        ("eve", "deploy", "digits-prod"),
    ]
    assert rows[1]["details"] == '{"split": {"1": 100}}'
