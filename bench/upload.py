"""Resumable upload throughput and server memory, against a copy of the same file.

Starts the real web server (gunicorn, as `manage.py serve` does) on a throw-away SQLite
database, uploads a valid ONNX model of --size-mib MiB with ``berth.client`` in 16 MiB
chunks and registers it (chunks and complete timed; the server hashes on the fly and
flushes the artifact to disk before registering it), and compares the rate with a plain
durable copy of the same file on the same disk (``shutil.copyfile`` + fsync, i.e. cp +
sync). Also printed: the rate including the client's own sha256 pass, and against a copy
left in the page cache (an in-kernel memory copy, which no network upload can approach).
The gunicorn worker's peak RSS is sampled every 50 ms and read from VmHWM.

    .venv/bin/python bench/upload.py [--size-mib 1024]
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from berth.client import Client, upload_complete, upload_file  # noqa: E402
from berth.core.hashing import file_sha256  # noqa: E402
from dashboard.webserver import gunicorn_command, gunicorn_environment  # noqa: E402

MiB = 1024 * 1024
CHUNK_SIZE = 16 * MiB
RATIO_GOAL = 0.5
RSS_LIMIT_MB = 300
# onnx serialises a model as one protobuf message, which cannot exceed 2 GiB.
MAX_SIZE_MIB = 2000


def write_onnx_model(path, size_mib):
    """A valid ONNX classifier (softmax(x @ W)) whose float32 weight W fills ``size_mib`` MiB."""
    from onnx import TensorProto, helper, numpy_helper

    classes = 1024
    features = size_mib * MiB // (4 * classes)
    weight = np.random.default_rng(0).random((features, classes), dtype=np.float32)
    initializer = numpy_helper.from_array(weight, "W")
    del weight
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Softmax", ["z"], ["probs"], axis=1)],
        "bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes])],
        initializer=[initializer],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="berth-bench")
    model.ir_version = 8
    del initializer, graph
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manage(env, *args):
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args[:2])} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


CREATE_USER = """
from django.contrib.auth.models import Group, User
from common import tokens
user = User.objects.create_user("bench")
user.groups.add(Group.objects.get_or_create(name="engineer")[0])
print(tokens.issue(user, name="bench", scope="register")[1])
"""


class Server:
    """gunicorn as ``manage.py serve`` starts it, with one worker; ``peak_rss_mb()`` is the
    worker's largest RSS seen."""

    def __init__(self, env, port):
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            gunicorn_command(bind=f"127.0.0.1:{port}", workers=1) + ["--access-logfile", "/dev/null"],
            cwd=ROOT,
            env=gunicorn_environment(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._sampled = 0
        self._stop = threading.Event()
        self.worker = None

    def wait_until_ready(self, token, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{self.process.stderr.read().decode()}")
            try:
                Client(self.url, token).get("/api/v1/models/")
                break
            except Exception:
                time.sleep(0.2)
        else:
            raise SystemExit("gunicorn did not answer within 60 s")
        self.worker = psutil.Process(self.process.pid).children()[0]
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self):
        while not self._stop.wait(0.05):
            try:
                self._sampled = max(self._sampled, self.worker.memory_info().rss)
            except psutil.Error:
                return

    def peak_rss_mb(self):
        with open(f"/proc/{self.worker.pid}/status") as f:
            hwm_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        return max(self._sampled, hwm_kib * 1024) / 1e6

    def stop(self):
        self._stop.set()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def baseline_mb_s(source, target, size, *, durable):
    """A plain copy of the file on the same disk; ``durable`` flushes it to disk (cp + sync), as
    Berth does with every artifact before registering it."""
    # Flush the dirty pages of earlier writes, so that writeback does not land in a timed run.
    os.sync()
    started = time.perf_counter()
    shutil.copyfile(source, target)
    if durable:
        fd = os.open(target, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    elapsed = time.perf_counter() - started
    os.unlink(target)
    return size / elapsed / 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="model size in MiB (default 1024)")
    args = parser.parse_args()
    if not 1 <= args.size_mib <= MAX_SIZE_MIB:
        parser.error(f"--size-mib must be between 1 and {MAX_SIZE_MIB} (onnx's 2 GiB protobuf limit)")

    tmp = Path(tempfile.mkdtemp(prefix="berth-bench-"))
    server = None
    try:
        var = tmp / "var"
        env = {
            **os.environ,
            "SECRET_KEY": "bench-only-secret",
            "BERTH_VAR_DIR": str(var),
            "DATABASE_URL": f"sqlite:///{var / 'berth.sqlite3'}",
            "CELERY_BROKER_URL": "filesystem://",
            "BERTH_MAX_UPLOAD_BYTES": str((args.size_mib + 64) * MiB),
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        }
        env.pop("SECRET_KEY_FILE", None)
        var.mkdir()
        manage(env, "migrate", "--noinput")
        token = manage(env, "shell", "-c", CREATE_USER).strip().splitlines()[-1]

        model_path = tmp / "model.onnx"
        write_onnx_model(model_path, args.size_mib)
        size = model_path.stat().st_size

        server = Server(env, free_port())
        server.wait_until_ready(token)

        copies = [baseline_mb_s(model_path, tmp / "copy.onnx", size, durable=True)]
        cached = [baseline_mb_s(model_path, tmp / "copy.onnx", size, durable=False)]
        client = Client(server.url, token)
        # The client's own sha256 (what `berth register` computes first, to resume across runs)
        # is timed apart: the figure under test is the upload API.
        hash_started = time.perf_counter()
        sha256 = file_sha256(model_path)
        hashed = time.perf_counter()
        os.sync()  # as in baseline_mb_s
        started = time.perf_counter()
        upload = upload_file(client, model_path, sha256=sha256, chunk_size=CHUNK_SIZE)
        uploaded = time.perf_counter()
        created, version = upload_complete(
            client, upload["id"], model="bench", version="1", sha256=sha256, create_model=True
        )
        finished = time.perf_counter()
        client.close()
        copies.append(baseline_mb_s(model_path, tmp / "copy.onnx", size, durable=True))
        cached.append(baseline_mb_s(model_path, tmp / "copy.onnx", size, durable=False))
        if not created or version["sha256"] != sha256:
            raise SystemExit(f"the upload did not register a new version: {version}")

        ours = size / (finished - started) / 1e6
        with_client_hash = size / (finished - started + hashed - hash_started) / 1e6
        baseline = max(copies)
        ratio = ours / baseline
        peak = server.peak_rss_mb()
        print(f"upload: ours={ours:.1f} MB/s baseline={baseline:.1f} MB/s ratio={ratio:.2f}")
        print(
            f"upload_with_client_sha256: ours={with_client_hash:.1f} MB/s baseline={baseline:.1f} MB/s "
            f"ratio={with_client_hash / baseline:.2f}"
        )
        print(
            f"upload_vs_page_cache_copy: ours={ours:.1f} MB/s baseline={max(cached):.1f} MB/s "
            f"ratio={ours / max(cached):.2f}"
        )
        print(f"upload_server_peak_rss: ours={peak:.0f} MB limit={RSS_LIMIT_MB} MB")
        met = ratio >= RATIO_GOAL and peak < RSS_LIMIT_MB
        print(
            f"goals: {'met' if met else 'NOT met'} (ratio {ratio:.2f} {'>=' if ratio >= RATIO_GOAL else '<'} "
            f"{RATIO_GOAL}, peak RSS {peak:.0f} MB {'<' if peak < RSS_LIMIT_MB else '>='} {RSS_LIMIT_MB} MB)"
        )
        sys.stdout.flush()
        print(
            f"phases: client_hash={hashed - hash_started:.2f}s chunks={uploaded - started:.2f}s "
            f"complete={finished - uploaded:.2f}s size={size / 1e6:,.0f} MB "
            f"baseline_runs={'/'.join(f'{c:.0f}' for c in copies)} MB/s",
            file=sys.stderr,
        )
        return 0
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
