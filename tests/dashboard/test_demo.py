"""`manage.py demo`, as `make run` runs it."""

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from jobs.models import Job
from registry.models import Dataset, HardwareTarget, ModelVersion

pytestmark = pytest.mark.django_db


def test_the_demo_loads_real_models_once(settings, tmp_path):
    import json

    from monitoring.models import Deployment

    settings.VAR_DIR = tmp_path
    call_command("demo")
    versions = {v.version: v for v in ModelVersion.objects.filter(model__name="digits")}
    assert set(versions) == {"1", "2", "3"}
    assert versions["1"].format == "onnx" and versions["2"].format == "torchscript"
    assert versions["1"].metadata["test_accuracy"] > 0.9  # measured on held-out digits
    assert {d.kind for d in Dataset.objects.all()} == {"evaluation", "calibration", "reference", "training"}
    assert Dataset.objects.get(kind="evaluation").has_labels
    assert HardwareTarget.objects.get(slug="cpu").execution_provider == "CPUExecutionProvider"
    assert {u.username for u in User.objects.all()} == {"admin", "engineer", "viewer"}
    assert Job.objects.filter(kind="validate").count() == 3
    # digits:3, the CNN to distill or prune, is ready with its training set
    assert versions["3"].metadata["architecture"] == "cnn-16-32"
    assert ModelVersion.objects.get(pk=versions["3"].pk).status == "ready"
    assert Dataset.objects.get(kind="training").has_labels
    # digits:1 is validated on the spot, so that a compression and benchmarks wait for the worker.
    assert ModelVersion.objects.get(pk=versions["1"].pk).status == "ready"
    queued = Job.objects.filter(status="queued").exclude(kind="validate")
    assert {(j.kind, j.queue) for j in queued} == {
        ("benchmark", "target.cpu"),
        ("compress", "target.cpu"),
        ("profile", "default"),
    }
    assert queued.get(kind="compress").params["then_benchmark"]["batch_sizes"] == [1, 8, 32]
    # the demo endpoint serves digits:1; its token waits in var/ for `manage.py serve`
    deployment = Deployment.objects.get(endpoint__name="digits-demo", state="active")
    assert (deployment.version.version, deployment.weight) == ("1", 100)
    saved = json.loads((tmp_path / "demo-endpoint.json").read_text())
    assert saved["endpoint"] == "digits-demo" and saved["token"][:8] == deployment.endpoint.token_prefix
    # with the rules the traffic generator's drift phase trips
    rules = deployment.endpoint.alert_rules.all()
    assert {(r.metric, r.threshold) for r in rules} == {("drift", 50), ("error_rate", 5), ("p95_latency", 50)}

    call_command("demo")
    assert ModelVersion.objects.count() == 3 and Dataset.objects.count() == 4 and User.objects.count() == 3
    assert Job.objects.count() == 6 and Deployment.objects.count() == 1
