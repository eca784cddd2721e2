"""distill and prune_structured through a real Celery worker: children with their recipes, the
loss curve on the job page, and a cancelled distillation that leaves nothing."""

import pytest

from jobs.models import Job
from registry.models import ModelVersion
from tests.conftest import wait_for
from tests.integration.test_pipeline import finished, start

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def training_set(engineer_api, digits_version, tmp_path):
    from dashboard.demo import digits_data, save_npz

    data = digits_data()
    path = save_npz(tmp_path / "train.npz", x=data.train_x[:400], labels=data.train_y[:400])
    with open(path, "rb") as f:
        response = engineer_api.post(
            "/api/v1/models/digits/versions/1/datasets/",
            {"file": f, "name": "digits-train", "kind": "training"},
            format="multipart",
        )
    assert response.status_code == 201, response.json()
    return response.json()


def test_distill_and_prune_structured_make_smaller_children(
    celery_worker, engineer_api, engineer, digits_version, training_set
):
    from django.test import Client

    distilled = finished(
        start(
            engineer_api,
            "compress",
            {"method": "distill", "student_width": 16, "epochs": 6, "batch_size": 16, "learning_rate": 0.03},
        )
    )
    assert distilled.status == "succeeded", distilled.error
    child = ModelVersion.objects.get(pk=distilled.output_version_id)
    assert child.version == "1-distilled-mlp16" and child.parent == digits_version and child.status == "ready"
    recipe = child.recipe
    assert recipe["method"] == "distill" and recipe["temperature"] == 4.0 and recipe["alpha"] == 0.5
    assert recipe["epochs"] == 6 and len(recipe["loss_curve"]) == 6 and recipe["learning_rate"] == 0.03
    assert recipe["datasets"]["training_dataset"]["sha256"] == training_set["sha256"]
    assert recipe["measured"]["student_accuracy"] > 0.7 and child.size_bytes < digits_version.size_bytes
    assert distilled.result["accuracy_delta"] == recipe["measured"]["accuracy_delta"]

    pruned = finished(start(engineer_api, "compress", {"method": "prune_structured", "finetune_epochs": 1}))
    assert pruned.status == "succeeded", pruned.error
    child = ModelVersion.objects.get(pk=pruned.output_version_id)
    assert child.version == "1-pruned50ch" and child.size_bytes < digits_version.size_bytes
    assert all(layer["sparsity"] == 0.5 for layer in child.recipe["layers"].values())
    assert set(child.recipe["accuracy"]) == {"before", "after_pruning", "after_fine_tuning", "on"}

    client = Client()
    client.force_login(engineer)
    page = client.get(f"/jobs/{pruned.id}/").content.decode()
    assert 'id="chart-loss"' in page and "fine-tuning" in page


def test_cancelling_a_distillation_stops_it_and_leaves_no_child(
    celery_worker, engineer_api, digits_version, training_set
):
    before = ModelVersion.objects.count()
    job_id = start(engineer_api, "compress", {"method": "distill", "epochs": 500, "batch_size": 8})
    wait_for(
        lambda: "distillation: epoch" in (Job.objects.get(id=job_id).message or ""),
        timeout=120,
        message="the distillation to train",
    )
    response = engineer_api.post(f"/api/v1/jobs/{job_id}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    wait_for(
        lambda: "Stopped: the job was cancelled" in Job.objects.get(id=job_id).log,
        timeout=30,
        message="the worker to stop the distillation",
    )
    job = Job.objects.get(id=job_id)
    assert job.status == "cancelled" and job.output_version_id is None
    assert ModelVersion.objects.count() == before
