"""The runtime's only channel to the dashboard: HTTP with the endpoint token.

One DashboardClient per thread (the spec watcher, the telemetry sender): it keeps one
keep-alive connection and reopens it when the dashboard closed it. Standard library only.
"""

import http.client
import json
import socket
import ssl
import urllib.parse

from . import __version__

USER_AGENT = f"berth-serve/{__version__}"


class DashboardUnreachable(Exception):
    """The dashboard did not answer (network error, timeout)."""


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def text(self, limit=500):
        return self.body[:limit].decode("utf-8", "replace").strip()


class DashboardClient:
    def __init__(self, base_url, token, *, timeout=15.0, instance=None):
        parsed = urllib.parse.urlsplit(base_url.rstrip("/"))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"the dashboard URL must be http(s)://host[:port], not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._origin = (parsed.scheme, parsed.netloc)
        self.token = token
        self.instance = instance  # this replica's id, sent as X-Berth-Instance (the dashboard lists replicas)
        self.timeout = timeout
        self._connection = None

    def url(self, path_or_url):
        """Absolute URL of a path the dashboard gave (``/api/v1/...``) or of an absolute URL."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.base_url + ("" if path_or_url.startswith("/") else "/") + path_or_url

    def spec_url(self, endpoint):
        return self.url(f"/api/v1/endpoints/{urllib.parse.quote(endpoint)}/spec/")

    def request(self, method, url, *, body=None, headers=None, stream_to=None):
        """Send one request; returns a Response (its body empty when ``stream_to(chunk)`` took it).
        Raises DashboardUnreachable on network errors."""
        parsed = urllib.parse.urlsplit(url)
        target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        # The token goes to the dashboard only, never to another host an absolute URL names.
        if (parsed.scheme, parsed.netloc) == self._origin and self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
            if self.instance:
                all_headers["X-Berth-Instance"] = self.instance
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            reused = self._connection is not None
            connection = self._connect(parsed.scheme, parsed.netloc)
            try:
                connection.request(method, target, body=body, headers=all_headers)
                response = connection.getresponse()
                if stream_to is not None and response.status == 200:
                    while chunk := response.read(1 << 20):
                        stream_to(chunk)
                    data = b""
                else:
                    data = response.read()
                result = Response(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
                if response.will_close or (parsed.scheme, parsed.netloc) != self._origin:
                    self.close()
                return result
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                # A kept-alive connection the dashboard closed meanwhile: try once on a fresh one.
                if not (reused and attempt == 1 and stream_to is None):
                    raise DashboardUnreachable(f"{parsed.netloc}: {exc or type(exc).__name__}") from exc
            except (OSError, http.client.HTTPException, socket.timeout, ssl.SSLError) as exc:
                self.close()
                raise DashboardUnreachable(f"{parsed.netloc}: {exc or type(exc).__name__}") from exc
        raise AssertionError("unreachable")

    def _connect(self, scheme, netloc):
        if (scheme, netloc) != self._origin:
            self.close()
        if self._connection is None:
            cls = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            self._connection = cls(netloc, timeout=self.timeout)
        return self._connection

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def post_json(self, url, payload):
        return self.request("POST", self.url(url), body=json.dumps(payload, separators=(",", ":")).encode())
