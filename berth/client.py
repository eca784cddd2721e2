"""A small client for Berth's REST API (DESIGN §4), standard library only, so that CI
machines can register models without installing the web tier.

``upload_file`` sends a file through the resumable upload API: chunks in order, retried with
backoff on network errors and 5xx, resumed from the server's offset (also across runs: the
server hands back the caller's open upload of the same bytes).
"""

import http.client
import json
import os
import time
import urllib.parse
from dataclasses import dataclass

from berth.core.hashing import file_sha256

CHUNK_SIZE = 8 * 1024 * 1024
RETRY_FOR = 300
MAX_BACKOFF = 30
USER_AGENT = "berth-cli/0.1"
# Servers close idle keep-alive connections (gunicorn after 2 s); reusing one that is about to
# be closed turns into a spurious network error, so older ones are replaced instead.
MAX_IDLE_SECONDS = 1.5


class BerthClientError(Exception):
    """Base of every error this module raises."""


class ApiError(BerthClientError):
    """The server answered with an error status (4xx, or 5xx once retries are over)."""

    def __init__(self, status, detail, payload=None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.payload = payload if isinstance(payload, dict) else {}

    @property
    def errors(self):
        return self.payload.get("errors") or {}


class TransientError(BerthClientError):
    """Worth retrying: the network failed or the server had a 5xx."""


class NetworkError(TransientError):
    pass


class ServerError(TransientError, ApiError):
    pass


class GaveUp(BerthClientError):
    """Transient errors went on for longer than the retry window."""


@dataclass
class FileRange:
    """``length`` bytes of an open binary file from ``offset``: a request body sent with sendfile."""

    file: object
    offset: int
    length: int

    def __len__(self):
        return self.length


@dataclass
class Response:
    status: int
    reason: str
    body: bytes


class Client:
    """One keep-alive connection to a Berth server, authenticated with a DRF token."""

    def __init__(self, server, token, *, timeout=120):
        parts = urllib.parse.urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"The server must be an http(s) URL such as http://berth.example:8000, not {server!r}.")
        self.server = server.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._parts = parts
        self._prefix = parts.path.rstrip("/")
        self._conn = None
        self._last_used = 0.0

    def url(self, path):
        """The absolute URL of a server path (for people to click)."""
        return self.server + path if path.startswith("/") else path

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self):
        if self._conn is not None and time.monotonic() - self._last_used > MAX_IDLE_SECONDS:
            self.close()
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._parts.scheme == "https" else http.client.HTTPConnection
            self._conn = cls(self._parts.hostname, self._parts.port, timeout=self.timeout)
        return self._conn

    def request(self, method, path, *, body=None, headers=None):
        """Send one request; returns a Response whatever its status. Raises NetworkError.

        ``body`` is bytes, or a ``FileRange`` sent straight from the file (sendfile).
        """
        all_headers = {
            "Authorization": f"Token {self.token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **(headers or {}),
        }
        conn = self._connection()
        try:
            if isinstance(body, FileRange):
                self._send_file_range(conn, method, path, body, all_headers)
            else:
                conn.request(method, self._prefix + path, body=body, headers=all_headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise NetworkError(f"{method} {self.url(path)} failed: {exc or type(exc).__name__}") from exc
        finally:
            self._last_used = time.monotonic()
        if response.will_close:
            self.close()
        return Response(response.status, response.reason, data)

    def _send_file_range(self, conn, method, path, body, headers):
        conn.putrequest(method, self._prefix + path, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(body.length)}.items():
            conn.putheader(name, value)
        conn.endheaders()
        # The kernel copies the file to the socket, so a chunk never sits in Python memory.
        sent = conn.sock.sendfile(body.file, body.offset, body.length)
        if sent != body.length:
            raise OSError(f"the file ended after {sent:,} of {body.length:,} bytes of this chunk")

    def json(self, method, path, payload=None, *, body=None, headers=None):
        """A request with a JSON answer: returns ``(status, data)``; raises ApiError for 4xx,
        ServerError for 5xx and NetworkError when no answer came."""
        headers = dict(headers or {})
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        response = self.request(method, path, body=body, headers=headers)
        try:
            data = json.loads(response.body) if response.body else {}
        except ValueError:
            data = None
        if response.status < 400:
            if data is None:
                raise ApiError(
                    response.status,
                    f"{method} {self.url(path)} answered with something that is "
                    f"not JSON; is {self.server} a Berth server?",
                )
            return response.status, data
        if isinstance(data, dict) and data.get("detail"):
            detail = str(data["detail"])
        else:
            detail = f"HTTP {response.status} {response.reason} from {method} {self.url(path)}"
        error_class = ServerError if response.status >= 500 else ApiError
        raise error_class(response.status, detail, data)

    def get(self, path):
        return self.json("GET", path)[1]


class Retry:
    """Exponential backoff (1, 2, 4 … MAX_BACKOFF s) over a window of ``retry_for`` seconds
    that starts at the first failure and restarts when ``reset`` says progress was made."""

    def __init__(self, retry_for=RETRY_FOR, *, sleep=time.sleep, clock=time.monotonic):
        self.retry_for = retry_for
        self._sleep = sleep
        self._clock = clock
        self.reset()

    def reset(self):
        self._since = None
        self._delay = 1

    def wait(self, error):
        """Sleep before the next attempt, or raise GaveUp when the window is used up."""
        now = self._clock()
        if self._since is None:
            self._since = now
        if now - self._since + self._delay > self.retry_for:
            raise GaveUp(f"Gave up after retrying for {self.retry_for:g} s: {error}") from error
        self._sleep(self._delay)
        self._delay = min(self._delay * 2, MAX_BACKOFF)

    def call(self, fn):
        """``fn()``, retried while it raises a TransientError."""
        while True:
            try:
                return fn()
            except TransientError as exc:
                self.wait(exc)


def upload_file(
    client, path, *, sha256=None, chunk_size=CHUNK_SIZE, retry_for=RETRY_FOR, progress=None, sleep=time.sleep
):
    """Upload the file at ``path`` with the resumable upload API; returns the upload's JSON
    (``id``, ``offset`` == ``size``, …), ready for ``upload_complete``.

    ``sha256`` is computed when not given. If the caller already has an open upload of the
    same bytes, it is resumed from the server's offset. ``progress(offset, size)`` is called
    after every chunk. Raises ApiError (refused), GaveUp (network or server down for longer
    than ``retry_for`` seconds without progress).
    """
    size = os.path.getsize(path)
    sha256 = sha256 or file_sha256(path)
    retry = Retry(retry_for, sleep=sleep)
    start = {"size": size, "filename": os.path.basename(path), "sha256": sha256}
    _, upload = retry.call(lambda: client.json("POST", "/api/v1/uploads/", start))
    upload_path = f"/api/v1/uploads/{upload['id']}/"
    offset = upload["offset"]
    if progress:
        progress(offset, size)
    with open(path, "rb", buffering=0) as f:
        while offset < size:
            length = min(chunk_size, size - offset)
            chunk = FileRange(f, offset, length)
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {offset}-{offset + length - 1}/{size}",
            }
            try:
                _, upload = client.json("PUT", upload_path, body=chunk, headers=headers)
            except TransientError as exc:
                retry.wait(exc)
                upload = retry.call(lambda: client.get(upload_path))
                offset = upload["offset"]
                continue
            except ApiError as exc:
                offset = _offset_after_conflict(client, exc, upload_path, offset, retry)
                continue
            offset = upload["offset"]
            retry.reset()
            if progress:
                progress(offset, size)
    return {**upload, "offset": offset}


def _offset_after_conflict(client, error, upload_path, offset, retry):
    """Where to resume after a refused chunk, or raise ``error`` when there is no way on."""
    if error.status != 409:
        raise error
    server_offset = error.payload.get("offset")
    if isinstance(server_offset, int) and server_offset != offset:
        return server_offset
    # Without an offset, a 409 is final if the upload is no longer open (completed, failed,
    # expired); otherwise another request still holds it (e.g. one whose connection we gave
    # up on), so wait and go on from the server's offset.
    current = retry.call(lambda: client.get(upload_path))
    if current.get("status") != "open":
        raise error
    retry.wait(error)
    return current["offset"]


def upload_complete(
    client,
    upload_id,
    *,
    model,
    version,
    sha256="",
    metadata=None,
    tags=None,
    parent="",
    alias="",
    create_model=False,
    retry_for=RETRY_FOR,
    sleep=time.sleep,
):
    """Register a fully uploaded file as ``model:version``; returns ``(created, version_json)``.

    Safe to retry: completing an upload that is already completed answers with its version.
    """
    payload = {
        "model": model,
        "version": version,
        "sha256": sha256,
        "metadata": metadata or {},
        "tags": list(tags or []),
        "parent": parent or "",
        "alias": alias or "",
        "create_model": bool(create_model),
    }
    retry = Retry(retry_for, sleep=sleep)
    status, body = retry.call(lambda: client.json("POST", f"/api/v1/uploads/{upload_id}/complete/", payload))
    return status == 201, body
