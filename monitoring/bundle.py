"""A deployment bundle: everything a site that builds its own images needs to serve an
endpoint's current split offline — the artifacts, the serving runtime's code, its spec and a
Dockerfile. Built with tarfile (no Docker engine needed to produce it)."""

import io
import json
import tarfile
import tempfile
from pathlib import Path

from django.conf import settings

from registry import storage

from .selectors import active_deployments, endpoint_spec

# The serving runtime and the pure core it imports (berth/__init__.py only marks the package).
RUNTIME_PACKAGES = ("serving", "berth/core")
RUNTIME_FILES = ("berth/__init__.py",)
REQUIREMENTS = """numpy>=1.26
onnxruntime>=1.20
uvicorn[standard]>=0.30
prometheus-client>=0.20
grpcio>=1.85
grpcio-health-checking>=1.85
protobuf>=7.35
"""
DOCKERFILE = """FROM python:3.11-slim
WORKDIR /srv
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
EXPOSE 8080
# Serves bundle/spec.json with the artifacts in bundle/artifacts/, offline (no dashboard).
CMD ["python", "-m", "serving.cli", "--bundle", "/srv/bundle", "--host", "0.0.0.0", "--port", "8080"]
"""
README = """Berth deployment bundle for endpoint {endpoint} ({model}, generation {generation})

    docker build -t berth-{endpoint} .
    docker run -p 8080:8080 berth-{endpoint}

or, without Docker: pip install -r requirements.txt && python -m serving.cli --bundle bundle --port 8080

It answers the Open Inference Protocol v2 (POST /v2/models/{model}/infer) with the split
{split}. The artifacts' sha256 are checked before loading. Telemetry is off: add
--dashboard URL --endpoint {endpoint} --token TOKEN to report to Berth.
"""


def build(endpoint):
    """The bundle as an open temporary file (tar.gz), positioned at its start."""
    deployments = active_deployments(endpoint)
    spec, _ = endpoint_spec(endpoint, artifact_url=lambda d: f"artifacts/{d.version.sha256}.onnx")
    spec["telemetry"] = None
    archive = tempfile.TemporaryFile()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        _add_bytes(tar, "bundle/spec.json", json.dumps(spec, indent=2).encode())
        for deployment in deployments:
            version = deployment.version
            with storage.local_copy(version.artifact.name, sha256=version.sha256) as path:
                tar.add(path, arcname=f"bundle/artifacts/{version.sha256}.onnx")
        root = Path(settings.BASE_DIR)
        for package in RUNTIME_PACKAGES:
            for path in sorted((root / package).rglob("*.py")):
                tar.add(path, arcname=str(path.relative_to(root)))
        for name in RUNTIME_FILES:
            tar.add(root / name, arcname=name)
        _add_bytes(tar, "requirements.txt", REQUIREMENTS.encode())
        _add_bytes(tar, "Dockerfile", DOCKERFILE.encode())
        split = ", ".join(f"{d.version.version} {d.weight} %" for d in deployments) or "(nothing deployed)"
        _add_bytes(
            tar,
            "README.txt",
            README.format(
                endpoint=endpoint.name, model=endpoint.model.name, generation=spec["generation"], split=split
            ).encode(),
        )
    archive.seek(0)
    return archive


def _add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
