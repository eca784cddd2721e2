"""What a GPU host can really do, measured rather than taken on trust. Plain Python: no Django.

- ``prove_providers``: onnxruntime lists every provider its wheel was built with (the GPU wheel lists
  TensorRT even where the TensorRT libraries are missing); a tiny session per provider proves which
  ones run, and says why the others do not.
- NVML (``nvidia-ml-py``): a process's device memory and the GPU's utilization. Figures Triton's Model
  Analyzer leads with, because they decide which models fit together on one card.
- Timing modes: ``host`` copies inputs to the device and outputs back in every timed run (what a client
  that sends host arrays sees); ``device`` keeps inputs and outputs on the device through IO binding (what
  the GPU does alone), optionally replayed as a CUDA graph.
"""

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import EngineError, first_line

# Providers whose tensors live on a CUDA device, and the onnxruntime device name IO binding uses.
DEVICE_OF_PROVIDER = {
    "CUDAExecutionProvider": "cuda",
    "TensorrtExecutionProvider": "cuda",
}
IO_MODES = ("host", "device")
# Every TimingMode.label: what results record and what comparisons filter on, one mode at a time.
TIMING_MODES = ("host", "device", "device+graph")


@dataclass(frozen=True)
class TimingMode:
    """How a benchmark times a run: ``io`` host or device, and whether a CUDA graph replays it."""

    io: str = "host"
    cuda_graph: bool = False

    @property
    def label(self):
        """What the compare table and API show: host, device or device+graph."""
        return "device+graph" if self.cuda_graph else self.io


def timing_mode(provider, io="host", cuda_graph=False):
    """The TimingMode for ``provider``, or EngineError saying why it cannot be measured that way."""
    if io not in IO_MODES:
        raise EngineError(f"io must be one of {', '.join(IO_MODES)}, not {io!r}.")
    if io == "device" and provider not in DEVICE_OF_PROVIDER:
        raise EngineError(
            f"io=device keeps tensors on a GPU; {provider} has no device memory of its own. "
            "Use io=host, or a target with CUDAExecutionProvider or TensorrtExecutionProvider."
        )
    if cuda_graph and provider != "CUDAExecutionProvider":
        raise EngineError("CUDA graphs are an option of CUDAExecutionProvider only.")
    if cuda_graph and io != "device":
        raise EngineError("A CUDA graph replays fixed device buffers: it needs io=device.")
    return TimingMode(io=io, cuda_graph=bool(cuda_graph))


def session_provider_options(provider, options, mode):
    """The provider options a session needs for ``mode`` (a CUDA graph is a provider option)."""
    merged = dict(options or {})
    if mode.cuda_graph:
        merged["enable_cuda_graph"] = "1"
    return merged


def device_runner(session, feeds, *, device, device_id=0):
    """A zero-argument callable that runs ``session`` on ``feeds`` already copied to ``device``, with
    outputs left there: what the timed loop calls in io=device mode. The copies happen here, once."""
    import onnxruntime as ort

    binding = session.io_binding()
    for name, value in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, device, device_id))
    for output in session.get_outputs():
        binding.bind_output(output.name, device, device_id)
    run = session.run_with_iobinding

    def run_bound():
        run(binding)

    return run_bound


# --- providers proven by a tiny session --------------------------------------------------------


def _tiny_model():
    """y = x + x on a float32 [1, 4]: small enough to load anywhere, real enough to need the provider."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "berth_provider_check",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def prove_providers(available=None):
    """{provider: None when a session on it ran, else the reason it cannot be used}, for every provider
    onnxruntime lists (or ``available``)."""
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as exc:
        return {"CPUExecutionProvider": f"onnxruntime is not installed: {first_line(exc)}"}
    available = list(available if available is not None else ort.get_available_providers())
    model = _tiny_model()
    feeds = {"x": np.ones((1, 4), dtype=np.float32)}
    verdicts = {}
    for provider in available:
        options = ort.SessionOptions()
        options.log_severity_level = 4  # the reason is reported here, not as a page of C++ log
        try:
            session = ort.InferenceSession(model, sess_options=options, providers=[provider])
            used = session.get_providers()[0]
            if used != provider:
                verdicts[provider] = (
                    f"a session fell back to {used}: the provider's libraries or device are missing on this host"
                )
                continue
            session.run(None, feeds)
            verdicts[provider] = None
        except Exception as exc:  # onnxruntime raises its own types, and RuntimeError for missing libraries
            verdicts[provider] = first_line(exc)
    return verdicts


def usable_providers(verdicts):
    return [provider for provider, reason in verdicts.items() if reason is None]


# --- NVML: device memory and utilization -------------------------------------------------------


def process_device_memory(processes, pid):
    """Bytes of device memory that ``pid`` holds, from NVML's running-process lists (None when the
    process is not listed, or NVML could not tell: usedGpuMemory is None without permission)."""
    used = [p.usedGpuMemory for p in processes if p.pid == pid and p.usedGpuMemory is not None]
    return sum(used) if used else None


def summarise_utilization(samples):
    """{"mean_percent", "max_percent", "samples"} of GPU utilization readings (percent), or None."""
    readings = [float(s) for s in samples if s is not None]
    if not readings:
        return None
    return {"mean_percent": sum(readings) / len(readings), "max_percent": max(readings), "samples": len(readings)}


def fits_on_gpu(device_memory_bytes, gpu_memory_mib, *, headroom=0.9):
    """(fits, message): whether a process holding ``device_memory_bytes`` fits in ``headroom`` of a GPU
    with ``gpu_memory_mib``; (None, reason) when either figure is unknown."""
    if device_memory_bytes is None:
        return None, "device memory was not measured"
    if not gpu_memory_mib:
        return None, "the worker reported no GPU memory"
    budget = gpu_memory_mib * 1024 * 1024 * headroom
    share = device_memory_bytes / (gpu_memory_mib * 1024 * 1024)
    if device_memory_bytes <= budget:
        return True, f"fits: {share:.0%} of the GPU's {gpu_memory_mib:,} MiB"
    return False, f"does not fit: needs {share:.0%} of the GPU's {gpu_memory_mib:,} MiB (over {headroom:.0%})"


class Nvml:
    """A handle on NVML, or ``reason`` saying why there is none (no driver, no nvidia-ml-py, no GPU)."""

    def __init__(self, device_index=0):
        self.reason = None
        self._nvml = None
        self._handle = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(int(device_index))
            self._nvml = pynvml
        except ImportError:
            self.reason = "nvidia-ml-py is not installed (pip install '.[gpu-worker]')"
        except Exception as exc:  # pynvml.NVMLError_* when there is no driver or device
            self.reason = f"NVML is not available: {first_line(exc)}"

    @property
    def available(self):
        return self._handle is not None

    def process_memory(self, pid):
        if not self.available:
            return None
        nvml = self._nvml
        processes = []
        for reader in (nvml.nvmlDeviceGetComputeRunningProcesses, nvml.nvmlDeviceGetGraphicsRunningProcesses):
            try:
                processes.extend(reader(self._handle))
            except Exception:  # noqa: BLE001 - one list may be unsupported on a device; the other still counts
                continue
        return process_device_memory(processes, pid)

    def utilization(self):
        if not self.available:
            return None
        try:
            return self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu
        except Exception:  # noqa: BLE001 - unsupported on some devices: no reading rather than a failed job
            return None


class UtilizationSampler:
    """Samples GPU utilization every ``interval_s`` in a thread while inside ``with``; ``summary`` after."""

    def __init__(self, nvml, interval_s=0.02):
        self._nvml = nvml
        self._interval = interval_s
        self._samples = []
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        if self._nvml is not None and self._nvml.available:
            self._thread = threading.Thread(target=self._loop, name="gpu-utilization", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        return False

    def _loop(self):
        while not self._stop.is_set():
            self._samples.append(self._nvml.utilization())
            time.sleep(self._interval)

    @property
    def summary(self):
        return summarise_utilization(self._samples)


# --- TensorRT on the worker: engine cache and int8 calibration ---------------------------------


def runtime_provider_options(provider, options, *, cache_dir, artifact_sha256, model_path=None, calibration=None):
    """A target's provider options completed on the worker. TensorRT gets an engine cache folder per artifact
    (``cache_dir``/tensorrt/<sha256>: an engine is only ever reused for the bytes it was built from) and, in
    int8 mode without a table of its own, a calibration table built once from ``calibration()`` (a function
    returning the model's calibration arrays). Other providers' options are returned as they are."""
    options = dict(options or {})
    if provider != "TensorrtExecutionProvider":
        return options
    int8 = str(options.get("trt_int8_enable", "0")) in ("1", "True", "true")
    cache = str(options.get("trt_engine_cache_enable", "0")) in ("1", "True", "true")
    if not (int8 or cache):
        return options
    folder = Path(cache_dir) / "tensorrt" / artifact_sha256
    folder.mkdir(parents=True, exist_ok=True)
    options.setdefault("trt_engine_cache_path", str(folder))
    table = Path(options["trt_engine_cache_path"]) / "calibration.flatbuffers"
    if int8 and not options.get("trt_int8_calibration_table_name") and table.is_file():
        options["trt_int8_calibration_table_name"] = table.name  # built by an earlier job: data not read again
    if int8 and not options.get("trt_int8_calibration_table_name"):
        if calibration is None:
            raise EngineError(
                "TensorRT int8 needs a calibration table: attach a calibration dataset to the model, "
                "or give trt_int8_calibration_table_name in the target's provider options."
            )
        # TensorRT looks for the table in the engine cache folder.
        table = build_calibration_table(model_path, calibration(), Path(options["trt_engine_cache_path"]))
        options["trt_int8_calibration_table_name"] = table.name
    return options


def build_calibration_table(model_path, data, folder, *, max_samples=128):
    """The activation ranges of the model at ``model_path`` on ``data`` ({input: array}), written as the
    calibration table TensorRT reads (calibration.flatbuffers in ``folder``); reused when already there.
    Calibration runs on the CPU: ranges do not depend on where the model later runs."""
    import tempfile

    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator
    from onnxruntime.quantization.quant_utils import write_calibration_table

    from .quantize import _array_reader, calibration_batches

    folder = Path(folder)
    table = folder / "calibration.flatbuffers"
    if table.is_file():
        return table
    batches, _used, _notes = calibration_batches(model_path, data, max_samples=max_samples)
    with tempfile.TemporaryDirectory(prefix="berth-trt-calibration-") as tmp:
        try:
            calibrator = create_calibrator(
                str(model_path),
                augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                calibrate_method=CalibrationMethod.MinMax,
                providers=["CPUExecutionProvider"],
            )
            calibrator.collect_data(_array_reader(batches))
            ranges = calibrator.compute_data()
        except Exception as exc:  # onnxruntime's own types
            raise EngineError(f"Building the TensorRT calibration table failed: {first_line(exc)}") from exc
    folder.mkdir(parents=True, exist_ok=True)
    write_calibration_table(ranges, dir=str(folder))
    if not table.is_file():
        raise EngineError(
            "onnxruntime wrote no calibration.flatbuffers; this onnxruntime may be too old for "
            "TensorRT int8 calibration tables."
        )
    return table
