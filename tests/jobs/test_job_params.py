"""Starting convert / compress / benchmark jobs: parameters are checked before anything is
queued, and a bad request names the field at fault and creates nothing."""

import pytest

from jobs.models import Job
from registry.models import Dataset, HardwareTarget

pytestmark = pytest.mark.django_db


def start(client, kind, params, version="digits:1", target="cpu"):
    body = {"kind": kind, "version": version, "params": params}
    if target is not None:
        body["target"] = target
    return client.post("/api/v1/jobs/", body, format="json")


def test_it_queues_a_compress_job_on_the_targets_queue(engineer_api, digits_version):
    response = start(engineer_api, "compress", {"method": "static_int8"})
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["queue"] == "target.cpu" and body["status"] == "queued"
    assert body["params"]["calibration_dataset"] == "digits-calibration"
    assert body["params"]["per_channel"] is True and body["params"]["calibration_method"] == "minmax"
    assert "Waiting for a worker on target.cpu" in body["waiting_for"]


def test_it_fills_in_benchmark_defaults(engineer_api, digits_version):
    body = start(engineer_api, "benchmark", {"batch_sizes": [1, 8, 32]}).json()
    assert body["params"] == {
        "batch_sizes": [1, 8, 32],
        "threads": [None],
        "warmup": 5,
        "min_runs": 30,
        "min_seconds": 1.0,
        "max_seconds": 60.0,
        "measure_memory": True,
        "io": "host",
        "cuda_graph": False,
        "evaluation_dataset": "digits-test",
    }


def test_device_io_needs_a_gpu_target(engineer_api, digits_version):
    response = start(engineer_api, "benchmark", {"io": "device"})
    assert response.status_code == 400
    assert "io=device keeps tensors on a GPU" in str(response.json()) and "target cpu" in str(response.json())
    response = start(engineer_api, "benchmark", {"io": "gpu"})
    assert response.status_code == 400 and "io must be one of host, device" in str(response.json())


def test_a_provider_every_live_worker_proved_unusable_is_refused_before_queueing(engineer_api, digits_version):
    from jobs import services
    from jobs.models import Job
    from registry.models import HardwareTarget

    HardwareTarget.objects.create(
        slug="h100", name="H100", device="cuda", execution_provider="TensorrtExecutionProvider"
    )
    services.worker_report(
        hostname="gpu-host-1",
        queues=["target.h100"],
        facts={
            "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
            "provider_problems": {"TensorrtExecutionProvider": "libnvinfer.so.10: cannot open shared object file"},
        },
    )
    before = Job.objects.count()
    response = start(engineer_api, "benchmark", {}, target="h100")
    assert response.status_code == 400, response.json()
    message = str(response.json())
    assert "No live worker on target.h100 can use TensorrtExecutionProvider" in message
    assert "gpu-host-1: libnvinfer.so.10" in message
    assert Job.objects.count() == before


@pytest.mark.parametrize(
    "kind,params,field,message",
    [
        ("compress", {"method": "int4-magic"}, "params.method", "must be one of"),
        ("compress", {}, "params.method", "must be one of"),
        ("compress", {"method": "prune", "sparsity": 1.5}, "params.sparsity", "from 0.01 to 0.99"),
        ("compress", {"method": "fp16", "per_channel": True}, "params.per_channel", "Unknown parameter"),
        ("compress", {"method": "static_int8", "calibration_method": "guess"}, "params.calibration_method", "one of"),
        (
            "compress",
            {"method": "static_int8", "calibration_dataset": "nope"},
            "params.calibration_dataset",
            "no dataset named",
        ),
        ("compress", {"method": "autotune", "budget": {"speed": 2}}, "params.budget", "budget is an object"),
        ("compress", {"method": "dynamic_int8", "op_types": ["Teleport"]}, "params.op_types", "may contain only"),
        ("compress", {"method": "int4_weights", "block_size": 20}, "params.block_size", "one of 16, 32, 64, 128"),
        ("benchmark", {"batch_sizes": [0]}, "params.batch_sizes", "from 1 to 4096"),
        ("benchmark", {"batch_sizes": []}, "params.batch_sizes", "list of 1 to 8"),
        ("benchmark", {"threads": ["two"]}, "params.threads", "whole number"),
        ("benchmark", {"min_seconds": -1}, "params.min_seconds", "from 0 to 600"),
        ("benchmark", {"iterations": 5}, "params.iterations", "Unknown parameter"),
        ("convert", {}, "version", "already ONNX"),
    ],
)
def test_it_refuses_bad_parameters(engineer_api, digits_version, kind, params, field, message):
    response = start(engineer_api, kind, params)
    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"], response.json()
    assert message in response.json()["errors"][field][0]
    assert not Job.objects.exclude(kind="validate").exists()


def test_static_int8_needs_a_calibration_set(engineer_api, digits_version):
    Dataset.objects.filter(kind="calibration").delete()
    response = start(engineer_api, "compress", {"method": "static_int8"})
    assert response.status_code == 400
    assert "no calibration dataset" in response.json()["errors"]["params.calibration_dataset"][0]
    assert not Job.objects.filter(kind="compress").exists()


def test_jobs_need_a_usable_target(engineer_api, digits_version):
    assert start(engineer_api, "benchmark", {}, target=None).json()["errors"]["target"]
    assert start(engineer_api, "benchmark", {}, target="gpu-a100").status_code == 404
    HardwareTarget.objects.create(slug="broken", name="broken", device="cuda", execution_provider="")
    response = start(engineer_api, "benchmark", {}, target="broken")
    assert response.status_code == 400 and "no usable execution provider" in response.json()["detail"]
    HardwareTarget.objects.create(slug="off", name="off", active=False)
    assert "inactive" in start(engineer_api, "benchmark", {}, target="off").json()["detail"]
    assert not Job.objects.exclude(kind="validate").exists()


def test_only_ready_onnx_versions_are_compressed_or_benchmarked(engineer_api, digits_version):
    digits_version.status = "invalid"
    digits_version.save()
    response = start(engineer_api, "benchmark", {})
    assert response.status_code == 400 and "only ready versions" in response.json()["detail"]


def test_viewers_cannot_start_jobs(viewer_api, digits_version):
    assert start(viewer_api, "benchmark", {}).status_code == 403


@pytest.fixture
def training_set(engineer_api, digits_version, tmp_path):
    import numpy as np

    from dashboard.demo import save_npz

    def attach(name, **arrays):
        with open(save_npz(tmp_path / f"{name}.npz", **arrays), "rb") as f:
            response = engineer_api.post(
                "/api/v1/models/digits/versions/1/datasets/",
                {"file": f, "name": name, "kind": "training"},
                format="multipart",
            )
        assert response.status_code == 201, response.json()

    attach("unlabelled", x=np.zeros((20, 64), dtype=np.float32))
    return attach


@pytest.mark.parametrize(
    "params,field,message",
    [
        ({"method": "distill", "student": "cnn"}, "params.student", "cnn student takes image inputs"),
        ({"method": "distill", "student": "transformer"}, "params.student", "must be one of"),
        ({"method": "distill", "temperature": 0}, "params.temperature", "from 0.5 to 50"),
        ({"method": "distill", "training_dataset": "digits-test"}, "params.training_dataset", None),
        ({"method": "prune_structured"}, "params.training_dataset", "no 'labels' array"),
        ({"method": "prune_structured", "channel_sparsity": 1}, "params.channel_sparsity", "from 0.05 to 0.95"),
    ],
)
def test_training_methods_refuse_bad_parameters(engineer_api, digits_version, training_set, params, field, message):
    response = start(engineer_api, "compress", params)
    if message is None:  # an evaluation set may train too: it is accepted by name
        assert response.status_code == 202, response.json()
        return
    assert response.status_code == 400, response.json()
    assert message in response.json()["errors"][field][0]
    assert not Job.objects.filter(kind="compress").exists()


def test_training_methods_need_a_training_set_that_fits(engineer_api, digits_version, tmp_path):
    import numpy as np

    from dashboard.demo import save_npz

    response = start(engineer_api, "compress", {"method": "distill"})
    assert "no training dataset" in response.json()["errors"]["params.training_dataset"][0]
    with open(save_npz(tmp_path / "images.npz", x=np.zeros((20, 1, 8, 8), dtype=np.float32)), "rb") as f:
        # attached through another version, whose input is an image
        from registry.models import Dataset

        Dataset.objects.create(
            model=digits_version.model,
            name="images",
            kind="training",
            file="datasets/x.npz",
            sha256="0" * 64,
            size_bytes=f.seek(0, 2),
            rows=20,
            arrays={"x": {"dtype": "float32", "shape": [20, 1, 8, 8]}},
        )
    response = start(engineer_api, "compress", {"method": "distill"})
    assert (
        "has shape [20, 1, 8, 8], but digits:1 takes ['batch', 64]"
        in response.json()["errors"]["params.training_dataset"][0]
    )
    assert not Job.objects.filter(kind="compress").exists()


def test_it_fills_in_request_benchmark_defaults(engineer_api, digits_version):
    body = start(engineer_api, "benchmark", {"measure": "requests", "batch_sizes": [1, 8]}).json()
    assert body["params"] == {
        "measure": "requests",
        "encoding": "json",
        "batch_sizes": [1, 8],
        "warmup": 5,
        "min_runs": 30,
        "min_seconds": 1.0,
        "max_seconds": 60.0,
    }
    assert body["queue"] == "target.cpu"


def test_a_request_benchmark_refuses_an_unknown_encoding_and_creates_nothing(engineer_api, digits_version):
    before = Job.objects.count()
    response = start(engineer_api, "benchmark", {"measure": "requests", "encoding": "protobuf"})
    assert response.status_code == 400, response.json()
    assert response.json()["errors"]["params.encoding"] == [
        "encoding must be one of json, binary, grpc, not 'protobuf'."
    ]
    response = start(engineer_api, "benchmark", {"measure": "end_to_end"})
    assert response.status_code == 400 and "measure must be one of inference, requests" in str(response.json())
    assert Job.objects.count() == before


def test_a_request_benchmark_refuses_options_of_the_model_alone(engineer_api, digits_version):
    response = start(engineer_api, "benchmark", {"measure": "requests", "threads": [2]})
    assert response.status_code == 400
    assert "threads applies to measure=inference only" in str(response.json()["errors"]["params.threads"])
    response = start(engineer_api, "benchmark", {"encoding": "grpc"})
    assert response.status_code == 400
    assert "encoding applies to measure=requests only" in str(response.json()["errors"]["params.encoding"])


def test_the_benchmarks_api_refuses_an_unknown_scope_or_encoding(engineer_api, digits_version):
    response = engineer_api.get("/api/v1/benchmarks/?scope=end_to_end")
    assert response.status_code == 400
    assert response.json()["errors"]["scope"] == ["scope must be one of session_run, request, not 'end_to_end'."]
    response = engineer_api.get("/api/v1/benchmarks/?scope=request&encoding=xml")
    assert response.status_code == 400 and "encoding must be one of json, binary, grpc" in str(response.json())
