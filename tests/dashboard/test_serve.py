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
    process = subprocess.Popen([sys.executable, "manage.py", "serve", "--no-worker", "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
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
