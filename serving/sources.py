"""Where the runtime learns what to serve: the dashboard (spec with ETag, artifacts by URL into
an on-disk cache) or a deployment bundle (``spec.json`` and ``artifacts/<sha256>.onnx``).

Every artifact's sha256 is checked before it is loaded; a mismatch raises ArtifactMismatch and
is reported to the dashboard (which writes it to its audit log) where the runtime has one.
"""

import contextlib
import hashlib
import json
import logging
import os
import socket
import uuid
from pathlib import Path

from berth.core.hashing import file_sha256

from .dashboard import DashboardUnreachable

log = logging.getLogger("berth.serve")

CHUNK = 1 << 20


class Refused(Exception):
    """The dashboard refuses this runtime: bad token (401/403) or unknown endpoint (404)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class SourceUnavailable(Exception):
    """The spec could not be fetched now (network error, 5xx, unreadable bundle); try later."""


class ArtifactRejected(Exception):
    """An artifact could not be obtained or does not match its sha256."""


class ArtifactMismatch(ArtifactRejected):
    """An artifact's bytes do not hash to the sha256 the spec names: corrupted or tampered with."""

    def __init__(self, message, *, expected, actual, where):
        super().__init__(message)
        self.expected, self.actual, self.where = expected, actual, where


def report_mismatch(client, endpoint, deployment, mismatch):
    """Tell the dashboard (best effort: a failure is logged, serving goes on refusing the artifact)."""
    payload = {
        "version": deployment.version,
        "expected_sha256": mismatch.expected,
        "actual_sha256": mismatch.actual,
        "where": mismatch.where,
        "detail": str(mismatch)[:1000],
        "host": socket.gethostname(),
    }
    try:
        response = client.post_json(f"/api/v1/endpoints/{endpoint}/integrity/", payload)
    except DashboardUnreachable as exc:
        log.error("could not report the sha256 mismatch of %s to the dashboard: %s", deployment.version, exc)
        return False
    if response.status != 201:
        log.error("the dashboard refused the sha256 mismatch report (%s: %s)", response.status, _detail(response))
        return False
    return True


class DashboardSource:
    def __init__(self, client, endpoint, cache_dir):
        self.client = client
        self.endpoint = endpoint
        self.cache_dir = Path(cache_dir).expanduser()

    def report_mismatch(self, deployment, mismatch):
        return report_mismatch(self.client, self.endpoint, deployment, mismatch)

    def describe(self):
        return f"dashboard {self.client.base_url}, endpoint {self.endpoint}"

    def fetch_spec(self, etag):
        """(spec dict or None when unchanged, etag). Raises Refused or SourceUnavailable."""
        url = self.client.spec_url(self.endpoint)
        try:
            response = self.client.request("GET", url, headers={"If-None-Match": etag} if etag else None)
        except DashboardUnreachable as exc:
            raise SourceUnavailable(f"the dashboard is unreachable ({exc})") from exc
        if response.status == 304:
            return None, etag
        if response.status in (401, 403):
            raise Refused(
                response.status,
                f"the dashboard refuses the token for endpoint {self.endpoint!r} "
                f"({response.status}: {_detail(response)})",
            )
        if response.status == 404:
            raise Refused(404, f"the dashboard has no endpoint {self.endpoint!r} (404: {_detail(response)})")
        if response.status != 200:
            raise SourceUnavailable(f"the spec request answered {response.status}: {_detail(response)}")
        try:
            return response.json(), response.headers.get("etag")
        except ValueError as exc:
            raise SourceUnavailable(f"the spec is not JSON ({exc})") from exc

    def artifact(self, deployment):
        """Path of the verified artifact, downloaded into ``<cache>/<sha256>.onnx`` if needed."""
        sha = deployment.sha256
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        path = self.cache_dir / f"{sha}.onnx"
        with _file_lock(self.cache_dir / f".{sha}.lock"):
            if path.exists():
                actual = file_sha256(path)
                if actual == sha:
                    return path
                log.error("cached artifact %s is corrupt (sha256 %s); downloading it again", path, actual)
                self.report_mismatch(
                    deployment,
                    ArtifactMismatch(
                        f"the cached copy {path} hashes to {actual}, not {sha}; it was downloaded again",
                        expected=sha,
                        actual=actual,
                        where="cache",
                    ),
                )
                path.unlink(missing_ok=True)
            self._download(deployment, path)
        return path

    def _download(self, deployment, path):
        part = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        digest = hashlib.sha256()
        size = 0
        try:
            with open(part, "wb") as f:

                def take(chunk):
                    nonlocal size
                    digest.update(chunk)
                    f.write(chunk)
                    size += len(chunk)

                try:
                    response = self.client.request(
                        "GET",
                        self.client.url(deployment.artifact_url),
                        stream_to=take,
                        headers={"Accept": "application/octet-stream"},
                    )
                except DashboardUnreachable as exc:
                    raise ArtifactRejected(f"download failed: {exc}") from exc
            if response.status != 200:
                raise ArtifactRejected(f"the artifact request answered {response.status}: {_detail(response)}")
            actual = digest.hexdigest()
            if actual != deployment.sha256:
                raise ArtifactMismatch(
                    f"sha256 mismatch: the spec says {deployment.sha256}, the {size:,} bytes "
                    f"downloaded from {deployment.artifact_url} hash to {actual}",
                    expected=deployment.sha256,
                    actual=actual,
                    where="download",
                )
            if deployment.size_bytes is not None and size != deployment.size_bytes:
                raise ArtifactRejected(f"size mismatch: the spec says {deployment.size_bytes:,} bytes, got {size:,}")
            os.replace(part, path)
        finally:
            part.unlink(missing_ok=True)


class BundleSource:
    """``DIR/spec.json`` and ``DIR/artifacts/<sha256>.onnx``; the spec is re-read when the file
    changes, so a bundle can be updated in place."""

    def __init__(self, directory, *, client=None, endpoint=None):
        self.directory = Path(directory).expanduser().resolve()
        self.client, self.endpoint = client, endpoint  # where mismatches are reported, if anywhere

    def report_mismatch(self, deployment, mismatch):
        if self.client is None or not self.endpoint:
            return False
        return report_mismatch(self.client, self.endpoint, deployment, mismatch)

    def describe(self):
        return f"bundle {self.directory}"

    def fetch_spec(self, etag):
        path = self.directory / "spec.json"
        try:
            stat = path.stat()
            current = f"{stat.st_mtime_ns}-{stat.st_size}"
            if current == etag:
                return None, etag
            return json.loads(path.read_text()), current
        except FileNotFoundError as exc:
            raise SourceUnavailable(f"{path} does not exist") from exc
        except (OSError, ValueError) as exc:
            raise SourceUnavailable(f"{path} cannot be read: {exc}") from exc

    def artifact(self, deployment):
        path = self.directory / "artifacts" / f"{deployment.sha256}.onnx"
        if not path.exists():
            raise ArtifactRejected(f"{path} is missing from the bundle")
        actual = file_sha256(path)
        if actual != deployment.sha256:
            raise ArtifactMismatch(
                f"sha256 mismatch: the spec says {deployment.sha256}, {path} hashes to {actual}",
                expected=deployment.sha256,
                actual=actual,
                where="bundle",
            )
        return path


def _detail(response):
    try:
        body = response.json()
        if isinstance(body, dict):
            return str(body.get("detail") or body.get("error") or body)[:300]
    except ValueError:
        pass
    return response.text(300) or "(no body)"


@contextlib.contextmanager
def _file_lock(path):
    """An exclusive lock between processes (workers sharing one cache), where fcntl exists."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not a POSIX host
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
