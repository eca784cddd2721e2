"""Fault tests: Berth's own processes (gunicorn, Celery workers with beat, berth-serve) and a
redis-server of the tests' own, on loopback, killed and started again while they work.

Each process runs in its own session, so that SIGKILL reaches its children too (gunicorn's
workers, beat); its output goes to a log file that failures print. Every wait is bounded, and
every process a test started is stopped before its database is flushed."""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path

import pytest

from berth.client import Client
from dashboard.webserver import gunicorn_command, gunicorn_environment
from tests.conftest import (
    api_token_key,
    celery_worker_command,
    database_url,
    purge_queues,
    register,
    tiny_onnx_bytes,
    wait_for,
)
from tests.integration.test_serving import free_port

ROOT = Path(__file__).resolve().parents[2]


class Service:
    """A subprocess in its own session, its output in ``<name>.log``; ``start()`` again after
    ``kill()`` restarts it with the same command (same port)."""

    def __init__(self, name, command, env, folder):
        self.name, self.command, self.env = name, command, env
        self.log_path = Path(folder) / f"{name}.log"
        self.process = None

    def start(self):
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def alive(self):
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()[-3000:]}")
        return True

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self):
        """SIGKILL to the whole process group, as a crash or an OOM kill would; waits for the exit."""
        self._signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self, timeout=5):
        if self.process is None or self.process.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal(self, sig):
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass


class RedisServer(Service):
    """redis-server on a free loopback port, as CI and DESIGN run it: nothing saved to disk, so a
    restart forgets every message (the worst case Berth must survive)."""

    def __init__(self, folder):
        self.port = free_port()
        data = Path(folder) / "redis"
        data.mkdir(exist_ok=True)
        super().__init__(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
            ],
            os.environ.copy(),
            folder,
        )

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        super().start()
        wait_for(lambda: self.alive() and self._pong(), timeout=15, interval=0.05, message="redis-server to answer")
        return self

    def _pong(self):
        import redis

        try:
            return redis.Redis(port=self.port, socket_connect_timeout=1).ping()
        except redis.ConnectionError:
            return False

    def job_messages(self):
        """Ids of the jobs whose run_job messages this Redis holds: queued, or delivered and not acked."""
        import base64
        import json

        import redis

        client = redis.Redis(port=self.port)
        messages = [json.loads(m) for queue in ("default", "target.cpu") for m in client.lrange(queue, 0, -1)]
        messages += [json.loads(m)[0] for m in client.hvals("unacked")]  # [message, exchange, routing key]
        return sorted(
            json.loads(base64.b64decode(m["body"]))[0][0]
            for m in messages
            if m["headers"].get("task") == "jobs.run_job"
        )


class Dashboard(Service):
    """The dashboard under gunicorn (dashboard/gunicorn_conf.py, one worker process) on a free port."""

    def __init__(self, env, folder):
        self.port = free_port()
        command = gunicorn_command(bind=f"127.0.0.1:{self.port}", workers=1)
        super().__init__("dashboard", command, gunicorn_environment(env), folder)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait=True):
        super().start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self):
        def answers():
            self.alive()
            try:
                with urllib.request.urlopen(self.url + "/accounts/login/", timeout=5) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(answers, timeout=60, interval=0.1, message=f"the dashboard to answer on {self.url}")
        return self


class Worker(Service):
    """``celery -A dashboard worker`` (solo pool), with beat when asked; ready once it reported
    itself as a WorkerHost."""

    def __init__(self, queues, env, folder, beat=False):
        self.hostname = f"fault-{uuid.uuid4().hex[:8]}@{os.uname().nodename}"
        beat_args = ["-B", "--schedule", str(Path(folder) / f"beat-{self.hostname.split('@')[0]}")] if beat else []
        command = celery_worker_command(queues, self.hostname, *beat_args)
        super().__init__(f"worker-{self.hostname.split('@')[0]}", command, env, folder)

    def wait_ready(self):
        from jobs.models import WorkerHost

        wait_for(
            lambda: self.alive() and WorkerHost.objects.filter(hostname=self.hostname).exists(),
            timeout=90,
            interval=0.2,
            message=f"worker {self.hostname} to report itself",
        )
        return self


class ServingRuntime(Service):
    """berth-serve for ``endpoint`` of ``dashboard`` on a free port, polling the spec twice a second."""

    def __init__(self, dashboard, endpoint, token, folder):
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "serving.cli",
            "--dashboard",
            dashboard.url,
            "--endpoint",
            endpoint,
            "--port",
            str(self.port),
            "--poll-seconds",
            "0.5",
            "--cache-dir",
            str(Path(folder) / "serve-cache"),
        ]
        super().__init__("berth-serve", command, {**os.environ, "BERTH_ENDPOINT_TOKEN": token}, folder)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        super().start()

        def ready():
            self.alive()
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(ready, timeout=60, interval=0.2, message="berth-serve to be ready")
        return self


class Processes:
    """What a test starts; everything is stopped at its end, newest first."""

    def __init__(self, settings, folder):
        self.settings = settings
        self.folder = Path(folder)
        self.started = []

    def env(self, **extra):
        """The environment of a Berth process on the test's database, media and upload folders."""
        return {
            **os.environ,
            "DATABASE_URL": database_url(),
            "BERTH_MEDIA_ROOT": str(self.settings.MEDIA_ROOT),
            "BERTH_UPLOAD_DIR": str(self.settings.BERTH_UPLOAD_DIR),
            **{k: str(v) for k, v in extra.items()},
        }

    def _track(self, service):
        self.started.append(service)
        return service

    def redis(self):
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not on PATH (apt-get install redis-server)")
        return self._track(RedisServer(self.folder)).start()

    def dashboard(self, *, wait=True, **env):
        return self._track(Dashboard(self.env(**env), self.folder)).start(wait=wait)

    def worker(self, queues, *, beat=False, wait=True, purge=True, **env):
        """A worker on ``queues``, on the test's broker unless CELERY_BROKER_URL says otherwise; that
        broker's queues are emptied of earlier tests' messages first, unless ``purge`` is false."""
        if purge and "CELERY_BROKER_URL" not in env:
            from dashboard.celery import app

            purge_queues(app, queues)
        worker = self._track(Worker(queues, self.env(**env), self.folder, beat=beat)).start()
        return worker.wait_ready() if wait else worker

    def serve(self, dashboard, endpoint, token):
        return self._track(ServingRuntime(dashboard, endpoint, token, self.folder)).start()

    def stop_all(self):
        for service in reversed(self.started):
            if service.process is not None:
                service.stop()


@pytest.fixture
def processes(transactional_db, settings, tmp_path):
    started = Processes(settings, tmp_path)
    yield started
    started.stop_all()


def api(dashboard, user):
    """Berth's own API client (the one the CLI uses) on ``dashboard``, with a token of ``user``."""
    return Client(dashboard.url, api_token_key(user), timeout=30)


@pytest.fixture
def ready_version(engineer_api, onnx_file):
    """digits:1, a tiny ONNX classifier registered through the API and validated in this process,
    and the cpu target."""
    from jobs import services as job_services
    from jobs.models import Job
    from registry.models import HardwareTarget, ModelVersion

    HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})
    response = register(engineer_api, onnx_file, version="1")
    assert response.status_code == 201, response.json()
    job_services.job_run(job_id=Job.objects.get(version_id=response.json()["id"]).id, worker_host="test")
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.status == "ready", version.status_detail
    return version


# --- chunked uploads ---------------------------------------------------------------------------

CHUNK = 2 * 1024 * 1024  # more than the server's 1 MiB reads, so that half a chunk reaches the disk


@pytest.fixture
def large_onnx_file(tmp_path):
    """A valid ONNX classifier of about 4 MiB (a 1024×1024 weight): three chunks of CHUNK."""
    path = tmp_path / "large.onnx"
    path.write_bytes(tiny_onnx_bytes(features=1024, classes=1024))
    return path


def part_file(settings, upload_id):
    return Path(settings.BERTH_UPLOAD_DIR) / f"{upload_id}.part"


class HalfSentChunk:
    """A PUT of the chunk at ``start`` whose body stops after ``sent`` bytes until ``finish()``:
    the server is then inside the request, its part file growing and its offset not yet recorded."""

    def __init__(self, dashboard, token, upload, data, start, sent, length=CHUNK):
        self.data, self.start, self.sent, self.length = data, start, sent, length
        self.connection = http.client.HTTPConnection("127.0.0.1", dashboard.port, timeout=30)
        self.connection.putrequest("PUT", f"/api/v1/uploads/{upload['id']}/")
        for name, value in {
            "Authorization": f"Token {token}",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(length),
            "Content-Range": f"bytes {start}-{start + length - 1}/{len(data)}",
        }.items():
            self.connection.putheader(name, value)
        self.connection.endheaders()
        self.connection.send(data[start : start + sent])

    def finish(self):
        """Send the rest; returns (status, headers, JSON answer)."""
        self.connection.send(self.data[self.start + self.sent : self.start + self.length])
        response = self.connection.getresponse()
        body = json.loads(response.read())
        self.connection.close()
        return response.status, response.headers, body


# --- the database's network --------------------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``upstream`` (host, port). ``cut()`` closes every connection
    and refuses new ones, as a database host that went away; ``restore()`` listens again on the
    same port."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets = set()
        self._listener = None
        self.restore()

    def restore(self):
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def cut(self):
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close() alone would not
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, source, destination):
        try:
            while data := source.recv(65536):
                destination.sendall(data)
        except OSError:
            pass
        for sock in (source, destination):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def postgres_only():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL (DATABASE_URL=postgres://...): on SQLite there is no database connection to "
            "drop, the database is a file"
        )


@pytest.fixture
def database_proxy(transactional_db):
    """A TcpProxy in front of the test's PostgreSQL; ``database_url`` reaches the test database through it."""
    from django.db import connection

    postgres_only()
    params = connection.settings_dict
    host, port = params["HOST"] or "127.0.0.1", int(params["PORT"] or 5432)
    proxy = TcpProxy((host, port))
    proxy.database_url = database_url().replace(f"@{host}:{port}/", f"@127.0.0.1:{proxy.port}/")
    yield proxy
    proxy.cut()
