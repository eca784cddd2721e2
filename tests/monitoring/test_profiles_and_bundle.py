"""Reference profiles for drift (a job on the real digits model) and the deployment bundle."""

import io
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from berth.core.drift import PROFILE_QUANTILES
from jobs import services as job_services
from jobs.models import Job
from monitoring import services
from registry.models import HardwareTarget, ReferenceProfile
from tests.conftest import sha256_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def deployed_digits(digits_version, digits_reference, engineer):
    """digits:1 with a reference dataset, deployed on digits-prod."""
    endpoint, token = services.endpoint_create(
        name="digits-prod", model=digits_version.model, target=HardwareTarget.objects.get(slug="cpu")
    )
    services.deploy(endpoint=endpoint, version=digits_version, weight=100, user=engineer)
    endpoint.token = token
    return endpoint, digits_reference


def test_deploying_queues_a_profile_that_bins_the_reference_data(deployed_digits, digits_version):
    endpoint, data = deployed_digits
    job = Job.objects.get(kind="profile", version=digits_version)
    job_services.job_run(job_id=job.id, worker_host="test")
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    profiles = {p.name: p for p in ReferenceProfile.objects.filter(version=digits_version)}
    assert set(profiles) == {"x.mean", "x.std", "prediction"}
    mean = profiles["x.mean"]
    assert len(mean.edges) == len(PROFILE_QUANTILES) + 6 and mean.edges == sorted(mean.edges)
    assert sum(mean.counts) == len(data.train_x)
    # the tail quantiles: each open end bin holds 1 % of the reference rows, a middle bin a tenth
    rows = len(data.train_x)
    assert mean.counts[0] <= 0.011 * rows and mean.counts[-1] <= 0.011 * rows
    assert abs(mean.counts[len(mean.counts) // 2] - rows / 10) <= rows * 0.02
    expected = np.bincount(
        np.searchsorted(mean.edges, data.train_x.mean(axis=1), side="left"), minlength=len(mean.edges) + 1
    )
    assert mean.counts == expected.tolist()
    prediction = profiles["prediction"]
    assert prediction.kind == "class" and prediction.classes == 10 and sum(prediction.counts) == len(data.train_x)
    # a second deployment of the same version queues nothing more
    services.deploy(endpoint=endpoint, version=digits_version, weight=100)
    assert Job.objects.filter(kind="profile").count() == 1


# Imports the runtime from the unpacked bundle alone: the editable install's finder is dropped, so a
# module the bundle lacks (e.g. something of berth.core) fails here as it would in the image.
BUNDLE_IMPORT_CHECK = """import os, sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
sys.path[:] = [os.getcwd()] + [p for p in sys.path if "site-packages" in p or "lib/python" in p]
import serving.cli, serving.app, serving.telemetry, berth.core.stats
ours = [m for m in sys.modules.values() if getattr(m, "__name__", "").split(".")[0] in ("serving", "berth")]
print(all(m.__file__.startswith(os.getcwd()) for m in ours), "monitoring" in sys.modules)
"""


def test_the_bundle_serves_the_split_offline(deployed_digits, digits_version, digits_files, viewer_api, tmp_path):
    response = viewer_api.get("/api/v1/endpoints/digits-prod/bundle/")
    assert response.status_code == 200 and response["Content-Type"] == "application/gzip"
    archive = tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content)), mode="r:gz")
    names = set(archive.getnames())
    sha = sha256_of(digits_files["onnx"])
    assert {
        "bundle/spec.json",
        f"bundle/artifacts/{sha}.onnx",
        "Dockerfile",
        "requirements.txt",
        "README.txt",
        "berth/__init__.py",
        "berth/core/stats.py",
        "serving/__init__.py",
    } <= names
    assert not any(name.startswith("monitoring/") for name in names)
    assert all(
        name == "berth/__init__.py" or name.startswith("berth/core/") for name in names if name.startswith("berth/")
    )
    spec = json.load(archive.extractfile("bundle/spec.json"))
    assert spec["telemetry"] is None
    assert spec["deployments"][0]["artifact_url"] == f"artifacts/{sha}.onnx"
    assert archive.extractfile(f"bundle/artifacts/{sha}.onnx").read() == digits_files["onnx"].read_bytes()
    dockerfile = archive.extractfile("Dockerfile").read().decode()
    assert "serving.cli" in dockerfile and "--bundle" in dockerfile
    assert not any(name.startswith(("dashboard/", "registry/", "jobs/")) for name in names)
    archive.extractall(tmp_path / "unpacked", filter="data")
    result = subprocess.run(
        [sys.executable, "-c", BUNDLE_IMPORT_CHECK],
        cwd=tmp_path / "unpacked",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]
