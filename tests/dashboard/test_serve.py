"""`manage.py serve`, what `make run` ends with: gunicorn answers, Ctrl-C stops everything."""

import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from tests.conftest import database_url, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_it_serves_pages_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(), "BERTH_VAR_DIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-worker", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:

        def login_page():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=2) as response:
                    return response.status == 200 and b"Log in" in response.read()
            except OSError:
                return False

        wait_for(login_page, timeout=60, interval=0.3, message="gunicorn to answer")
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert f"Berth is running at http://127.0.0.1:{port}/" in output
    assert "berth-demo" in output


# --- make run on a newcomer's machine: busy ports, a rotated demo token, a second run -------------


@pytest.fixture
def demo(_isolated_files, engineer_api, onnx_file):
    """The demo's endpoint digits-demo serving a tiny ready digits:1, its token stored in var/ as
    `manage.py demo` stores it; ``demo["var"]`` is the var/ folder the runs share."""
    import json

    from dashboard.demo import DEMO_ENDPOINT
    from jobs import services as job_services
    from jobs.models import Job
    from monitoring import services as monitoring_services
    from registry.models import HardwareTarget, ModelVersion
    from tests.conftest import register

    var = _isolated_files
    cpu = HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})[0]
    response = register(engineer_api, onnx_file, version="1")
    job_services.job_run(job_id=Job.objects.get(version_id=response.json()["id"]).id, worker_host="test")
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert version.status == "ready", version.status_detail
    endpoint, token = monitoring_services.endpoint_create(name=DEMO_ENDPOINT, model=version.model, target=cpu)
    monitoring_services.deploy(endpoint=endpoint, version=version, weight=100)
    (var / "demo-endpoint.json").write_text(
        json.dumps({"endpoint": DEMO_ENDPOINT, "token": token, "model": version.model.name})
    )
    return {"var": var, "endpoint": endpoint, "token": token}


class Run:
    """`manage.py serve --no-worker` on a var/ folder, its output in a file."""

    def __init__(self, var, port, serving_port):
        self.var, self.port, self.serving_port = var, port, serving_port
        self.log_path = var / f"run-{port}.log"
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "BERTH_VAR_DIR": str(var),
            "BERTH_MEDIA_ROOT": str(var / "media"),
        }
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "serve",
                    "--no-worker",
                    "--port",
                    str(port),
                    "--serving-port",
                    str(serving_port),
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self):
        return self.log_path.read_text()

    def answers(self, path, port=None):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port or self.port}{path}", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def wait_banner(self):
        try:
            wait_for(
                lambda: self.answers("/accounts/login/") and "Berth is running" in self.output(),
                timeout=90,
                interval=0.3,
            )
        except AssertionError:
            raise AssertionError(f"no dashboard and banner within 90 s:\n{self.output()[-3000:]}") from None
        return self.output()

    def ctrl_c(self):
        os.kill(self.process.pid, signal.SIGINT)  # what the terminal sends to the foreground command
        try:
            self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
        left = _processes_of(self.var)
        assert not left, f"processes left behind after Ctrl-C: {left}\n{self.output()}"


def _processes_of(var):
    """Processes started for this var/ folder (they all inherit BERTH_VAR_DIR), still alive."""
    marker = f"BERTH_VAR_DIR={var}\0".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            alive = open(f"/proc/{pid}/stat").read().split(") ")[1].split()[0] != "Z"
            if alive and marker in open(f"/proc/{pid}/environ", "rb").read():
                found.append(pid)
        except OSError:
            continue
    return found


def _endpoint_page(client, admin_user, var):
    from django.test import override_settings

    client.force_login(admin_user)
    with override_settings(VAR_DIR=var):
        return client.get("/endpoints/digits-demo/").content.decode()


def test_a_busy_serving_port_leaves_the_demo_unserved_and_everything_else_running(demo, client, admin_user):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        serving_port = holder.getsockname()[1]
        run = Run(demo["var"], free_port(), serving_port)
        try:
            banner = run.wait_banner()
            assert f"port {serving_port} is in use by pid {os.getpid()}" in banner, banner
            assert f"make run SERVE_PORT={serving_port + 10}" in banner
            assert "the rest of Berth runs without it" in banner
            page = _endpoint_page(client, admin_user, demo["var"])
            assert f"port {serving_port} is in use" in page and "SERVE_PORT" in page
            wait_for(lambda: run.answers("/accounts/login/"), timeout=30, interval=0.5, message="the dashboard")
            assert run.process.poll() is None
        finally:
            run.ctrl_c()


def test_a_busy_dashboard_port_is_reported_before_anything_starts(demo):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        run = Run(demo["var"], holder.getsockname()[1], free_port())
        assert run.process.wait(timeout=60) == 1
    assert f"port {run.port} is in use by pid {os.getpid()}" in run.output() and "make run PORT=" in run.output()
    assert "Berth is running" not in run.output() and not _processes_of(demo["var"])


def test_a_rotated_token_is_reissued_a_second_run_leaves_the_first_alone_and_a_dead_runtime_only_the_demo(
    demo, client, admin_user
):
    from monitoring import services as monitoring_services

    monitoring_services.endpoint_rotate_token(endpoint=demo["endpoint"])  # "New token" on the page
    for attempt in (1, 2):  # and twice in a row on the same var/
        first = Run(demo["var"], free_port(), free_port())
        try:
            banner = first.wait_banner()
            assert ("got a new one" in banner) == (attempt == 1), banner
            wait_for(
                lambda run=first: run.answers("/v2/health/ready", run.serving_port),
                timeout=60,
                interval=0.3,
                message=f"the demo runtime to be ready:\n{(demo['var'] / 'demo-serving.log').read_text()}",
            )
            assert "answers at" in _endpoint_page(client, admin_user, demo["var"])

            second = Run(demo["var"], free_port(), free_port())
            assert second.process.wait(timeout=60) == 1
            assert "Berth is already running" in second.output() and f"pid {first.process.pid}" in second.output()
            check = subprocess.run(
                [sys.executable, "dashboard/runlocal.py", str(demo["var"])], capture_output=True, text=True
            )  # make run's first step
            assert check.returncode == 1 and f"pid {first.process.pid}" in check.stderr, check
            assert first.answers("/accounts/login/") and first.answers("/v2/health/ready", first.serving_port)
            if attempt == 2:
                _the_demo_runtime_dies(first, demo["var"], client, admin_user)
        finally:
            first.ctrl_c()


def _the_demo_runtime_dies(run, var, client, admin_user):
    """The demo runtime killed: the dashboard keeps answering, the command and the page say why."""
    runtime = next(pid for pid in _processes_of(var) if b"serving.cli" in open(f"/proc/{pid}/cmdline", "rb").read())
    os.killpg(int(runtime), signal.SIGKILL)
    wait_for(
        lambda: "The demo's serving runtime stopped" in run.output(),
        timeout=30,
        interval=0.3,
        message="the command to notice",
    )
    assert "The dashboard and workers keep running" in run.output()
    page = _endpoint_page(client, admin_user, var)
    assert "serving runtime stopped" in page, page[page.find("<h1>") : page.find("<h2>")]
    wait_for(lambda: run.answers("/accounts/login/"), timeout=30, interval=0.5, message="the dashboard")
    assert run.process.poll() is None
