"""Quality that fits the task, end to end with real jobs: a transformer-like sentence-embedding
model (INT64 token inputs, no labels) is compared on cosine to its fp32 parent, and a regression
MLP on scikit-learn's bundled diabetes data on relative error."""

import numpy as np
import pytest

from jobs import services as job_services
from jobs.comparison import benchmark_comparison, comparison_payload
from jobs.models import BenchmarkResult, Job
from registry.models import HardwareTarget, Model
from tests.conftest import register

pytestmark = pytest.mark.django_db

QUICK = {"batch_sizes": [8], "min_runs": 20, "min_seconds": 0.2, "max_seconds": 5, "measure_memory": False}
VOCAB, WIDTH, HIDDEN, LENGTH = 200, 64, 256, 16


def embedding_onnx(path, seed=0):
    """One self-attention block over token embeddings, a feed-forward layer and masked mean
    pooling: inputs input_ids and attention_mask (int64, [batch, tokens]), output embedding."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32), name)

    initializers = [
        weight("table", VOCAB, WIDTH),
        weight("wq", WIDTH, WIDTH),
        weight("wk", WIDTH, WIDTH),
        weight("wv", WIDTH, WIDTH),
        weight("w1", WIDTH, HIDDEN),
        weight("w2", HIDDEN, WIDTH),
        numpy_helper.from_array(np.array(1 / np.sqrt(WIDTH), np.float32), "scale"),
        numpy_helper.from_array(np.array([-1], np.int64), "last"),
    ]
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["x"]),
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("MatMul", ["x", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Mul", ["scores", "scale"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["attention"], axis=-1),
        helper.make_node("MatMul", ["attention", "v"], ["mixed"]),
        helper.make_node("Add", ["x", "mixed"], ["h"]),
        helper.make_node("MatMul", ["h", "w1"], ["up"]),
        helper.make_node("Relu", ["up"], ["act"]),
        helper.make_node("MatMul", ["act", "w2"], ["down"]),
        helper.make_node("Add", ["h", "down"], ["out"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
        helper.make_node("Mul", ["out", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "one"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "one"], ["count"], keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["embedding"]),
    ]
    initializers.append(numpy_helper.from_array(np.array([1], np.int64), "one"))
    graph = helper.make_graph(
        nodes,
        "tiny-sentence-encoder",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", LENGTH]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", LENGTH]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", WIDTH])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def tokens(count, seed=1):
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(count, LENGTH), dtype=np.int64)
    lengths = rng.integers(4, LENGTH + 1, size=count)
    mask = (np.arange(LENGTH)[None, :] < lengths[:, None]).astype(np.int64)
    return {"input_ids": ids * mask, "attention_mask": mask}


def run(kind, version, params):
    cpu = HardwareTarget.objects.get(slug="cpu")
    job = job_services.job_create(kind=kind, version=version, target=cpu, params=params)
    job_services.job_run(job_id=job.id, worker_host="test")
    job = Job.objects.get(pk=job.pk)
    assert job.status == "succeeded", job.error
    return job


def attach(api, model, version, path, name):
    with open(path, "rb") as f:
        response = api.post(
            f"/api/v1/models/{model}/versions/{version}/datasets/",
            {"file": f, "name": name, "kind": "evaluation"},
            format="multipart",
        )
    assert response.status_code == 201, response.json()


def validated(api, path, model, task):
    response = register(api, path, model=model, version="1", task=task)
    assert response.status_code == 201, response.json()
    run_validate = Job.objects.get(version_id=response.json()["id"], kind="validate")
    job_services.job_run(job_id=run_validate.id, worker_host="test")
    version = Model.objects.get(name=model).versions.get(version="1")
    assert version.status == "ready", version.status_detail
    return version


def test_an_embedding_model_is_recommended_on_cosine(engineer_api, engineer, tmp_path):
    HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})
    fp32 = validated(engineer_api, embedding_onnx(tmp_path / "encoder.onnx"), "encoder", "embedding")
    np.savez(tmp_path / "sentences.npz", **tokens(96))
    attach(engineer_api, "encoder", "1", tmp_path / "sentences.npz", "sentences")
    int8 = run("compress", fp32, {"method": "dynamic_int8"}).output_version
    for version in (fp32, int8):
        run("benchmark", version, {**QUICK, "evaluation_dataset": "sentences"})

    stored = BenchmarkResult.objects.get(version=int8).quality
    assert stored["task"] == "embedding" and stored["evaluation_set"] is None and stored["reference"] == "encoder:1"
    cosine = stored["metrics"]["cosine"]
    assert cosine["samples"] == 96 and cosine["interval"][0] <= cosine["value"] <= cosine["interval"][1]
    assert "accuracy" not in stored["metrics"]
    from django.test import Client

    page = Client()
    page.force_login(engineer)
    html = page.get(int8.get_absolute_url()).content.decode()
    assert "Quality, against encoder:1: " in html and f"cosine {cosine['value']:.4g}" in html

    comparison = benchmark_comparison(model_name="encoder", batch_size=8, limits={"min_cosine": 0.99})
    (recommendation,) = comparison.recommendations
    decision = recommendation.decision
    assert decision.measure.key == "cosine" and decision.reference.name == "1"
    assert decision.limit_text == "cosine ≥ 0.99"
    rows = {r.version.version: r for r in comparison.rows}
    judged = rows[int8.version].judgement
    assert judged.known and judged.value == pytest.approx(cosine["value"])
    assert judged.qualifies == (cosine["value"] >= 0.99)
    fastest = min((r for r in rows.values() if r.judgement.qualifies), key=lambda r: r.result.p95_ms)
    # The fastest qualifying variant, unless another is within latency noise and of better quality.
    assert recommendation.choice is fastest or "within noise of each other" in recommendation.reason
    assert "cosine" in recommendation.reason and "reference" in recommendation.reason
    payload = comparison_payload(comparison)
    assert payload["task"] == "embedding" and payload["recommendations"][0]["measure"] == "cosine"
    by_version = {r["version"]: r for r in payload["rows"]}
    assert by_version[int8.version]["quality_measure"] == "cosine"
    assert by_version[int8.version]["quality_value"] == pytest.approx(cosine["value"])
    # Too tight a limit excludes the int8 variant and says why, in the task's terms.
    strict = benchmark_comparison(model_name="encoder", batch_size=8, limits={"min_cosine": 0.999999})
    excluded = dict(strict.recommendations[0].decision.excluded)
    assert excluded[int8.version].endswith("cosine ≥ 0.999999 ✗") and strict.recommendations[0].choice.version == fp32


def test_a_regression_model_is_compared_on_relative_error(engineer_api, tmp_path):
    import torch
    from sklearn.datasets import load_diabetes

    from dashboard.demo import export_onnx

    x, y = load_diabetes(return_X_y=True)
    x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    optimiser = torch.optim.Adam(mlp.parameters(), lr=0.01)
    for _ in range(200):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(mlp(torch.from_numpy(x[:350])).squeeze(1), torch.from_numpy(y[:350]))
        loss.backward()
        optimiser.step()
    HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})
    fp32 = validated(
        engineer_api,
        export_onnx(mlp.eval(), tmp_path / "diabetes.onnx", example_shape=(2, 10)),
        "diabetes",
        "regression",
    )
    np.savez(tmp_path / "held-out.npz", x=x[350:])
    attach(engineer_api, "diabetes", "1", tmp_path / "held-out.npz", "held-out")
    fp16 = run("compress", fp32, {"method": "fp16"}).output_version
    for version in (fp32, fp16):
        run("benchmark", version, {**QUICK, "evaluation_dataset": "held-out"})

    comparison = benchmark_comparison(model_name="diabetes", batch_size=8)
    (recommendation,) = comparison.recommendations
    decision = recommendation.decision
    assert decision.measure.key == "relative_error" and decision.limit_text == "relative error ≤ 1.00 %"
    judged = next(r for r in comparison.rows if r.version == fp16).judgement
    assert judged.known and 0 < judged.value < 0.01 and judged.qualifies  # fp16 of a small MLP: far below 1 %
    assert recommendation.choice is not None and "relative error" in recommendation.reason


def test_an_encoders_int4_weights_child_records_its_recipe_and_is_judged_on_cosine(engineer_api, tmp_path):
    HardwareTarget.objects.get_or_create(slug="cpu", defaults={"name": "CPU"})
    fp32 = validated(engineer_api, embedding_onnx(tmp_path / "encoder.onnx"), "encoder", "embedding")
    np.savez(tmp_path / "sentences.npz", **tokens(64))
    attach(engineer_api, "encoder", "1", tmp_path / "sentences.npz", "sentences")
    int4 = run("compress", fp32, {"method": "int4_weights", "block_size": 64}).output_version
    run("benchmark", int4, {**QUICK, "evaluation_dataset": "sentences"})

    assert int4.parent == fp32 and int4.version == "1-int4-b64"
    assert int4.recipe["block_size"] == 64 and int4.recipe["quantized_matmuls"] == 5  # wq, wk, wv, w1, w2
    assert int4.size_bytes < 0.4 * fp32.size_bytes  # the token table (Gather) stays float32
    cosine = BenchmarkResult.objects.get(version=int4).quality["metrics"]["cosine"]
    assert cosine["samples"] == 64 and 0.9 < cosine["value"] <= 1.0
