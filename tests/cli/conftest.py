"""Fixtures for the ``berth`` CLI: run it in-process against the live server, a model file
big enough for several chunks, and a TCP proxy that cuts an upload mid-chunk."""

import socket
import threading
from dataclasses import dataclass

import pytest

from berth.cli import main
from berth.client import Client
from common.access import ENGINEER
from tests.conftest import api_token_key, make_user, tiny_onnx_bytes

CHUNK = 64 * 1024


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def ci_user(transactional_db):
    return make_user("ci", ENGINEER)


@pytest.fixture
def berth(live_server, ci_user, capsys):
    """``berth(command, *args, server=..., token=...)`` runs the CLI and returns its exit code and output."""
    default_token = api_token_key(ci_user)

    def run(command, *args, server=None, token=None):
        capsys.readouterr()
        code = main([command, "--server", server or live_server.url, "--token", token or default_token, *args])
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


@pytest.fixture
def ci_client(live_server, ci_user):
    """The Python client the CLI uses, with the CI user's token."""
    client = Client(live_server.url, api_token_key(ci_user))
    yield client
    client.close()


@pytest.fixture
def big_onnx_file(tmp_path):
    """A valid ONNX classifier of about 330 KB (a 256×320 weight): several 64 KiB chunks."""
    path = tmp_path / "big.onnx"
    path.write_bytes(tiny_onnx_bytes(features=256, classes=320))
    return path


class CuttingProxy:
    """Forwards 127.0.0.1:<port> to the upstream server and, once, closes both sides of the
    connection ``cut_after`` bytes into the ``nth`` upload chunk (PUT) it forwards."""

    MARKER = b"PUT /api/v1/uploads/"

    def __init__(self, upstream, *, nth=2, cut_after=CHUNK // 2):
        self.upstream = upstream
        self.nth = nth
        self.cut_after = cut_after
        self.puts = 0
        self.cut = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self._listener.close()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=30)
            client.settimeout(30)
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()

    def _pump(self, src, dst, upstream_bound):
        tail, remaining = b"", None
        try:
            while data := src.recv(65536):
                if upstream_bound and remaining is None and not self.cut.is_set():
                    window = tail + data
                    start = window.find(self.MARKER)
                    if start >= 0 and self._is_target():
                        remaining = self.cut_after + start - len(tail)
                    tail = window[-(len(self.MARKER) - 1) :]
                if remaining is not None and len(data) >= remaining:
                    dst.sendall(data[:remaining])
                    self.cut.set()
                    break
                dst.sendall(data)
                if remaining is not None:
                    remaining -= len(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _is_target(self):
        with self._lock:
            self.puts += 1
            return self.puts == self.nth


@pytest.fixture
def cutting_proxy(live_server):
    host, port = live_server.thread.host, live_server.thread.port
    proxy = CuttingProxy((host, port))
    yield proxy
    proxy.close()
