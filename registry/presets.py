"""Hardware target presets: an execution provider and the options a GPU team would start from. Plain data,
no Django. ``target_create(preset=...)`` fills a target's device, provider and options from one; options given
with it win. Run-time parts (TensorRT's engine cache folder and int8 calibration table) are added by the
worker (jobs.engine.gpu.runtime_provider_options), since they live on the worker's disk."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Preset:
    name: str
    device: str
    provider: str
    options: dict = field(default_factory=dict)
    help: str = ""


PRESETS = {
    preset.name: preset
    for preset in (
        Preset("cpu", "cpu", "CPUExecutionProvider", {}, "onnxruntime's CPU provider, its default options"),
        Preset(
            "cuda",
            "cuda",
            "CUDAExecutionProvider",
            {"cudnn_conv_algo_search": "HEURISTIC"},
            "CUDA with cuDNN's heuristic convolution choice: quick session start",
        ),
        Preset(
            "cuda-exhaustive",
            "cuda",
            "CUDAExecutionProvider",
            {"cudnn_conv_algo_search": "EXHAUSTIVE"},
            "CUDA trying every cuDNN convolution algorithm once per shape: slower start, fastest kernels. "
            "Add gpu_mem_limit (bytes) to cap the arena",
        ),
        Preset(
            "tensorrt-fp16",
            "cuda",
            "TensorrtExecutionProvider",
            {"trt_fp16_enable": "1", "trt_engine_cache_enable": "1"},
            "TensorRT building fp16 engines, cached on the worker per artifact (sha256)",
        ),
        Preset(
            "tensorrt-int8",
            "cuda",
            "TensorrtExecutionProvider",
            {"trt_int8_enable": "1", "trt_fp16_enable": "1", "trt_engine_cache_enable": "1"},
            "TensorRT int8 with a calibration table built from the model's calibration dataset on the worker, "
            "engines cached per artifact",
        ),
    )
}


def preset_target(name, provider_options=None):
    """(device, execution_provider, provider_options) of preset ``name``, ``provider_options`` over its own;
    KeyError for an unknown name."""
    preset = PRESETS[name]
    return preset.device, preset.provider, {**preset.options, **(provider_options or {})}
