"""Schemathesis over every operation of /api/schema/, against the real Django app in process:
no answer is a 5xx, and every answer (status, content type, headers, body) is one the schema
declares. Examples are derandomized (a fixed seed), so a failure reproduces.

Every operation runs against a small seeded world (a model with two ready versions, datasets,
an alias, a gate, a benchmark, uploads, a deployed endpoint with telemetry, an alert rule and an
alert, a worker), and path parameters, query parameters and body fields are often swapped for
that world's names and ids, so the fuzzer reaches real objects and not only 404s. It runs as an
admin (every operation is allowed) and, with fewer examples, as a viewer (writes must answer a
declared 403). Runtime operations (endpoint token security) get the endpoint's Bearer token.
"""

import io
import os
import shutil
from datetime import timedelta

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from django.test import override_settings
from django.utils import timezone

from common.access import ADMIN, VIEWER
from jobs import services as job_services
from jobs.models import BenchmarkResult, Job, WorkerHost
from monitoring import alerts
from monitoring import services as monitoring_services
from monitoring.models import Alert, Notification
from registry import services as registry_services
from registry.models import HardwareTarget, ModelVersion
from tests.conftest import api_client, api_token_key, make_user, tiny_onnx_bytes

pytestmark = pytest.mark.django_db

# Examples per operation in the fuzzing phase (the examples and coverage phases add their own,
# deterministic ones); the viewer pass takes fewer. make test runs these (about a minute and a
# half); make fuzz goes deeper with BERTH_FUZZ_EXAMPLES and another BERTH_FUZZ_SEED.
MAX_EXAMPLES = int(os.environ.get("BERTH_FUZZ_EXAMPLES", 30))
VIEWER_EXAMPLES = max(1, MAX_EXAMPLES // 6)
SEED = int(os.environ.get("BERTH_FUZZ_SEED", 20261122))

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "max-examples": MAX_EXAMPLES,
            "deterministic": True,
            "database": "none",
            "with-security-parameters": False,
        },
        # No 5xx, and every answer is one the schema declares. Berth validates more than the schema
        # can say (a job's params, a file's bytes), so a schema-valid request may well get a 400:
        # positive_data_acceptance does not apply.
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_headers_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
        },
    }
)


def _closing(app):
    """The app as a WSGI server runs it: the response is read, then closed (which sends Django's
    request_finished and closes uploaded and downloaded files); schemathesis only reads it."""

    def wsgi(environ, start_response):
        response = app(environ, start_response)
        try:
            return [b"".join(response)]
        finally:
            response.close()

    return wsgi


schema = schemathesis.openapi.from_wsgi("/api/schema/", _closing(get_wsgi_application()), config=CONFIG)

# The seeded world of the running test; the hooks below draw from it while examples are generated.
WORLD = {}


class FuzzWorld:
    """What every operation's examples run against, made through the services and the API."""

    def __init__(self, admin, viewer):
        self.cpu = HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})[0]
        self.tokens = {"admin": f"Token {api_token_key(admin)}", "viewer": f"Token {api_token_key(viewer)}"}
        client = api_client(admin)
        self.onnx = tiny_onnx_bytes()
        for version, seed in (("1", 0), ("2", 1)):
            response = client.post(
                "/api/v1/models/digits/versions/",
                {
                    "artifact": _named(tiny_onnx_bytes(seed=seed), "model.onnx"),
                    "version": version,
                    "create_model": "true",
                    "task": "classification",
                },
                format="multipart",
            )
            assert response.status_code == 201, response.json()
        for job in Job.objects.filter(kind="validate"):
            job_services.job_run(job_id=job.id, worker_host="fuzz")
        v1, v2 = ModelVersion.objects.order_by("version")
        assert v1.status == v2.status == "ready", v1.status_detail
        rng = np.random.default_rng(0)
        buffer = io.BytesIO()
        np.savez(buffer, x=rng.standard_normal((20, 4)).astype(np.float32), labels=rng.integers(0, 3, 20))
        self.npz = buffer.getvalue()
        for name, kind in (("eval", "evaluation"), ("reference", "reference")):
            response = client.post(
                "/api/v1/models/digits/versions/1/datasets/",
                {"file": _named(self.npz, "d.npz"), "name": name, "kind": kind},
                format="multipart",
            )
            assert response.status_code == 201, response.json()
        registry_services.alias_set(model=v1.model, name="production", version=v1, user=admin)
        gate = registry_services.gate_create(
            model=v1.model, kind="max_p95_ms", threshold=5, target=self.cpu, created_by=admin
        )
        _benchmark(v1, self.cpu)
        open_upload = client.post(
            "/api/v1/uploads/", {"size": len(self.onnx), "filename": "model.onnx"}, format="json"
        ).json()
        full_upload = client.post(
            "/api/v1/uploads/", {"size": len(self.onnx) + 1, "filename": "full.onnx"}, format="json"
        ).json()
        response = client.put(
            f"/api/v1/uploads/{full_upload['id']}/",
            data=self.onnx + b"\n",
            content_type="application/octet-stream",
            HTTP_CONTENT_RANGE=f"bytes 0-{len(self.onnx)}/{len(self.onnx) + 1}",
        )
        assert response.status_code == 200, response.json()
        endpoint, self.endpoint_token = monitoring_services.endpoint_create(
            name="digits-prod", model=v1.model, target=self.cpu, created_by=admin
        )
        monitoring_services.deploy(endpoint=endpoint, version=v1, weight=100, user=admin)
        now = timezone.now()
        telemetry = {
            "events": [
                {
                    "ts": (now - timedelta(seconds=i)).isoformat(),
                    "version": "1",
                    "latency_ms": 1.0 + i % 7,
                    "ok": i % 10 != 0,
                    "error_kind": "invalid_input" if i % 10 == 0 else None,
                }
                for i in range(50)
            ]
        }
        monitoring_services.telemetry_ingest(endpoint=endpoint, payload=telemetry)
        rule = alerts.rule_create(
            endpoint=endpoint,
            metric="p95_latency",
            threshold=0.5,
            webhook_url="http://127.0.0.1:9/hook",
            emails="oncall@example.com",
            user=admin,
        )
        alert = Alert.objects.create(
            rule=rule,
            endpoint=endpoint,
            version=v1,
            value=7.0,
            last_value=7.0,
            threshold=0.5,
            message="p95 7 ms > 0.5 ms",
            started=now,
            last_evaluated=now,
        )
        Notification.objects.create(alert=alert, channel="webhook", event="firing", destination=rule.webhook_url)
        WorkerHost.objects.create(hostname="fuzz@host", queues=["default", "target.cpu"], started=now, last_seen=now)

        self.values = {
            "model": ["digits"],
            "version": ["1", "2", "digits:1"],
            "alias": ["production", "candidate"],
            "target": ["cpu"],
            "slug": ["cpu"],
            "endpoint": ["digits-prod"],
            "gate_id": [gate.id],
            "upload_id": [open_upload["id"], full_upload["id"]],
            "rule_id": [rule.id],
            "job_id": list(Job.objects.values_list("id", flat=True)),
            "versions": ["1,2", "1"],
            "targets": ["cpu"],
            "artifact": [self.onnx],
            "file": [self.npz],
            "sha256": [""],
        }
        # Whole request bodies that do something, beside the generated ones.
        self.bodies = {
            "POST /api/v1/telemetry/": [telemetry, {**telemetry, "flush_id": "6f9619ff-8b86-d011-b42d-00c04fc964ff"}],
            "POST /api/v1/endpoints/": [{"name": "digits-canary", "model": "digits", "target": "cpu"}],
            "POST /api/v1/endpoints/{name}/deploy/": [
                {"version": "2", "weight": 10},
                {"weights": [{"version": "1", "weight": 50}, {"version": "2", "weight": 50}]},
            ],
            "POST /api/v1/endpoints/{name}/alert-rules/": [{"metric": "drift", "emails": ["a@example.com"]}],
            "POST /api/v1/jobs/": [
                {"kind": "benchmark", "version": "digits:1", "target": "cpu", "params": {"batch_sizes": [1, 8]}}
            ],
            "POST /api/v1/models/{name}/gates/": [{"kind": "max_accuracy_drop", "threshold": 0.01}],
            "PUT /api/v1/models/{name}/aliases/{alias}/": [{"version": "2"}],
            "POST /api/v1/uploads/{upload_id}/complete/": [{"model": "digits", "version": "3"}],
        }

    def values_for(self, operation, name):
        """Seeded values for a parameter or body field called ``name`` of ``operation``."""
        on_endpoint = operation.path.startswith("/api/v1/endpoints/")
        if name == "name":
            return ["digits-prod", "digits-canary"] if on_endpoint else ["digits"]
        if name == "version" and on_endpoint:
            return ["1", "2"]
        return self.values.get(name, [])

    def headers_for(self, operation, role):
        schemes = {name for requirement in operation.definition.raw.get("security", []) for name in requirement}
        if "endpointToken" in schemes:
            return {"Authorization": f"Bearer {self.endpoint_token}"}
        return {"Authorization": self.tokens[role]}


def _named(data, name):
    f = io.BytesIO(data)
    f.name = name
    return f


def _benchmark(version, target):
    job = Job.objects.create(kind="benchmark", version=version, target=target, status="succeeded")
    BenchmarkResult.objects.create(
        job=job,
        version=version,
        target=target,
        batch_size=1,
        iterations=100,
        warmup=5,
        p25_ms=0.9,
        p50_ms=1.0,
        p75_ms=1.1,
        p90_ms=1.4,
        p95_ms=1.5,
        p99_ms=2.0,
        min_ms=0.5,
        max_ms=3.0,
        mean_ms=1.05,
        std_ms=0.1,
        throughput=950.0,
        intervals={"p50": [0.98, 1.02], "p95": [1.45, 1.55], "p99": [1.9, 2.1], "mean": [1.0, 1.1]},
        windows=[1.0, 1.01, 1.0],
        stable=True,
        accuracy=0.9,
        fidelity={"samples": 20},
        samples=b"",
        environment={},
    )


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker, tmp_path_factory):
    """The world, made once for the module inside a transaction rolled back at its end; each
    operation's test runs in a savepoint inside it (pytest-django's db fixture), so what one
    operation's examples change never reaches the next."""
    root = tmp_path_factory.mktemp("fuzz-world")
    (root / "uploads" / "tmp").mkdir(parents=True)
    with (
        django_db_blocker.unblock(),
        override_settings(MEDIA_ROOT=str(root / "media"), BERTH_UPLOAD_DIR=root / "uploads"),
    ):
        with transaction.atomic():
            world = FuzzWorld(make_user("fuzz-admin", ADMIN), make_user("fuzz-viewer", VIEWER))
            world.files = root
            yield world
            transaction.set_rollback(True)


@pytest.fixture
def fuzz_world(seeded, db, settings):
    # The stored artifacts and the uploads' part files, where this test's settings look.
    shutil.copytree(seeded.files / "media", settings.MEDIA_ROOT, dirs_exist_ok=True)
    shutil.copytree(seeded.files / "uploads", settings.BERTH_UPLOAD_DIR, dirs_exist_ok=True)
    # The raw WSGI handler closes the database connection around each request, which would end
    # the test's transaction; Django's test client avoids that the same way (and reconnects the
    # handler after each of its own requests).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    WORLD["current"] = seeded
    yield seeded
    WORLD.pop("current", None)
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _seeded(container):
    """A flatmap hook that swaps seeded values into the generated ``container``: always into the
    path (the coverage phase already sends plenty of made-up names and ids, which answer 404),
    all or some of them into the query and body. Some operations also get whole bodies that do
    something."""

    def hook(context, values):
        world = WORLD.get("current")
        if world is None or not isinstance(values, dict):
            return st.just(values)
        known = {key: world.values_for(context.operation, key) for key in values}
        known = {key: options for key, options in known.items() if options}
        every = st.fixed_dictionaries({key: st.sampled_from(options) for key, options in known.items()})
        if container == "path_parameters":
            return every.map(lambda seeded: {**values, **seeded})
        some = st.fixed_dictionaries({key: st.sampled_from([values[key], *options]) for key, options in known.items()})
        merged = st.one_of(every, some, st.just({})).map(lambda seeded: {**values, **seeded})
        bodies = world.bodies.get(context.operation.label, []) if container == "body" else []
        return st.one_of(merged, st.sampled_from(bodies)) if bodies else merged

    hook.__name__ = f"flatmap_{container}"
    return hook


for _container in ("path_parameters", "query", "body"):
    schema.hook(_seeded(_container))

# An operation's examples share its copy of the world: each may change it (that is the point),
# and the next starts from whatever the previous left.
FUZZ_SETTINGS = hypothesis.settings(
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow]
)


@schema.parametrize()
@FUZZ_SETTINGS
def test_every_operation_answers_an_admin_as_documented(case, fuzz_world):
    case.call_and_validate(headers=fuzz_world.headers_for(case.operation, "admin"))


@schema.parametrize()
@hypothesis.settings(FUZZ_SETTINGS, max_examples=VIEWER_EXAMPLES)
def test_every_operation_answers_a_viewer_as_documented(case, fuzz_world):
    case.call_and_validate(headers=fuzz_world.headers_for(case.operation, "viewer"))
