"""The endpoint spec the dashboard hands to its serving runtimes (``GET
/api/v1/endpoints/{endpoint}/spec/``, or ``spec.json`` of a deployment bundle), parsed and
checked into plain objects. A spec this runtime cannot use raises SpecError and the runtime
keeps serving its last good one."""

import re
from dataclasses import dataclass, field

from .protocol import Signature

DEFAULT_MAX_REQUEST_BYTES = 10 * 1024 * 1024
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class SpecError(Exception):
    """The spec is malformed; the message says where."""


@dataclass(frozen=True)
class Target:
    slug: str = "cpu"
    execution_provider: str = "CPUExecutionProvider"
    provider_options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DeploymentSpec:
    version: str
    weight: float
    sha256: str
    size_bytes: int | None
    artifact_url: str
    io_signature: dict
    features: list
    signature: Signature = field(compare=False, repr=False)


@dataclass(frozen=True)
class TelemetrySpec:
    url: str = "/api/v1/telemetry/"
    flush_seconds: float = 10
    flush_requests: int = 1000


@dataclass(frozen=True)
class BatchingSpec:
    """Dynamic batching of an endpoint's versions (serving/batching.py); max_batch_size 1 is off.
    ``threads``: the inference threads of each worker process (None: berth-serve's --threads)."""

    max_batch_size: int = 1
    max_queue_delay_us: int = 0
    threads: int | None = None

    @property
    def enabled(self):
        return self.max_batch_size > 1


MAX_BATCH_SIZE = 1024
MAX_QUEUE_DELAY_US = 1_000_000
MAX_THREADS = 64


@dataclass(frozen=True)
class Spec:
    endpoint: str
    model: str
    generation: int
    target: Target
    deployments: tuple
    telemetry: TelemetrySpec | None
    max_request_bytes: int
    batching: BatchingSpec = BatchingSpec()

    def split_text(self):
        return ", ".join(f"{d.version} ({d.weight:g} %)" for d in self.deployments) or "nothing"


def parse_spec(data):
    """A Spec from the spec JSON (a dict); SpecError on anything this runtime cannot serve."""
    if not isinstance(data, dict):
        raise SpecError("the spec is not a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise SpecError("the spec has no 'model'")
    target_data = data.get("target") or {}
    if not isinstance(target_data, dict):
        raise SpecError("'target' must be an object")
    options = target_data.get("provider_options") or {}
    if not isinstance(options, dict):
        raise SpecError("'target.provider_options' must be an object")
    target = Target(
        slug=str(target_data.get("slug") or "cpu"),
        execution_provider=str(target_data.get("execution_provider") or "CPUExecutionProvider"),
        provider_options=options,
    )
    deployments = data.get("deployments")
    if not isinstance(deployments, list):
        raise SpecError("'deployments' must be a list")
    parsed, seen = [], set()
    for index, item in enumerate(deployments):
        deployment = _deployment(index, item)
        if deployment.version in seen:
            raise SpecError(f"version {deployment.version!r} is deployed twice")
        seen.add(deployment.version)
        parsed.append(deployment)
    limits = data.get("limits") or {}
    max_bytes = limits.get("max_request_bytes") if isinstance(limits, dict) else None
    if max_bytes is None:
        max_bytes = DEFAULT_MAX_REQUEST_BYTES
    elif not isinstance(max_bytes, int) or max_bytes <= 0:
        raise SpecError("'limits.max_request_bytes' must be a positive integer")
    return Spec(
        endpoint=str(data.get("endpoint") or ""),
        model=model,
        generation=_int(data.get("generation"), 0),
        target=target,
        deployments=tuple(parsed),
        telemetry=_telemetry(data.get("telemetry")),
        max_request_bytes=max_bytes,
        batching=_batching(data.get("batching")),
    )


def _deployment(index, item):
    where = f"deployments[{index}]"
    if not isinstance(item, dict):
        raise SpecError(f"{where} is not an object")
    version = item.get("version")
    if not isinstance(version, (str, int)) or str(version) == "":
        raise SpecError(f"{where} has no 'version'")
    version = str(version)
    where = f"version {version!r}"
    fmt = item.get("format", "onnx")
    if fmt != "onnx":
        raise SpecError(f"{where} is {fmt!r}; the serving runtime serves ONNX only")
    sha256 = item.get("sha256")
    if not isinstance(sha256, str) or not SHA256.match(sha256.lower()):
        raise SpecError(f"{where} has no valid 'sha256'")
    weight = item.get("weight", 0)
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
        raise SpecError(f"{where}: 'weight' must be a number >= 0")
    url = item.get("artifact_url")
    if not isinstance(url, str) or not url:
        raise SpecError(f"{where} has no 'artifact_url'")
    io_signature = item.get("io_signature") or {}
    try:
        signature = Signature.from_io_signature(io_signature)
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from exc
    features = item.get("features") or []
    if not isinstance(features, list):
        raise SpecError(f"{where}: 'features' must be a list")
    size = item.get("size_bytes")
    return DeploymentSpec(
        version=version,
        weight=float(weight),
        sha256=sha256.lower(),
        size_bytes=size if isinstance(size, int) and size >= 0 else None,
        artifact_url=url,
        io_signature=io_signature,
        features=features,
        signature=signature,
    )


def _telemetry(data):
    if data is None:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        raise SpecError("'telemetry' must be an object with a 'url'")
    seconds = data.get("flush_seconds", 10)
    requests = data.get("flush_requests", 1000)
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        raise SpecError("'telemetry.flush_seconds' must be a positive number")
    if not isinstance(requests, int) or requests <= 0:
        raise SpecError("'telemetry.flush_requests' must be a positive integer")
    return TelemetrySpec(url=data["url"], flush_seconds=float(seconds), flush_requests=requests)


def _batching(data):
    if data is None:
        return BatchingSpec()
    if not isinstance(data, dict):
        raise SpecError("'batching' must be an object with max_batch_size and max_queue_delay_us")
    size = data.get("max_batch_size", 1)
    delay = data.get("max_queue_delay_us", 0)
    if type(size) is not int or not 1 <= size <= MAX_BATCH_SIZE:
        raise SpecError(f"'batching.max_batch_size' must be an integer from 1 to {MAX_BATCH_SIZE}")
    if type(delay) is not int or not 0 <= delay <= MAX_QUEUE_DELAY_US:
        raise SpecError(f"'batching.max_queue_delay_us' must be an integer from 0 to {MAX_QUEUE_DELAY_US:,}")
    threads = data.get("threads")
    if threads is not None and (type(threads) is not int or not 1 <= threads <= MAX_THREADS):
        raise SpecError(f"'batching.threads' must be null or an integer from 1 to {MAX_THREADS}")
    return BatchingSpec(max_batch_size=size, max_queue_delay_us=delay, threads=threads)


def _int(value, default):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
