"""Demo data: a digits classifier trained on the fly from scikit-learn's bundled
``load_digits`` (no download), registered like any other model.

The training and export helpers are also what tests and benchmarks use to get real models.
"""

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEMO_PASSWORD = "berth-demo"
DEMO_USERS = [("admin", "admin"), ("engineer", "engineer"), ("viewer", "viewer")]


@dataclass
class DigitsData:
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def digits_data(seed=0):
    """load_digits as float32 in [0, 1], split 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    split = int(len(x) * 0.8)
    train, test = order[:split], order[split:]
    return DigitsData(x[train], y[train], x[test], y[test])


def train_digits_mlp(data, *, hidden=128, epochs=40, seed=0):
    """A small MLP on 64 pixel features; returns (module in eval mode, test accuracy)."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden // 2),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden // 2, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.from_numpy(data.train_x)
    y = torch.from_numpy(data.train_y)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predictions = model(torch.from_numpy(data.test_x)).argmax(dim=1).numpy()
    return model, float((predictions == data.test_y).mean())


def train_digits_cnn(data, *, epochs=12, seed=0, channels=(16, 32), hidden=64, flat=False):
    """A CNN on the 8x8 images: two 3x3 convolutions of ``channels``, 2x2 max pooling, a hidden
    layer of ``hidden`` units. Its input is [batch, 1, 8, 8], or with ``flat`` the 64 pixel
    features (reshaped inside, so it takes the same datasets as the MLPs). Returns (module, test
    accuracy)."""
    import torch

    torch.manual_seed(seed)
    first, second = channels
    model = torch.nn.Sequential(
        *([torch.nn.Unflatten(1, (1, 8, 8))] if flat else []),
        torch.nn.Conv2d(1, first, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(first, second, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(second * 4 * 4, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    shape = (-1, 64) if flat else (-1, 1, 8, 8)
    x = torch.from_numpy(data.train_x.reshape(shape))
    y = torch.from_numpy(data.train_y)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predictions = model(torch.from_numpy(data.test_x.reshape(shape))).argmax(dim=1).numpy()
    return model, float((predictions == data.test_y).mean())


def export_onnx(module, path, *, example_shape=(2, 64)):
    """ONNX with a dynamic batch axis, one file, input ``x`` and output ``logits``."""
    import torch

    example = (torch.zeros(*example_shape),)
    torch.onnx.export(
        module,
        example,
        str(path),
        dynamo=True,
        external_data=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        verbose=False,
    )
    return Path(path)


def export_torchscript(module, path, *, example_shape=(1, 64)):
    import torch

    traced = torch.jit.trace(module, torch.zeros(*example_shape))
    torch.jit.save(traced, str(path))
    return Path(path)


def save_npz(path, **arrays):
    np.savez(path, **arrays)
    return Path(path)


def load_demo(*, out=print):
    """Create the demo users, the cpu target and the digits model with two versions and its
    datasets, and queue a compression and benchmarks. Idempotent: what exists is left alone."""
    from django.contrib.auth.models import Group, User
    from django.db import transaction

    from registry import services
    from registry.models import HardwareTarget, Model, ModelVersion

    with transaction.atomic():
        for username, role in DEMO_USERS:
            if not User.objects.filter(username=username).exists():
                user = User.objects.create_user(
                    username, password=DEMO_PASSWORD, is_staff=(role == "admin"), is_superuser=(role == "admin")
                )
                user.groups.add(Group.objects.get(name=role))
                out(f"  user {username} ({role}) created")
    admin = User.objects.get(username="admin")
    if not HardwareTarget.objects.filter(slug="cpu").exists():
        services.target_create(
            slug="cpu",
            name="CPU (this machine)",
            device="cpu",
            execution_provider="CPUExecutionProvider",
            description="The local CPU with onnxruntime's default provider.",
        )
        out("  hardware target cpu created (queue target.cpu)")

    model = Model.objects.filter(name="digits").first()
    if model is None:
        model = services.model_create(
            name="digits",
            task=Model.Task.CLASSIFICATION,
            owner=admin,
            description="8x8 handwritten digits (scikit-learn load_digits), a small MLP.",
        )
    have = set(ModelVersion.objects.filter(model=model).values_list("version", flat=True))
    if {"1", "2", "3"} <= have:
        out("  digits 1, 2 and 3 already registered")
    else:
        _register_digits(model, admin, have, out)
    _queue_first_jobs(model, admin, out)
    _demo_endpoint(model, admin, out)


def _register_digits(model, admin, have, out):
    from registry import services, uploads
    from registry.models import ModelVersion

    out("  training digits classifiers with torch on load_digits (a few seconds)…")
    data = digits_data()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "1" not in have:
            module, accuracy = train_digits_mlp(data, hidden=128, epochs=30)
            out(f"  digits 1: MLP 64-128-64-10, test accuracy {accuracy:.1%} on {len(data.test_y)} held-out images")
            _register(
                services,
                uploads,
                export_onnx(module, tmp / "v1.onnx"),
                model,
                "1",
                admin,
                {
                    "framework": "torch",
                    "architecture": "mlp-128",
                    "test_accuracy": round(accuracy, 4),
                    "trained_on": "sklearn.datasets.load_digits (80% split, seed 0)",
                },
                ["demo", "onnx"],
            )
            version = ModelVersion.objects.get(model=model, version="1")
            for name, kind, arrays in [
                ("digits-test", "evaluation", {"x": data.test_x, "labels": data.test_y}),
                ("digits-calibration", "calibration", {"x": data.train_x[:128]}),
                ("digits-reference", "reference", {"x": data.train_x, "labels": data.train_y}),
            ]:
                incoming = uploads.incoming_copy(save_npz(tmp / f"{name}.npz", **arrays))
                try:
                    services.dataset_attach(version=version, name=name, kind=kind, incoming=incoming, created_by=admin)
                finally:
                    incoming.path.unlink(missing_ok=True)
                out(f"  dataset {name} ({kind}, {len(next(iter(arrays.values())))} rows) attached")
        if "2" not in have:
            module, accuracy = train_digits_mlp(data, hidden=256, epochs=40, seed=1)
            out(f"  digits 2: MLP 64-256-128-10 as TorchScript, test accuracy {accuracy:.1%}")
            _register(
                services,
                uploads,
                export_torchscript(module, tmp / "v2.pt"),
                model,
                "2",
                admin,
                {
                    "framework": "torch",
                    "architecture": "mlp-256",
                    "test_accuracy": round(accuracy, 4),
                    "trained_on": "sklearn.datasets.load_digits (80% split, seed 0)",
                },
                ["demo", "torchscript"],
            )
        if "3" not in have:
            _register_cnn(services, uploads, model, admin, data, tmp, out)


def _register_cnn(services, uploads, model, admin, data, tmp, out):
    """digits:3, a CNN on the same 64 pixel features, with a training set: a teacher to distill
    into a smaller student and a model whose channels structured pruning removes (validated here,
    so its page offers both at once)."""
    from jobs import services as job_services
    from jobs.models import Job
    from registry.models import ModelVersion

    module, accuracy = train_digits_cnn(data, flat=True)
    out(f"  digits 3: CNN 16/32 channels, test accuracy {accuracy:.1%} (distill or prune_structured it)")
    _register(
        services,
        uploads,
        export_onnx(module, tmp / "v3.onnx"),
        model,
        "3",
        admin,
        {
            "framework": "torch",
            "architecture": "cnn-16-32",
            "test_accuracy": round(accuracy, 4),
            "trained_on": "sklearn.datasets.load_digits (80% split, seed 0)",
        },
        ["demo", "onnx"],
    )
    version = ModelVersion.objects.get(model=model, version="3")
    incoming = uploads.incoming_copy(save_npz(tmp / "digits-train.npz", x=data.train_x, labels=data.train_y))
    try:
        services.dataset_attach(
            version=version, name="digits-train", kind="training", incoming=incoming, created_by=admin
        )
    finally:
        incoming.path.unlink(missing_ok=True)
    out(f"  dataset digits-train (training, {len(data.train_x)} rows) attached")
    for job in Job.objects.filter(version=version, kind="validate", status=Job.Status.QUEUED):
        job_services.job_run(job_id=job.id, worker_host="demo")


def _queue_first_jobs(model, admin, out):
    """Validate digits:1 here and queue what a newcomer should see within a minute: a static
    int8 variant and benchmarks of both on the cpu target (the worker runs them)."""
    from jobs import services as job_services
    from jobs.models import Job
    from registry.models import HardwareTarget, ModelVersion

    if Job.objects.filter(version__model=model, kind__in=["compress", "benchmark"]).exists():
        return
    version = ModelVersion.objects.get(model=model, version="1")
    for job in Job.objects.filter(version=version, kind="validate", status=Job.Status.QUEUED):
        job_services.job_run(job_id=job.id, worker_host="demo")
    version.refresh_from_db()
    if version.status != ModelVersion.Status.READY:
        out(f"  digits 1 is {version.status} ({version.status_detail}); no jobs queued")
        return
    cpu = HardwareTarget.objects.get(slug="cpu")
    measure = {"batch_sizes": [1, 8, 32]}
    benchmark = job_services.job_create(kind="benchmark", version=version, target=cpu, params=measure, created_by=admin)
    compress = job_services.job_create(
        kind="compress",
        version=version,
        target=cpu,
        created_by=admin,
        params={"method": "static_int8", "then_benchmark": measure},
    )
    out(
        f"  queued benchmark job {benchmark.id} of digits:1 and compress job {compress.id} (int8 static, then a "
        "benchmark) on cpu"
    )


DEMO_ENDPOINT = "digits-demo"


def demo_endpoint_file():
    """Where the demo endpoint's token is kept for `manage.py serve` (Berth stores only hashes)."""
    from django.conf import settings

    return Path(settings.VAR_DIR) / "demo-endpoint.json"


def demo_serving_credentials():
    """(demo {endpoint, token, model}, reissued) for the demo's serving runtime, or (None, False)
    when the demo has no endpoint. The demo owns its endpoint's token: if the stored one no longer
    matches (New token was pressed on the page) or was lost, a new one is issued and stored, so a
    rotation never stops a later `make run`."""
    import json
    import os

    from monitoring import services as monitoring_services
    from monitoring.models import Endpoint

    endpoint = Endpoint.objects.filter(name=DEMO_ENDPOINT).first()
    if endpoint is None:
        return None, False
    path = demo_endpoint_file()
    try:
        demo = json.loads(path.read_text())
    except (OSError, ValueError):
        demo = {}
    if isinstance(demo.get("token"), str) and endpoint.token_hash == monitoring_services.token_hash(demo["token"]):
        return demo, False  # the current token (a replaced one in its grace period would stop working later)
    demo = {
        "endpoint": DEMO_ENDPOINT,
        "token": monitoring_services.endpoint_rotate_token(endpoint=endpoint),
        "model": endpoint.model.name,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(demo))
    os.chmod(path, 0o600)
    return demo, True


def _demo_endpoint(model, admin, out):
    """digits-demo serving digits:1, for the demo's serving runtime and traffic."""
    import json
    import os

    from monitoring import services as monitoring_services
    from monitoring.models import Endpoint
    from registry.models import HardwareTarget, ModelVersion

    version = ModelVersion.objects.get(model=model, version="1")
    if version.status != ModelVersion.Status.READY:
        return
    endpoint = Endpoint.objects.filter(name=DEMO_ENDPOINT).first()
    token = None
    if endpoint is None:
        endpoint, token = monitoring_services.endpoint_create(
            name=DEMO_ENDPOINT,
            model=model,
            target=HardwareTarget.objects.get(slug="cpu"),
            created_by=admin,
            description="The demo's endpoint: make run serves it on port 8081 and sends it traffic.",
        )
        monitoring_services.deploy(endpoint=endpoint, version=version, weight=100, user=admin)
        out(f"  endpoint {DEMO_ENDPOINT} created, serving digits:1")
    if not endpoint.alert_rules.exists():
        _demo_alert_rules(endpoint, admin)
        out(
            "  alert rules on it: drift on half the features (2 min), error rate above 5 %, p95 above 50 ms; "
            "e-mails land in var/mail/"
        )
    elif not demo_endpoint_file().exists():
        token = monitoring_services.endpoint_rotate_token(endpoint=endpoint)
    if token:
        path = demo_endpoint_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"endpoint": DEMO_ENDPOINT, "token": token, "model": model.name}))
        os.chmod(path, 0o600)


def _demo_alert_rules(endpoint, admin):
    """The rules the demo's drift phase trips (and resolves once the phase ends)."""
    from monitoring import alerts

    oncall = "oncall@example.com"
    alerts.rule_create(
        endpoint=endpoint, metric="drift", threshold=50, window_minutes=2, min_requests=200, emails=oncall, user=admin
    )
    alerts.rule_create(endpoint=endpoint, metric="error_rate", threshold=5, window_minutes=5, emails=oncall, user=admin)
    # Not a benchmark-gap rule: the demo MLP runs in microseconds, so its request latency is all
    # HTTP and JSON, hundreds of times its session.run benchmark.
    alerts.rule_create(
        endpoint=endpoint, metric="p95_latency", threshold=50, window_minutes=5, emails=oncall, user=admin
    )


def _register(services, uploads, path, model, version, user, metadata, tags):
    incoming = uploads.incoming_copy(path)
    try:
        services.version_register(
            model_name=model.name, version=version, artifact=incoming, created_by=user, metadata=metadata, tags=tags
        )
    finally:
        incoming.path.unlink(missing_ok=True)
