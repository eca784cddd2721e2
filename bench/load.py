"""The dashboard under concurrent load: the registry API and the telemetry API at once.

Starts the real web server as production runs it (gunicorn with dashboard/gunicorn_conf.py and
the environment of ``manage.py serve``: --web-workers processes × 4 threads) on a free loopback
port, on a throw-away PostgreSQL database (``test_berth_bench_load``, made and dropped here;
DATABASE_URL names another server) with Redis as the broker (--broker, db 7 by default, never
CELERY_BROKER_URL: a stray worker must not pick these jobs up). Then --clients closed-loop
clients (each sends its next request when the previous answer arrives) run for --seconds, each
request on a new connection as gunicorn sees them behind a reverse proxy (--keep-alive keeps
one connection per client, as a client connected directly does):

- registry clients, like CI and people, with an engineer's API token (berth.client): list
  models, read a model, read a version, register a new version (a real tiny ONNX file,
  multipart ``POST /models/{name}/versions/``), move the ``candidate`` alias to a version they
  registered;
- telemetry clients, like berth-serve replicas, with serving.dashboard's client and their
  endpoint's Bearer token: ``POST /api/v1/telemetry/`` back to back, each flush with a new
  flush_id and the shape berth-serve sends (two versions in a 90/10 canary, errors by kind, a
  latency sketch, 17 feature histograms). The replicas are spread over --endpoints endpoints.
  berth-serve flushes every 10 s; here each replica flushes as fast as it is answered, so one
  client stands for a great many replicas.

Registering a version queues its validate job on the broker. No worker runs unless --worker
(the bench measures the API): the jobs stay queued and are purged from the broker afterwards.
With --worker one real Celery worker serves the default queue, as on a production host.

Printed per operation: requests, throughput, p50/p99 latency (ms, client side), errors by
status. Then the database is checked against what the clients were told: every flush answered
202 stored once (its TelemetryFlush row; the minute windows hold exactly the requests, errors
and series sent: "lost telemetry windows: 0"), every version answered 201 present with its
sha256 and its artifact in storage (with its audit event and its queued validate job), and the
alias log a consistent chain ending where the alias points. Exit status 1 on any error answer,
network error or mismatch, so ``make load`` is a check for CI.

    .venv/bin/python bench/load.py [--seconds 20] [--clients 20] [--telemetry-clients N] [--worker] [--keep-alive]
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone as dt_timezone
from pathlib import Path

import numpy as np

import djangobench

ROOT = djangobench.ROOT
sys.path.insert(0, str(ROOT))

from berth.client import Client, NetworkError  # noqa: E402
from dashboard.webserver import gunicorn_command, gunicorn_environment  # noqa: E402
from berth.core.stats import LogSketch  # noqa: E402
from serving.dashboard import DashboardClient, DashboardUnreachable  # noqa: E402
from tests.onnx_models import tiny_onnx_bytes  # noqa: E402

DATABASE = "berth_bench_load"
REGISTRY_MODEL = "load"
ALIAS = "candidate"
NUMERIC_FEATURES = ["x.mean", "x.std"] + [f"x[{c}]" for c in range(14)]
CLASSES = 10
BINS = 10
ERROR_KINDS = ("invalid_input", "inference_error", "too_large")
PAYLOAD_VARIANTS = 32
ONNX_VARIANTS = 64
REQUEST_TIMEOUT = 60
# Behind a reverse proxy (nginx proxies over HTTP/1.0 by default) gunicorn gets a new connection
# per request; a client connected directly keeps one open (--keep-alive), and gunicorn's gthread
# workers then keep serving each connection from the process that accepted it.
CLOSE = {"Connection": "close"}
# Registry clients pick an operation with these weights (CI registers and reads; people read).
REGISTRY_MIX = {"models.list": 20, "model.get": 15, "version.get": 35, "version.register": 20, "alias.move": 10}
EXPECTED = {
    "models.list": 200,
    "model.get": 200,
    "version.get": 200,
    "version.register": 201,
    "alias.move": 200,
    "telemetry.flush": 202,
}


# --- what the clients send -------------------------------------------------------------------


def multipart(fields, file_field, filename, data):
    """A multipart/form-data body: (bytes, content type)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def series_variants(rng, version, share):
    """PAYLOAD_VARIANTS telemetry series of ``version`` as berth-serve builds them: about
    ``share`` of a 1,000-request flush, ~1 % errors by kind, a latency sketch of lognormal
    latencies (ms) and histograms on 10 reference bins per numeric feature plus the class."""
    variants = []
    for _ in range(PAYLOAD_VARIANTS):
        requests = max(1, int(rng.integers(800, 1000) * share))
        errors = int(rng.binomial(requests, 0.01))
        kinds = Counter(rng.choice(ERROR_KINDS, errors).tolist())
        sketch = LogSketch()
        sketch.add_many(rng.lognormal(np.log(4.0), 0.4, requests))
        served = requests - errors
        features = {name: rng.multinomial(served, np.full(BINS, 1 / BINS)).tolist() for name in NUMERIC_FEATURES}
        features["prediction"] = rng.multinomial(served, np.full(CLASSES, 1 / CLASSES)).tolist()
        variants.append(
            {
                "version": version,
                "requests": requests,
                "errors": errors,
                "error_kinds": dict(kinds),
                "latency": sketch.to_dict(),
                "features": features,
            }
        )
    return variants


# --- the clients -------------------------------------------------------------------------------


class Shared:
    """What the clients share: the clock, the results, the versions registered so far."""

    def __init__(self, seconds):
        self.lock = threading.Lock()
        self.start = None
        self.deadline = None
        self.seconds = seconds
        self.go = threading.Event()
        self.records = []  # (operation, started, seconds, status)
        self.registered = {}  # version -> sha256, answered 201
        self.versions = ["seed"]  # readable versions of REGISTRY_MODEL
        self.alias_moves = []  # versions the alias was moved to, answered 200
        self.flushes = []  # (endpoint, flush_id, [(version, requests, errors)], status)
        self.failures = {}  # (operation, status) -> detail of the first such unexpected answer

    def record(self, records, flushes=(), registered=(), moves=()):
        with self.lock:
            self.records.extend(records)
            self.flushes.extend(flushes)
            self.registered.update(registered)
            self.alias_moves.extend(moves)

    def fail(self, operation, status, detail):
        with self.lock:
            self.failures.setdefault((operation, status), detail)


def registry_client(index, url, key, served_models, onnx_pool, shared, keep_alive):
    """CI and people: reads, registrations and alias moves, chosen by REGISTRY_MIX."""
    rng = random.Random(index)
    client = Client(url, key, timeout=REQUEST_TIMEOUT)
    operations, weights = zip(*REGISTRY_MIX.items())
    records, registered, moves, mine = [], {}, [], []
    base = f"/api/v1/models/{REGISTRY_MODEL}"
    shared.go.wait()
    while (started := time.perf_counter()) < shared.deadline:
        operation = rng.choices(operations, weights)[0]
        if operation == "alias.move" and not mine:
            operation = "version.register"
        body, headers, new = None, None, None
        if operation == "models.list":
            method, path = "GET", "/api/v1/models/"
        elif operation == "model.get":
            method, path = "GET", f"/api/v1/models/{rng.choice(served_models)}/"
        elif operation == "version.get":
            with shared.lock:
                version = rng.choice(shared.versions)
            method, path = "GET", f"{base}/versions/{version}/"
        elif operation == "version.register":
            new = f"c{index:02d}-{len(mine) + 1:05d}"
            data, sha256 = onnx_pool[rng.randrange(len(onnx_pool))]
            body, content_type = multipart(
                {"version": new, "metadata": f'{{"commit": "{uuid.uuid4().hex}"}}', "tags": "load"},
                "artifact",
                "model.onnx",
                data,
            )
            method, path, headers = "POST", f"{base}/versions/", {"Content-Type": content_type}
        else:
            method, path = "PUT", f"{base}/aliases/{ALIAS}/"
            body, headers = f'{{"version": "{mine[-1]}"}}'.encode(), {"Content-Type": "application/json"}
        try:
            response = client.request(
                method, path, body=body, headers={**(headers or {}), **({} if keep_alive else CLOSE)}
            )
            status = response.status
        except NetworkError as exc:
            status, response = "network", None
            shared.fail(operation, status, str(exc))
        elapsed = time.perf_counter() - started
        records.append((operation, started, elapsed, status))
        if status != EXPECTED[operation]:
            if response is not None:
                shared.fail(operation, status, response.body[:300].decode("utf-8", "replace"))
        elif operation == "version.register":
            mine.append(new)
            registered[new] = sha256
            with shared.lock:
                shared.versions.append(new)
        elif operation == "alias.move":
            moves.append(mine[-1])
    client.close()
    shared.record(records, registered=registered.items(), moves=moves)


def telemetry_client(index, url, endpoint, token, variants, shared, keep_alive):
    """A berth-serve replica's telemetry sender, flushing back to back."""
    rng = random.Random(1000 + index)
    client = DashboardClient(url, token, timeout=REQUEST_TIMEOUT)
    telemetry_url = client.url("/api/v1/telemetry/")
    records, flushes = [], []
    shared.go.wait()
    while (started := time.perf_counter()) < shared.deadline:
        series = [rng.choice(options) for options in variants]
        flush_id = str(uuid.uuid4())
        window_start = datetime.now(dt_timezone.utc) - timedelta(seconds=10)
        payload = {
            "endpoint": endpoint,
            "flush_id": flush_id,
            "start": window_start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "seconds": 10,
            "series": series,
            "dropped": 0,
        }
        try:
            response = client.request(
                "POST",
                telemetry_url,
                body=json.dumps(payload, separators=(",", ":")).encode(),
                headers=None if keep_alive else CLOSE,
            )
            status = response.status
            if status != EXPECTED["telemetry.flush"]:
                shared.fail("telemetry.flush", status, response.text(300))
        except DashboardUnreachable as exc:
            status = "network"
            shared.fail("telemetry.flush", status, str(exc))
        records.append(("telemetry.flush", started, time.perf_counter() - started, status))
        flushes.append((endpoint, flush_id, [(s["version"], s["requests"], s["errors"]) for s in series], status))
    client.close()
    shared.record(records, flushes=flushes)


# --- servers -----------------------------------------------------------------------------------


class Process:
    """A child process with its output in a log file; stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, name, command, env, log_dir):
        self.name = name
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def alive(self):
        return self.process.poll() is None

    def tail(self, lines=30):
        if not self.log.closed:
            self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self):
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def worker_cpu_seconds(web):
    """CPU seconds (user + system) of each gunicorn worker process, by pid."""
    import psutil

    seconds = {}
    for child in psutil.Process(web.process.pid).children():
        try:
            times = child.cpu_times()
            seconds[child.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return seconds


def wait_until_answering(url, key, web, timeout=90):
    client = Client(url, key, timeout=10)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not web.alive():
            raise SystemExit(f"gunicorn exited with {web.process.returncode}:\n{web.tail()}")
        try:
            if client.request("GET", "/api/v1/models/").status == 200:
                client.close()
                return
        except NetworkError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer within {timeout} s:\n{web.tail()}")


def purge_broker(broker):
    """Drop the messages waiting on the default queue (validate jobs of this run or an aborted
    one); returns how many there were."""
    from kombu import Connection

    with Connection(broker, connect_timeout=5) as connection:
        try:
            channel = connection.default_channel
        except Exception as exc:
            raise SystemExit(f"the broker {broker} is not reachable: {exc}") from exc
        try:
            return channel.queue_purge("default")
        except Exception:  # the queue was never declared
            return 0


# --- setup and checks (Django, in this process) ------------------------------------------------


def setup(endpoint_count):
    """An engineer with an API token; the registry's model; ``endpoint_count`` endpoints, each
    serving its own model's versions 1 and 2 (90/10). Returns (key, endpoints: [(name, token)],
    served model names)."""
    from django.contrib.auth.models import Group, User

    from common import tokens
    from common.access import ENGINEER
    from monitoring import services as monitoring_services
    from registry.models import HardwareTarget, Model, ModelVersion

    engineer = User.objects.create_user("load-ci")
    engineer.groups.add(Group.objects.get_or_create(name=ENGINEER)[0])
    _, key = tokens.issue(engineer, name="bench/load.py")
    target = HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})[0]
    Model.objects.create(name=REGISTRY_MODEL, task="classification", owner=engineer)
    endpoints, models = [], []
    for i in range(endpoint_count):
        model = Model.objects.create(name=f"served-{i}", task="classification", owner=engineer)
        versions = [
            ModelVersion.objects.create(
                model=model,
                version=str(v),
                format="onnx",
                artifact=f"artifacts/served-{i}/{v}.onnx",
                sha256=f"{i * 10 + v:064x}",
                size_bytes=1000,
                status="ready",
            )
            for v in (1, 2)
        ]
        endpoint, token = monitoring_services.endpoint_create(name=f"served-{i}-prod", model=model, target=target)
        monitoring_services.deploy(endpoint=endpoint, version=versions[0], weight=100)
        monitoring_services.deploy(endpoint=endpoint, version=versions[1], weight=10)
        endpoints.append((endpoint.name, token))
        models.append(model.name)
    return key, endpoints, models


def check_telemetry(shared):
    """Lines saying whether the database holds exactly the flushes answered 202; ok."""
    from django.db.models import Count, Sum

    from monitoring.models import MetricWindow, TelemetryFlush

    accepted = [f for f in shared.flushes if f[3] == 202]
    accepted_ids = {uuid.UUID(f[1]) for f in accepted}
    all_ids = {uuid.UUID(f[1]) for f in shared.flushes}
    stored_ids = set(TelemetryFlush.objects.values_list("flush_id", flat=True))
    lost_flushes = accepted_ids - stored_ids
    unanswered = (stored_ids & all_ids) - accepted_ids  # stored though the client saw no 202
    strangers = stored_ids - all_ids
    sent = defaultdict(lambda: [0, 0, 0])  # (endpoint, version) -> requests, errors, series
    for endpoint, _, series, _ in accepted:
        for version, requests, errors in series:
            counts = sent[(endpoint, version)]
            counts[0] += requests
            counts[1] += errors
            counts[2] += 1
    stored = {
        (row["endpoint__name"], row["version__version"]): [row["requests"], row["errors"], row["flushes"]]
        for row in MetricWindow.objects.filter(resolution=MetricWindow.Resolution.MINUTE)
        .values("endpoint__name", "version__version")
        .annotate(requests=Sum("requests"), errors=Sum("errors"), flushes=Sum("flushes"), rows=Count("id"))
    }
    windows = MetricWindow.objects.filter(resolution=MetricWindow.Resolution.MINUTE).count()
    series_sent = sum(c[2] for c in sent.values())
    series_stored = sum(c[2] for c in stored.values())
    requests_sent = sum(c[0] for c in sent.values())
    requests_stored = sum(c[0] for c in stored.values())
    errors_sent = sum(c[1] for c in sent.values())
    errors_stored = sum(c[1] for c in stored.values())
    mismatched = sorted(k for k in set(sent) | set(stored) if sent.get(k) != stored.get(k))
    # A version series of an accepted flush that no minute window counted is a lost window.
    lost_windows = sum(max(0, counts[2] - stored.get(k, [0, 0, 0])[2]) for k, counts in sent.items())
    ok = not (lost_flushes or unanswered or strangers or mismatched or lost_windows)
    window_bytes = row_bytes(MetricWindow)
    json_bytes = row_bytes(MetricWindow, ["features", "latency", "error_kinds"])
    flush_bytes = row_bytes(TelemetryFlush)
    lines = [
        f"load.telemetry_requests_stored: ours={requests_stored:,} baseline={requests_sent:,} "
        f"ratio={requests_stored / max(1, requests_sent):.3f} (counted in minute windows vs sent in flushes answered 202)",
        f"telemetry flushes: {len(accepted):,} answered 202, {len(stored_ids):,} stored "
        f"(lost {len(lost_flushes)}, stored without a 202 {len(unanswered)}, unknown {len(strangers)})",
        f"lost telemetry windows: {lost_windows} ({series_sent:,} version series in accepted flushes, "
        f"{series_stored:,} counted into {windows:,} minute windows of {len(stored)} endpoint × version)",
        f"telemetry requests: sent {requests_sent:,}, stored {requests_stored:,}; errors: sent {errors_sent:,}, "
        f"stored {errors_stored:,}; per endpoint × version {'equal' if not mismatched else f'MISMATCH {mismatched[:4]}'}",
        f"telemetry rows (informational): a minute window {window_bytes:,.0f} bytes ({json_bytes:,.0f} of them its "
        f"{len(NUMERIC_FEATURES) + 1} feature histograms, latency sketch and error kinds), a flush {flush_bytes:,.0f} "
        f"bytes, as PostgreSQL stores them (indexes not counted)",
    ]
    return lines, ok


def row_bytes(model, columns=None):
    """Average stored bytes of ``model``'s rows (PostgreSQL's pg_column_size: compressed as
    stored), of the whole row or of ``columns`` only."""
    from django.db import connection

    table = model._meta.db_table
    measured = " + ".join(f"pg_column_size({c})" for c in columns) if columns else f"pg_column_size({table}.*)"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(avg({measured}), 0) FROM {table}")
        return float(cursor.fetchone()[0])


def check_registry(shared):
    """Lines saying whether every version answered 201 is stored whole, with its audit event and
    validate job, and whether the alias log is one consistent chain; ok."""
    from django.core.files.storage import default_storage

    from berth.core.hashing import file_sha256
    from common.models import AuditEvent
    from jobs.models import Job
    from registry.models import Alias, AliasEvent, ModelVersion

    rows = {v.version: v for v in ModelVersion.objects.filter(model__name=REGISTRY_MODEL).exclude(version="seed")}
    registered = shared.registered
    missing = sorted(set(registered) - set(rows))
    unanswered = sorted(set(rows) - set(registered))  # stored though the client saw no 201
    wrong_sha = sorted(v for v in registered if v in rows and rows[v].sha256 != registered[v])
    bad_files = sorted(
        v
        for v, row in rows.items()
        if not default_storage.exists(row.artifact.name)
        or file_sha256(default_storage.path(row.artifact.name)) != row.sha256
    )
    audited = set(
        AuditEvent.objects.filter(
            action=AuditEvent.Action.REGISTER, target__startswith=f"{REGISTRY_MODEL}:"
        ).values_list("target", flat=True)
    )
    unaudited = sorted(v for v in rows if f"{REGISTRY_MODEL}:{v}" not in audited)
    jobs = Counter(
        Job.objects.filter(kind="validate", version__model__name=REGISTRY_MODEL)
        .exclude(version__version="seed")
        .values_list("version__version", flat=True)
    )
    not_one_job = sorted(v for v in rows if jobs.get(v) != 1)
    never_enqueued = Job.objects.filter(
        kind="validate", version__model__name=REGISTRY_MODEL, enqueued__isnull=True
    ).count()
    statuses = Counter(
        ModelVersion.objects.filter(model__name=REGISTRY_MODEL).exclude(version="seed").values_list("status", flat=True)
    )

    events = list(AliasEvent.objects.filter(model__name=REGISTRY_MODEL, alias=ALIAS).order_by("id"))
    broken = [e.id for previous, e in zip(events, events[1:]) if e.from_label != previous.to_label]
    alias = Alias.objects.filter(model__name=REGISTRY_MODEL, name=ALIAS).select_related("version").first()
    moved = [e for e in events if e.from_label]  # the first event sets the alias (at setup)
    final_ok = alias is not None and events and alias.version.version == events[-1].to_label
    unknown_targets = [e.to_label for e in moved if e.to_label not in set(shared.alias_moves)]
    ok = not (
        missing
        or unanswered
        or wrong_sha
        or bad_files
        or unaudited
        or not_one_job
        or never_enqueued
        or broken
        or not final_ok
        or unknown_targets
        or len(moved) > len(shared.alias_moves)
    )
    intact = len(rows) - len(set(bad_files) | set(wrong_sha))
    lines = [
        f"load.versions_stored: ours={intact:,} baseline={len(registered):,} "
        f"ratio={intact / max(1, len(registered)):.3f} (stored with their artifact intact vs answered 201)",
        f"registered versions: {len(registered):,} answered 201, {len(rows):,} stored (missing {len(missing)}, "
        f"stored without a 201 {len(unanswered)}, wrong sha256 {len(wrong_sha)}, artifact missing or changed "
        f"{len(bad_files)}, without their audit event {len(unaudited)})",
        f"validate jobs: one per version for {len(rows) - len(not_one_job):,} of {len(rows):,}, never handed to "
        f"the broker {never_enqueued}; versions now {dict(statuses)}",
        f"alias moves: {len(shared.alias_moves):,} answered 200, {len(moved):,} in the alias log (a move to the "
        f"version already current records none); chain {'consistent' if not broken else f'BROKEN at {broken[:4]}'}, "
        f"ends where the alias points: {'yes' if final_ok else 'NO'}",
    ]
    return lines, ok


# --- the run -----------------------------------------------------------------------------------


def report(shared, elapsed):
    """The table per operation; returns the number of unexpected answers."""
    by_operation = defaultdict(list)
    for operation, _, seconds, status in shared.records:
        by_operation[operation].append((seconds, status))
    print(f"{'operation':<18} {'requests':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  errors")
    failures = 0
    total = []
    for operation in list(REGISTRY_MIX) + ["telemetry.flush"]:
        rows = by_operation.get(operation, [])
        if not rows:
            continue
        latencies = np.array([s for s, _ in rows]) * 1000
        total.extend(latencies)
        errors = Counter(str(status) for _, status in rows if status != EXPECTED[operation])
        failures += sum(errors.values())
        print(
            f"{operation:<18} {len(rows):>9,} {len(rows) / elapsed:>8.1f} {np.percentile(latencies, 50):>8.1f} "
            f"{np.percentile(latencies, 99):>8.1f}  {sum(errors.values())}" + (f" {dict(errors)}" if errors else "")
        )
    total = np.array(total)
    print(
        f"{'all':<18} {len(total):>9,} {len(total) / elapsed:>8.1f} {np.percentile(total, 50):>8.1f} "
        f"{np.percentile(total, 99):>8.1f}  {failures}"
    )
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="how long the clients run (default 20)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument(
        "--telemetry-clients", type=int, default=None, help="how many of them send telemetry (default: half)"
    )
    parser.add_argument("--endpoints", type=int, default=4, help="endpoints the telemetry clients report for")
    parser.add_argument(
        "--web-workers",
        type=int,
        default=2,
        help="gunicorn worker processes (default 2, as "
        "dashboard/gunicorn_conf.py; threads come from BERTH_WEB_THREADS, default 4)",
    )
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/7", help="Celery broker of the server")
    parser.add_argument("--worker", action="store_true", help="run a real Celery worker on the default queue")
    parser.add_argument(
        "--keep-alive",
        action="store_true",
        help="keep each client's connection open (default: one connection per request, as gunicorn "
        "sees requests behind a reverse proxy)",
    )
    args = parser.parse_args()
    telemetry_clients = args.clients // 2 if args.telemetry_clients is None else args.telemetry_clients
    if not 0 <= telemetry_clients <= args.clients or args.clients < 1 or args.endpoints < 1:
        parser.error("need --clients ≥ 1, 0 ≤ --telemetry-clients ≤ --clients and --endpoints ≥ 1")

    tmp = Path(tempfile.mkdtemp(prefix="berth-bench-load-"))
    os.environ["BERTH_VAR_DIR"] = str(tmp / "var")  # media and upload parts, shared with the server
    os.environ["CELERY_BROKER_URL"] = args.broker
    djangobench.configure(DATABASE)
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit(f"bench/load.py needs PostgreSQL (DATABASE_URL), not {connection.vendor}")
    ok = False
    try:
        with djangobench.test_database() as database:
            try:
                ok = run(args, telemetry_clients, database, tmp)
            finally:
                connection.close()  # so that the test database can be dropped
    finally:
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"# the servers' logs and the media are kept in {tmp}", file=sys.stderr)
    return 0 if ok else 1


def run(args, telemetry_clients, database, tmp):
    from django.db import connection

    key, endpoints, served_models = setup(args.endpoints)
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{database}",
        "DATABASE_PASSWORD": db.get("PASSWORD") or "",
        "CELERY_BROKER_URL": args.broker,
    }
    env.pop("SECRET_KEY_FILE", None)
    stale = purge_broker(args.broker)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web = Process(
        "gunicorn", gunicorn_command(bind=f"127.0.0.1:{port}", workers=args.web_workers), gunicorn_environment(env), tmp
    )
    worker = None
    if args.worker:
        celery = os.path.join(os.path.dirname(sys.executable), "celery")
        worker = Process(
            "worker",
            [
                celery,
                "-A",
                "dashboard",
                "worker",
                "-Q",
                "default",
                "--concurrency",
                "1",
                "--hostname",
                f"bench-load-{port}@%h",
                "--loglevel",
                "WARNING",
            ],
            env,
            tmp,
        )
    try:
        wait_until_answering(url, key, web)
        warm_up(url, key, args.clients)
        onnx_pool = []
        for seed in range(ONNX_VARIANTS):
            data = tiny_onnx_bytes(seed=seed)
            onnx_pool.append((data, hashlib.sha256(data).hexdigest()))
        rng = np.random.default_rng(20241122)
        variants = [series_variants(rng, "1", 0.9), series_variants(rng, "2", 0.1)]
        shared = Shared(args.seconds)
        threads = []
        for i in range(args.clients - telemetry_clients):
            threads.append(
                threading.Thread(
                    target=registry_client,
                    name=f"registry-{i}",
                    args=(i, url, key, served_models, onnx_pool, shared, args.keep_alive),
                )
            )
        for i in range(telemetry_clients):
            name, token = endpoints[i % len(endpoints)]
            threads.append(
                threading.Thread(
                    target=telemetry_client,
                    name=f"telemetry-{i}",
                    args=(i, url, name, token, variants, shared, args.keep_alive),
                )
            )
        for thread in threads:
            thread.start()
        print(
            f"# {len(threads)} clients ({args.clients - telemetry_clients} registry, {telemetry_clients} telemetry "
            f"over {len(endpoints)} endpoints) for {args.seconds:g} s against gunicorn {args.web_workers} workers "
            f"× {os.environ.get('BERTH_WEB_THREADS', '4')} threads on {url} "
            f"({'keep-alive connections' if args.keep_alive else 'a connection per request'}); PostgreSQL {database}; broker "
            f"{args.broker} ({'one worker on the default queue' if worker else 'no worker: validate jobs stay queued'})"
            f"; {os.cpu_count()} CPUs shared by clients, server and database",
            file=sys.stderr,
        )
        cpu_before, clients_before = worker_cpu_seconds(web), os.times()
        shared.start = time.perf_counter()
        shared.deadline = shared.start + args.seconds
        shared.go.set()
        for thread in threads:
            thread.join()
        cpu_after, clients_after = worker_cpu_seconds(web), os.times()
        elapsed = max(s + d for _, s, d, _ in shared.records) - shared.start if shared.records else args.seconds
        if worker is not None and not worker.alive():
            raise SystemExit(f"the worker exited with {worker.process.returncode}:\n{worker.tail()}")
    finally:
        if worker is not None:
            worker.stop()
        web.stop()
    queued = purge_broker(args.broker)

    failures = report(shared, elapsed)
    spent = sorted((cpu_after[pid] - cpu_before.get(pid, 0.0) for pid in cpu_after), reverse=True)
    print(
        f"server CPU: {sum(spent):.1f} s over {elapsed:.1f} s ({1000 * sum(spent) / max(1, len(shared.records)):.1f} "
        f"ms per request; per gunicorn worker {', '.join(f'{s:.1f}' for s in spent)} s); the clients' CPU: "
        f"{clients_after.user + clients_after.system - clients_before.user - clients_before.system:.1f} s"
    )
    for (operation, status), detail in shared.failures.items():
        print(f"  first {operation} answered {status}: {detail}")
    telemetry_lines, telemetry_ok = check_telemetry(shared)
    registry_lines, registry_ok = check_registry(shared)
    for line in telemetry_lines + registry_lines:
        print(line)
    print(
        f"broker: {queued} validate job messages left on the default queue, purged "
        f"({stale} stale ones purged before the run)"
    )
    ok = failures == 0 and telemetry_ok and registry_ok
    print(f"errors: {failures}")
    print(f"load check: {'passed' if ok else 'FAILED'}")
    if failures:
        print(f"--- the server's log ({web.log_path}), last lines:\n{web.tail()}", file=sys.stderr)
    return ok


def warm_up(url, key, clients):
    """One request per client at once, uncounted: gunicorn's workers import the URLconf and open
    their database connections on their first requests."""

    def get():
        client = Client(url, key, timeout=REQUEST_TIMEOUT)
        client.request("GET", "/api/v1/models/")
        client.close()

    threads = [threading.Thread(target=get) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client = Client(url, key, timeout=REQUEST_TIMEOUT)
    data = tiny_onnx_bytes(seed=10_000)
    body, content_type = multipart({"version": "seed"}, "artifact", "model.onnx", data)
    for method, path, payload, headers in [
        ("POST", f"/api/v1/models/{REGISTRY_MODEL}/versions/", body, {"Content-Type": content_type}),
        (
            "PUT",
            f"/api/v1/models/{REGISTRY_MODEL}/aliases/{ALIAS}/",
            b'{"version": "seed"}',
            {"Content-Type": "application/json"},
        ),
    ]:
        response = client.request(method, path, body=payload, headers=headers)
        if response.status not in (200, 201):
            raise SystemExit(
                f"setting up {REGISTRY_MODEL}: {method} {path} answered {response.status}: {response.body[:300]!r}"
            )
    client.close()


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
