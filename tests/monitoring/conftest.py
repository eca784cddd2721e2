import pytest

from monitoring import services
from registry.models import Dataset, HardwareTarget, ModelVersion, ReferenceProfile
from tests.conftest import register


@pytest.fixture
def endpoint(engineer, engineer_api, onnx_file, other_onnx_file):
    """digits-prod on cpu with digits:1 (ready) deployed at 100 %, and digits:2 ready beside it.
    Its token is on ``endpoint.token``."""
    from jobs import services as job_services
    from jobs.models import Job

    cpu = HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})[0]
    for path, version in ((onnx_file, "1"), (other_onnx_file, "2")):
        assert register(engineer_api, path, version=version).status_code == 201
    for job in Job.objects.filter(kind="validate"):
        job_services.job_run(job_id=job.id, worker_host="test")
    v1 = ModelVersion.objects.get(version="1")
    endpoint, token = services.endpoint_create(name="digits-prod", model=v1.model, target=cpu, created_by=engineer)
    services.deploy(endpoint=endpoint, version=v1, weight=100, user=engineer)
    endpoint.token = token
    return endpoint


X_MEAN_EDGES = [0.2, 0.4, 0.6]
X_MEAN_REFERENCE = [250, 250, 250, 250]


def reference_x_mean(version, *, edges=X_MEAN_EDGES, counts=X_MEAN_REFERENCE, rows=1000):
    """A reference dataset of ``version``'s model, and ``version``'s profile of the mean of input x
    on it: ``counts`` on ``edges`` (uniform on four bins by default). Returns the dataset."""
    dataset = Dataset.objects.create(
        model=version.model,
        name="ref",
        kind="reference",
        file="x.npz",
        sha256="0" * 64,
        size_bytes=1,
        rows=rows,
        arrays={},
    )
    profile_x_mean(version, dataset, edges=edges, counts=counts)
    return dataset


def profile_x_mean(version, dataset, *, edges=X_MEAN_EDGES, counts=X_MEAN_REFERENCE):
    """``version``'s profile of the mean of input x on ``dataset``: ``counts`` on ``edges``."""
    return ReferenceProfile.objects.create(
        version=version, dataset=dataset, name="x.mean", kind="mean", tensor="x", edges=edges, counts=counts
    )


def profile_prediction(version, dataset, *, counts):
    """``version``'s profile of its predicted class (one count per class) on ``dataset``."""
    return ReferenceProfile.objects.create(
        version=version,
        dataset=dataset,
        name="prediction",
        kind="class",
        tensor="probs",
        classes=len(counts),
        counts=counts,
    )


@pytest.fixture
def profiled(endpoint):
    """Version 1 with reference profiles: x.mean on four bins (uniform) and a 3-class prediction."""
    version = ModelVersion.objects.get(version="1")
    profile_prediction(version, reference_x_mean(version), counts=[300, 300, 400])
    return endpoint


@pytest.fixture
def runtime(client, endpoint):
    """An API client authenticated as the endpoint's serving runtime."""
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {endpoint.token}")
    return api
