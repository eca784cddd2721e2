"""Shared fixtures: users per role, API clients with tokens, real model files, a real
Celery worker on the configured broker."""

import hashlib
import os
import pickle
import time

import pytest
from django.contrib.auth.models import Group, User
from django.test import override_settings
from rest_framework.test import APIClient

from common.access import ADMIN, ENGINEER, VIEWER
from jobs.models import BenchmarkResult, Job
from registry.models import HardwareTarget, Model, ModelVersion
from tests.onnx_models import tiny_onnx_bytes

# --- isolation -------------------------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def _static_files_as_served():
    """Static files as production serves them: collectstatic's hashed names (into
    $BERTH_VAR_DIR/static; what is already compressed there is skipped, so only a fresh var/test
    pays the ~30 s of brotli) served by WhiteNoise, also on the live server (whose own static
    handler would look the hashed names up in the source folders, and not find them). Runs
    before any server or client loads WhiteNoise."""
    from django.contrib.staticfiles import handlers
    from django.core.management import call_command

    call_command("collectstatic", interactive=False, verbosity=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(handlers, "StaticFilesHandler", lambda application: application)
        yield


@pytest.fixture(autouse=True)
def _isolated_files(tmp_path):
    """Each test's media and upload parts live in its own temporary folder."""
    root = tmp_path / "var"
    (root / "uploads" / "tmp").mkdir(parents=True)
    with override_settings(
        MEDIA_ROOT=str(root / "media"),
        BERTH_UPLOAD_DIR=root / "uploads",
        FILE_UPLOAD_TEMP_DIR=str(root / "uploads" / "tmp"),
    ):
        yield root


# --- users and clients -----------------------------------------------------------------------


def make_user(username, role=None, **extra):
    user = User.objects.create_user(username, password="pw-" + username, **extra)
    if role:
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
    return user


@pytest.fixture
def viewer(db):
    return make_user("vera", VIEWER)


@pytest.fixture
def engineer(db):
    return make_user("ed", ENGINEER)


@pytest.fixture
def admin_user(db):
    return make_user("ada", ADMIN)


@pytest.fixture
def nobody(db):
    """Logged in, but in no role group."""
    return make_user("norole")


def api_token_key(user, *, scope="full", name="tests"):
    """A new API token's key for ``user``, issued the way the tokens page does it."""
    from common import tokens

    return tokens.issue(user, name=name, scope=scope)[1]


def api_client(user=None, *, scope="full"):
    client = APIClient()
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_key(user, scope=scope)}")
    return client


@pytest.fixture
def anon_api():
    return APIClient()


@pytest.fixture
def viewer_api(viewer):
    return api_client(viewer)


@pytest.fixture
def engineer_api(engineer):
    return api_client(engineer)


@pytest.fixture
def admin_api(admin_user):
    return api_client(admin_user)


# --- model files -----------------------------------------------------------------------------


def failing_onnx_bytes():
    """An ONNX model that passes the checker but fails at run time (reshapes 3 values per row to 2×2)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [2, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(tiny_onnx_bytes())
    return path


@pytest.fixture
def other_onnx_file(tmp_path):
    path = tmp_path / "other.onnx"
    path.write_bytes(tiny_onnx_bytes(seed=1))
    return path


class CreatesFileWhenUnpickled:
    """Unpickling this runs ``open(marker, "w")``: proof of code execution if the file appears."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def pickle_bomb(tmp_path):
    """(pickled checkpoint, marker path) — the marker must never exist."""
    marker = tmp_path / "pwned-by-pickle"
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(pickle.dumps({"state_dict": CreatesFileWhenUnpickled(marker)}, protocol=4))
    return path, marker


@pytest.fixture
def torch_save_bomb(tmp_path):
    """A torch.save-style zip checkpoint whose data.pkl would create a file when unpickled."""
    import zipfile

    marker = tmp_path / "pwned-by-torch-save"
    path = tmp_path / "checkpoint.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("checkpoint/data.pkl", pickle.dumps(CreatesFileWhenUnpickled(marker), protocol=2))
        archive.writestr("checkpoint/version", "3\n")
        archive.writestr("checkpoint/byteorder", "little")
    return path, marker


def sha256_of(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# --- registering through the API -------------------------------------------------------------


def register(client, path, *, model="digits", version="1", create_model=True, **fields):
    with open(path, "rb") as f:
        data = {"artifact": f, "version": version, "create_model": "true" if create_model else "false", **fields}
        return client.post(f"/api/v1/models/{model}/versions/", data, format="multipart")


# --- a real Celery worker --------------------------------------------------------------------


def purge_queues(app, names):
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        for name in names:
            try:
                channel.queue_purge(name)
            except Exception:  # a queue nobody declared yet has nothing to purge
                pass


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker (threads in this process) consuming ``default`` and ``target.cpu``
    from the broker in CELERY_BROKER_URL (Redis in CI, the file-system broker otherwise)."""
    from celery.contrib.testing.worker import start_worker

    from dashboard.celery import app

    queues = ["default", "target.cpu"]
    purge_queues(app, queues)
    with start_worker(
        app, pool="solo", concurrency=1, perform_ping_check=False, queues=queues, shutdown_timeout=30
    ) as worker:
        yield worker


def wait_for(condition, timeout=60, interval=0.1, message="condition"):
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


@pytest.fixture
def media_files(settings):
    """Lists every file under the media root (to prove nothing partial was written)."""

    def files():
        root = settings.MEDIA_ROOT
        return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)

    return files


# --- real worker processes -------------------------------------------------------------------


def stop_process(process, timeout=30):
    """SIGTERM ``process`` (a Popen) and wait for it; SIGKILL it if it is still there after
    ``timeout`` seconds."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def celery_worker_command(queues, hostname, *extra):
    """``celery -A dashboard worker`` on ``queues`` named ``hostname`` (solo pool, no gossip or
    mingle, INFO log), then ``extra`` (beat, for one)."""
    import sys
    from pathlib import Path

    return [
        str(Path(sys.executable).parent / "celery"),
        "-A",
        "dashboard",
        "worker",
        "-Q",
        ",".join(queues),
        "--pool",
        "solo",
        "--hostname",
        hostname,
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
        *extra,
    ]


def database_url():
    """The test database as a DATABASE_URL, for worker processes started by a test."""
    from django.db import connection

    params = connection.settings_dict
    if params["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{params['NAME']}"
    auth = params["USER"] + (f":{params['PASSWORD']}" if params.get("PASSWORD") else "")
    return f"postgres://{auth}@{params['HOST'] or '127.0.0.1'}:{params['PORT'] or 5432}/{params['NAME']}"


@pytest.fixture
def worker_process(transactional_db, settings):
    """``worker_process(queues, **env)``: a real ``celery -A dashboard worker`` process on the test
    database and broker, started and waited for (it reports itself as a WorkerHost)."""
    import subprocess
    import uuid
    from pathlib import Path

    from dashboard.celery import app
    from jobs.models import WorkerHost

    started = []

    def start(queues, **env):
        purge_queues(app, queues)
        name = f"test-{uuid.uuid4().hex[:8]}@{os.uname().nodename}"
        environment = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "BERTH_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "BERTH_UPLOAD_DIR": str(settings.BERTH_UPLOAD_DIR),
            **{k: str(v) for k, v in env.items()},
        }
        log = Path(settings.MEDIA_ROOT).parent / f"worker-{name.split('@')[0]}.log"
        with open(log, "w") as log_file:
            process = subprocess.Popen(
                celery_worker_command(queues, name),
                env=environment,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        process.log = log

        def reported():
            if process.poll() is not None:
                raise AssertionError(f"the worker exited: {log.read_text()[-3000:]}")
            return WorkerHost.objects.filter(hostname=name).exists()

        wait_for(reported, timeout=60, message=f"worker {name} to report itself")
        process.hostname = name
        return process

    yield start
    for process in started:
        if process.poll() is None:
            stop_process(process)


# --- a real digits model with its datasets ---------------------------------------------------


@pytest.fixture(scope="session")
def digits_files(tmp_path_factory):
    """A digits MLP trained here (a few seconds) as ONNX and TorchScript, with evaluation and
    calibration sets as .npz: real files for jobs to work on."""
    from dashboard.demo import digits_data, export_onnx, export_torchscript, save_npz, train_digits_mlp

    folder = tmp_path_factory.mktemp("digits")
    data = digits_data()
    module, accuracy = train_digits_mlp(data, hidden=64, epochs=8)
    return {
        "onnx": export_onnx(module, folder / "digits.onnx"),
        "torchscript": export_torchscript(module, folder / "digits.pt"),
        "evaluation": save_npz(folder / "eval.npz", x=data.test_x, labels=data.test_y),
        "calibration": save_npz(folder / "calib.npz", x=data.train_x[:128]),
        "accuracy": accuracy,
    }


@pytest.fixture
def digits_version(engineer_api, digits_files):
    """digits:1 registered through the API, validated (in this process) and with its datasets;
    plus the cpu target."""
    from jobs import services as job_services
    from jobs.models import Job
    from registry.models import HardwareTarget, ModelVersion

    HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})
    response = register(engineer_api, digits_files["onnx"], version="1")
    assert response.status_code == 201, response.json()
    job = Job.objects.get(version_id=response.json()["id"], kind="validate")
    job_services.job_run(job_id=job.id, worker_host="test")
    for name, kind in (("digits-test", "evaluation"), ("digits-calibration", "calibration")):
        path = digits_files["evaluation" if kind == "evaluation" else "calibration"]
        with open(path, "rb") as f:
            attached = engineer_api.post(
                "/api/v1/models/digits/versions/1/datasets/",
                {"file": f, "name": name, "kind": kind},
                format="multipart",
            )
        assert attached.status_code == 201, attached.json()
    # A test's own worker (a fixture set up before this one) may have claimed the validate job
    # first, in which case job_run above had nothing to do: wait for that worker.
    version = wait_for(
        lambda: ModelVersion.objects.exclude(status="validating").filter(pk=response.json()["id"]).first(),
        message="the validate job",
    )
    assert version.status == "ready", version.status_detail
    return version


@pytest.fixture
def digits_reference(digits_version, engineer_api, tmp_path):
    """The demo's reference set (the digits training images, labelled) attached to digits:1 through
    the API; returns the digits data it came from."""
    from dashboard.demo import digits_data, save_npz

    data = digits_data()
    path = save_npz(tmp_path / "reference.npz", x=data.train_x, labels=data.train_y)
    with open(path, "rb") as f:
        response = engineer_api.post(
            "/api/v1/models/digits/versions/1/datasets/",
            {"file": f, "name": "digits-reference", "kind": "reference"},
            format="multipart",
        )
    assert response.status_code == 201
    return data


# --- hand-built benchmark results, for edge cases a real run cannot force ---------------------


class BenchWorld:
    """Versions and hand-built benchmark rows, for edge cases a real run cannot force."""

    def __init__(self, owner, name="digits"):
        self.owner = owner
        self.model = Model.objects.create(name=name, task="classification")
        self.cpu = HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})[0]
        self.gpu = HardwareTarget.objects.get_or_create(
            slug="gpu", defaults={"name": "GPU", "device": "cuda", "execution_provider": "CUDAExecutionProvider"}
        )[0]

    def version(self, name, *, parent=None, size=1000):
        return ModelVersion.objects.create(
            model=self.model,
            version=name,
            parent=parent,
            format="onnx",
            artifact=f"artifacts/{name}.onnx",
            sha256="0" * 64,
            size_bytes=size,
            status="ready",
        )

    def result(
        self,
        version,
        target,
        *,
        p95,
        batch=1,
        accuracy=0.98,
        noise=0.01,
        samples=1000,
        stable=True,
        evaluation_set="eval",
        evaluated=360,
        quality=None,
        scope="session_run",
        encoding="",
    ):
        """``accuracy`` on ``evaluation_set`` of ``evaluated`` samples (None: no labelled set);
        ``quality``: the stored quality as is, instead. ``scope`` request with an ``encoding``: an
        end-to-end result."""
        job = Job.objects.create(kind="benchmark", version=version, target=target, status="succeeded")
        if quality is None:
            quality = {
                "evaluation_set": {
                    "name": evaluation_set,
                    "sha256": evaluation_set.ljust(64, "0")[:64],
                    "samples": evaluated,
                }
                if accuracy is not None and evaluation_set
                else None,
                "samples": evaluated,
            }
        p50, p99 = p95 * 0.8, p95 * 1.2
        return BenchmarkResult.objects.create(
            job=job,
            version=version,
            target=target,
            batch_size=batch,
            scope=scope,
            encoding=encoding,
            iterations=samples,
            warmup=5,
            p25_ms=p50 * 0.9,
            p50_ms=p50,
            p75_ms=p50 * 1.1,
            p90_ms=p95 * 0.95,
            p95_ms=p95,
            p99_ms=p99,
            min_ms=p50 * 0.5,
            max_ms=p99 * 2,
            mean_ms=p50,
            std_ms=p50 * noise,
            throughput=batch * 1000 / p50,
            intervals={
                "p50": [p50 * (1 - noise), p50 * (1 + noise)],
                "p95": [p95 * (1 - noise), p95 * (1 + noise)],
                "p99": [p99 * (1 - noise), p99 * (1 + noise)],
                "mean": [p50 * (1 - noise), p50 * (1 + noise)],
            },
            windows=[p50, p50 * (1 + noise / 2), p50],
            stable=stable,
            accuracy=accuracy,
            fidelity={"samples": evaluated},
            quality=quality,
            samples=b"",
            environment={},
        )


@pytest.fixture
def world(engineer):
    return BenchWorld(engineer)


# --- a real serving profile ------------------------------------------------------------------

# A quick sweep: 2 concurrencies × 2 max batch sizes on 1 thread, 0.2 s each; a budget every
# configuration keeps, so the recommendation is the highest throughput measured.
# Every configuration (search "full"), so that the pages' tests know which runs there are.
QUICK_SERVING_SWEEP = {"concurrency": [1, 4], "batch_sizes": [1, 4], "threads": [1], "seconds": 0.2, "search": "full"}


def profile_serving(version, *, user=None, target="cpu", p99_budget_ms=10_000):
    """Run a serve_profile job of ``version`` on ``target`` in this process (berth-serve's
    inference core over QUICK_SERVING_SWEEP) and return it, succeeded, its result as measured."""
    from jobs import services as job_services
    from registry.models import HardwareTarget

    job = job_services.job_create(
        kind="serve_profile",
        version=version,
        target=HardwareTarget.objects.get(slug=target),
        params={**QUICK_SERVING_SWEEP, "p99_budget_ms": p99_budget_ms},
        created_by=user,
    )
    if _event_loop_running():
        # Playwright's sync API runs a loop in this thread (the browser tests), and the profile
        # runs its own, as on a worker: run it in a thread of its own (transactional tests only).
        import threading

        from django.db import connection

        def run():
            try:
                job_services.job_run(job_id=job.id, worker_host="test")
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    else:
        job_services.job_run(job_id=job.id, worker_host="test")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    return job


def _event_loop_running():
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def serving_profile(digits_version, engineer):
    """digits:1's serving profile on cpu (profile_serving)."""
    return profile_serving(digits_version, user=engineer)
