"""jobs.engine.gpu: providers proven by a session, NVML readings, timing modes. The pure parts run
everywhere; the paths that need a CUDA device are skipped here with the reason."""

from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest

from jobs.engine import gpu
from jobs.engine.benchmark import run_benchmark
from jobs.engine.errors import EngineError

MLP_INPUTS = [{"name": "x", "dtype": "float32", "shape": ["batch", 64]}]
FAST = {"min_runs": 30, "min_seconds": 0.05, "max_seconds": 5.0, "measure_memory": False}
HAS_CUDA = "CUDAExecutionProvider" in gpu.usable_providers(gpu.prove_providers())
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="no usable CUDAExecutionProvider on this host")


def test_the_cpu_provider_is_proven_by_a_real_session():
    verdicts = gpu.prove_providers()
    assert verdicts["CPUExecutionProvider"] is None
    assert "CPUExecutionProvider" in gpu.usable_providers(verdicts)


def test_a_listed_provider_whose_libraries_are_missing_is_reported_with_the_reason():
    # The GPU wheel lists TensorRT where its libraries are missing; here the CPU wheel lacks it entirely,
    # which onnxruntime reports the same way a session on a missing library fails: with a reason, no crash.
    verdicts = gpu.prove_providers(["TensorrtExecutionProvider", "CPUExecutionProvider"])
    if "TensorrtExecutionProvider" in ort.get_available_providers() and verdicts["TensorrtExecutionProvider"] is None:
        pytest.skip("TensorRT is really usable on this host")
    assert verdicts["TensorrtExecutionProvider"]  # a non-empty reason
    assert verdicts["CPUExecutionProvider"] is None


def test_timing_modes_are_checked_against_the_provider():
    assert gpu.timing_mode("CPUExecutionProvider").label == "host"
    assert gpu.timing_mode("CUDAExecutionProvider", "device").label == "device"
    assert gpu.timing_mode("CUDAExecutionProvider", "device", cuda_graph=True).label == "device+graph"
    with pytest.raises(EngineError, match="io=device keeps tensors on a GPU"):
        gpu.timing_mode("CPUExecutionProvider", "device")
    with pytest.raises(EngineError, match="needs io=device"):
        gpu.timing_mode("CUDAExecutionProvider", "host", cuda_graph=True)
    with pytest.raises(EngineError, match="CUDAExecutionProvider only"):
        gpu.timing_mode("TensorrtExecutionProvider", "device", cuda_graph=True)
    with pytest.raises(EngineError, match="io must be one of"):
        gpu.timing_mode("CUDAExecutionProvider", "gpu")


def test_a_cuda_graph_is_a_provider_option():
    mode = gpu.timing_mode("CUDAExecutionProvider", "device", cuda_graph=True)
    assert gpu.session_provider_options("CUDAExecutionProvider", {"device_id": 1}, mode) == {
        "device_id": 1,
        "enable_cuda_graph": "1",
    }
    assert gpu.session_provider_options("CPUExecutionProvider", None, gpu.TimingMode()) == {}


def test_process_device_memory_sums_what_nvml_lists_for_that_pid():
    listed = [
        SimpleNamespace(pid=7, usedGpuMemory=1_000),
        SimpleNamespace(pid=8, usedGpuMemory=5_000),
        SimpleNamespace(pid=7, usedGpuMemory=24),
        SimpleNamespace(pid=7, usedGpuMemory=None),
    ]
    assert gpu.process_device_memory(listed, 7) == 1_024
    assert gpu.process_device_memory(listed, 9) is None
    assert gpu.process_device_memory([SimpleNamespace(pid=7, usedGpuMemory=None)], 7) is None


def test_utilization_readings_are_summarised():
    assert gpu.summarise_utilization([10, None, 30, 50]) == {"mean_percent": 30.0, "max_percent": 50.0, "samples": 3}
    assert gpu.summarise_utilization([None, None]) is None


def test_fits_on_gpu_compares_with_the_cards_memory():
    fits, message = gpu.fits_on_gpu(1_700 * 1024 * 1024, 80_000)
    assert fits is True and "2%" in message
    fits, message = gpu.fits_on_gpu(79_000 * 1024 * 1024, 80_000)
    assert fits is False and "does not fit" in message
    assert gpu.fits_on_gpu(None, 80_000)[0] is None
    assert gpu.fits_on_gpu(10, None) == (None, "the worker reported no GPU memory")


def test_without_a_gpu_nvml_says_why_and_reads_nothing():
    nvml = gpu.Nvml()
    if nvml.available:
        pytest.skip("this host has a GPU with NVML")
    assert nvml.reason and nvml.process_memory(1) is None and nvml.utilization() is None
    with gpu.UtilizationSampler(nvml) as sampler:
        pass
    assert sampler.summary is None


def test_a_bound_runner_keeps_inputs_and_outputs_where_it_bound_them(mlp_onnx):
    # The io=device path, exercised on the CPU device (the same IO binding calls the CUDA path makes).
    session = ort.InferenceSession(str(mlp_onnx), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    run = gpu.device_runner(session, {"x": x}, device="cpu")
    run()
    expected = session.run(None, {"x": x})[0]
    binding = session.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output(session.get_outputs()[0].name, "cpu")
    session.run_with_iobinding(binding)
    np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0], expected, rtol=1e-5)


def test_a_cpu_benchmark_records_the_host_timing_mode_and_no_device_memory(mlp_onnx):
    run = run_benchmark(mlp_onnx, inputs=MLP_INPUTS, batch_sizes=(2,), **FAST)
    (m,) = run.measurements
    assert m.timing_mode == "host" and m.device_memory_bytes is None and m.gpu_utilization is None
    assert run.environment["timing_mode"] == "host" and run.environment["nvml"] is None


def test_a_cpu_benchmark_refuses_device_io_before_measuring(mlp_onnx):
    with pytest.raises(EngineError, match="io=device keeps tensors on a GPU"):
        run_benchmark(mlp_onnx, inputs=MLP_INPUTS, io="device", **FAST)


@needs_cuda
def test_device_io_on_cuda_records_device_memory_and_is_not_slower_than_host_io(mlp_onnx):
    host = run_benchmark(
        mlp_onnx,
        inputs=MLP_INPUTS,
        provider="CUDAExecutionProvider",
        batch_sizes=(32,),
        **{**FAST, "measure_memory": True},
    )
    device = run_benchmark(
        mlp_onnx,
        inputs=MLP_INPUTS,
        provider="CUDAExecutionProvider",
        batch_sizes=(32,),
        io="device",
        **{**FAST, "measure_memory": True},
    )
    assert device.measurements[0].timing_mode == "device"
    assert host.measurements[0].device_memory_bytes > 0


def test_tensorrt_options_get_an_engine_cache_per_artifact_and_an_int8_table_built_once(mlp_onnx, tmp_path):
    calls = []

    def calibration():
        calls.append(1)
        return {"x": np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)}

    preset = {"trt_int8_enable": "1", "trt_fp16_enable": "1", "trt_engine_cache_enable": "1"}
    options = gpu.runtime_provider_options(
        "TensorrtExecutionProvider",
        preset,
        cache_dir=tmp_path,
        artifact_sha256="ab" * 32,
        model_path=mlp_onnx,
        calibration=calibration,
    )
    folder = tmp_path / "tensorrt" / ("ab" * 32)
    assert options["trt_engine_cache_path"] == str(folder)
    assert options["trt_int8_calibration_table_name"] == "calibration.flatbuffers"
    assert (folder / "calibration.flatbuffers").stat().st_size > 0
    again = gpu.runtime_provider_options(
        "TensorrtExecutionProvider",
        preset,
        cache_dir=tmp_path,
        artifact_sha256="ab" * 32,
        model_path=mlp_onnx,
        calibration=calibration,
    )
    assert again == options and len(calls) == 1  # built once: a later job neither rebuilds nor reads the data
    assert gpu.runtime_provider_options(
        "CUDAExecutionProvider", {"device_id": 0}, cache_dir=tmp_path, artifact_sha256="cd" * 32
    ) == {"device_id": 0}
    with pytest.raises(EngineError, match="attach a calibration dataset"):
        gpu.runtime_provider_options(
            "TensorrtExecutionProvider", preset, cache_dir=tmp_path, artifact_sha256="ef" * 32, model_path=mlp_onnx
        )
