"""The ``berth`` CLI against a live server: register, resume, refuse, status."""

import socket

import pytest

from berth import client as berth_client
from jobs.models import Job
from registry import services
from registry.models import Model, ModelVersion, Upload
from tests.cli.conftest import CHUNK
from tests.conftest import api_client, api_token_key, register, sha256_of

pytestmark = pytest.mark.django_db(transaction=True)


def register_args(path, *extra, model="digits", version="1"):
    # A short retry window, so that a server error fails the test quickly instead of being retried for minutes.
    return (
        "register",
        "--model",
        model,
        "--version",
        version,
        "--file",
        str(path),
        "--create-model",
        "--retry-for",
        "10",
        *extra,
    )


@pytest.fixture
def put_sizes(monkeypatch):
    """The body sizes of every PUT the CLI sends."""
    sizes = []
    request = berth_client.Client.request

    def spy(self, method, path, *, body=None, headers=None):
        if method == "PUT":
            sizes.append(len(body))
        return request(self, method, path, body=body, headers=headers)

    monkeypatch.setattr(berth_client.Client, "request", spy)
    return sizes


@pytest.mark.worker
def test_it_registers_and_waits_until_ready(berth, ci_user, celery_worker, onnx_file):
    """With a register-scoped token, as CI should hold."""
    result = berth(
        *register_args(
            onnx_file, "--wait", "--timeout", "60", "--tags", "ci,nightly", "--metadata", '{"commit": "abc123"}'
        ),
        token=api_token_key(ci_user, scope="register"),
    )
    assert result.code == 0, result.err
    assert "registered digits:1 (validating)" in result.out
    assert "digits:1 is ready" in result.out
    assert "inputs:  x float32[batch, 4]" in result.out
    assert "outputs: probs float32[batch, 3]" in result.out
    version = ModelVersion.objects.get(model__name="digits", version="1")
    assert version.status == ModelVersion.Status.READY
    assert version.sha256 == sha256_of(onnx_file)
    assert version.tags == ["ci", "nightly"] and version.metadata == {"commit": "abc123"}


def test_it_reads_metadata_from_a_file(berth, onnx_file, tmp_path):
    metadata = tmp_path / "meta.json"
    metadata.write_text('{"ci_url": "https://ci.example/1"}')
    result = berth(*register_args(onnx_file, "--metadata", f"@{metadata}", "--alias", "candidate"))
    assert result.code == 0, result.err
    version = ModelVersion.objects.get()
    assert version.metadata == {"ci_url": "https://ci.example/1"}
    assert [a.name for a in version.aliases.all()] == ["candidate"]


def test_a_rerun_registers_nothing_new(berth, onnx_file):
    first = berth(*register_args(onnx_file))
    again = berth(*register_args(onnx_file))
    assert first.code == 0 and again.code == 0, again.err
    assert "already registered digits:1" in again.out
    assert ModelVersion.objects.count() == 1
    assert Job.objects.count() == 1


def test_it_answers_200_when_the_upload_completes_an_existing_version(ci_client, ci_user, onnx_file):
    # Registered by someone else between the CLI's check and its complete: the server's 200 path.
    upload = berth_client.upload_file(ci_client, onnx_file, retry_for=10)
    assert register(api_client(ci_user), onnx_file).status_code == 201
    created, version = berth_client.upload_complete(
        ci_client, upload["id"], model="digits", version="1", sha256=sha256_of(onnx_file), retry_for=10
    )
    assert not created and version["version"] == "1"
    assert ModelVersion.objects.count() == 1


def test_it_refuses_other_bytes_for_an_existing_version(berth, onnx_file, other_onnx_file):
    berth(*register_args(onnx_file))
    result = berth(*register_args(other_onnx_file))
    assert result.code == 1
    assert "already exists with different content" in result.err
    assert ModelVersion.objects.get().sha256 == sha256_of(onnx_file)


def test_it_refuses_a_pickle_and_registers_nothing(berth, pickle_bomb):
    path, marker = pickle_bomb
    result = berth(*register_args(path))
    assert result.code == 1
    assert "error: This file is a pickled checkpoint" in result.err
    assert not Model.objects.exists() and not ModelVersion.objects.exists()
    assert not marker.exists()


def test_it_needs_create_model_for_an_unknown_model(berth, onnx_file):
    result = berth("register", "--model", "nope", "--version", "1", "--file", str(onnx_file))
    assert result.code == 1
    assert "create_model=true" in result.err


def test_a_bad_token_is_a_usage_error(berth, onnx_file):
    result = berth(*register_args(onnx_file), token="not-a-token")
    assert result.code == 2
    assert "API token is not valid" in result.err and "BERTH_TOKEN" in result.err
    assert not ModelVersion.objects.exists()


def test_a_viewer_is_told_about_roles(berth, viewer, onnx_file):
    result = berth(*register_args(onnx_file), token=api_token_key(viewer))
    assert result.code == 2
    assert "engineer role" in result.err


def test_a_missing_token_is_a_usage_error(berth, onnx_file, monkeypatch):
    from berth.cli import main

    monkeypatch.delenv("BERTH_TOKEN", raising=False)
    assert (
        main(["register", "--server", "http://127.0.0.1:9", "--model", "m", "--version", "1", "--file", str(onnx_file)])
        == 2
    )


def test_it_gives_up_when_the_server_is_unreachable(berth, onnx_file):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = berth(*register_args(onnx_file, "--retry-for", "0"), server=f"http://127.0.0.1:{port}")
    assert result.code == 3
    assert "Gave up" in result.err


def test_it_survives_a_connection_cut_mid_chunk(berth, cutting_proxy, big_onnx_file, put_sizes):
    result = berth(*register_args(big_onnx_file, "--chunk-size", str(CHUNK)), server=cutting_proxy.url)
    assert result.code == 0, result.err
    assert cutting_proxy.cut.is_set()
    size = big_onnx_file.stat().st_size
    assert size > 4 * CHUNK
    assert sum(put_sizes) == size + CHUNK  # the cut chunk was sent twice
    version = ModelVersion.objects.get()
    assert version.sha256 == sha256_of(big_onnx_file)
    assert version.artifact.read() == big_onnx_file.read_bytes()
    assert Upload.objects.get().status == Upload.Status.COMPLETED


def test_it_resumes_an_upload_started_earlier(berth, ci_user, big_onnx_file, put_sizes):
    data = big_onnx_file.read_bytes()
    api = api_client(ci_user)
    started = api.post(
        "/api/v1/uploads/",
        {"size": len(data), "filename": "big.onnx", "sha256": sha256_of(big_onnx_file)},
        format="json",
    )
    assert started.status_code == 201
    chunk = api.put(
        f"/api/v1/uploads/{started.json()['id']}/",
        data[:CHUNK],
        content_type="application/octet-stream",
        HTTP_CONTENT_RANGE=f"bytes 0-{CHUNK - 1}/{len(data)}",
    )
    assert chunk.json()["offset"] == CHUNK

    result = berth(*register_args(big_onnx_file, "--chunk-size", str(CHUNK)))
    assert result.code == 0, result.err
    assert sum(put_sizes) == len(data) - CHUNK
    assert Upload.objects.get().status == Upload.Status.COMPLETED
    assert ModelVersion.objects.get().sha256 == sha256_of(big_onnx_file)


def test_status_shows_a_version_and_its_job(berth, ci_user, onnx_file):
    register(api_client(ci_user), onnx_file, version="3")
    job = Job.objects.get()
    result = berth("status", "digits:3")
    assert result.code == 0
    assert "status   validating" in result.out
    assert f"sha256   {sha256_of(onnx_file)}" in result.out
    assert f"job      #{job.id} validate queued 0%" in result.out

    result = berth("status", "--job", str(job.id))
    assert result.code == 0
    assert "kind     validate" in result.out and "status   queued" in result.out


def test_status_prints_json(berth, ci_user, onnx_file):
    import json

    register(api_client(ci_user), onnx_file, version="3")
    result = berth("status", "digits:3", "--json")
    assert json.loads(result.out)["version"] == "3"


def test_status_fails_for_an_invalid_version_and_a_failed_job(berth, ci_user, onnx_file):
    register(api_client(ci_user), onnx_file, version="3")
    version = ModelVersion.objects.get()
    services.version_mark_invalid(version=version, reason="The model needs 3 inputs.")
    Job.objects.update(status=Job.Status.FAILED, error="onnxruntime could not load it")

    result = berth("status", "digits:3")
    assert result.code == 1
    assert "invalid (The model needs 3 inputs.)" in result.out
    result = berth("status", "--job", str(Job.objects.get().id))
    assert result.code == 1
    assert "error    onnxruntime could not load it" in result.out


def test_status_of_an_unknown_version_is_a_usage_error(berth):
    result = berth("status", "nope:1")
    assert result.code == 2
    assert "error: There is no version" in result.err
