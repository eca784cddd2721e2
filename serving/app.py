"""The HTTP transport: the Open Inference Protocol v2 REST paths, ``/metrics`` and the lifespan
hooks, as a raw ASGI callable (no framework on the request path). Inference itself is the
core's (``core.py``); this module reads bodies, decodes and encodes tensors, and answers.

    GET  /v2                                  server metadata
    GET  /v2/health/live  · /v2/health/ready  liveness; ready once a version is loaded
    GET  /v2/models/{m}[/versions/{v}]        model metadata
    GET  /v2/models/{m}[/versions/{v}]/ready  model readiness
    POST /v2/models/{m}[/versions/{v}]/infer  inference (weighted split, or the pinned version)
    GET  /metrics                             Prometheus
"""

import json
import logging

from . import __version__
from .protocol import (
    EXTENSIONS,
    NotFound,
    ServeError,
    TooLarge,
    binary_outputs,
    decode_request,
    encode_binary_response,
    encode_response,
    error_body,
    parse_json,
    split_binary,
)
from .runtime import Runtime, ServeOptions, configure_logging

log = logging.getLogger("berth.serve")

SERVER_METADATA = json.dumps({"name": "berth", "version": __version__, "extensions": EXTENSIONS}).encode()
# Past this many times the limit, stop reading the body and close the connection.
DRAIN_FACTOR = 4


class ClientGone(Exception):
    """The client disconnected before sending its whole request."""


def create_app(options=None):
    """The ASGI app (uvicorn factory); worker processes read their options from the environment."""
    if options is None:
        options = ServeOptions.from_env()
        configure_logging(options.log_level)
    return ServingApp(Runtime(options))


class ServingApp:
    def __init__(self, runtime):
        self.runtime = runtime
        self.core = runtime.core

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.runtime.stop()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    # --- routing -------------------------------------------------------------------------------

    async def _http(self, scope, receive, send):
        path = scope["path"]
        method = scope["method"]
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        if path.startswith("/v2/models/"):
            parts = path[11:].split("/")
            model, version, rest = parts[0], None, parts[1:]
            if len(parts) >= 3 and parts[1] == "versions":
                version, rest = parts[2], parts[3:]
            if rest == ["infer"]:
                if method != "POST":
                    return await _send(send, 405, error_body("use POST for infer"), allow=b"POST")
                return await self._infer(scope, receive, send, model, version)
            if method != "GET":
                return await _send(send, 405, error_body(f"use GET for {path}"), allow=b"GET")
            if not rest:
                return await self._model_metadata(send, model, version)
            if rest == ["ready"]:
                return await self._model_ready(send, model, version)
        elif method != "GET":
            if path in ("/v2", "/v2/health/live", "/v2/health/ready", "/metrics"):
                return await _send(send, 405, error_body(f"use GET for {path}"), allow=b"GET")
        elif path == "/v2/health/ready":
            ready = self.core.ready
            return await _send(send, 200 if ready else 503, b'{"ready":true}' if ready else b'{"ready":false}')
        elif path == "/v2/health/live":
            return await _send(send, 200, b'{"live":true}')
        elif path == "/v2":
            return await _send(send, 200, SERVER_METADATA)
        elif path == "/metrics":
            body, content_type = self.core.metrics.render()
            return await _send(send, 200, body, content_type=content_type.encode())
        await _send(send, 404, error_body(f"no such path: {scope['method']} {scope['path']}"))

    async def _model_metadata(self, send, model, version):
        try:
            metadata = self.core.model_metadata(model, version)
        except ServeError as exc:
            return await _send(send, exc.status, error_body(exc.message))
        await _send(send, 200, json.dumps(metadata).encode())

    async def _model_ready(self, send, model, version):
        try:
            ready = self.core.model_ready(model, version)
        except NotFound as exc:
            return await _send(send, 404, error_body(exc.message))
        await _send(send, 200 if ready else 503, json.dumps({"name": model, "ready": ready}).encode())

    # --- inference -----------------------------------------------------------------------------

    async def _infer(self, scope, receive, send, model, pinned):
        """The HTTP transport of an inference: body -> tensors -> core -> response body."""
        try:
            call = self.core.open(model, pinned)
        except ServeError as exc:
            return await _send(send, exc.status, error_body(exc.message))
        close, extra, content_type = False, None, b"application/json"
        try:
            body = await _read_body(receive, call.max_request_bytes, _header(scope, b"content-length"))
            header, binary = split_binary(body, _header(scope, b"inference-header-content-length"))
            call.encoding = "json" if binary is None else "binary"
            payload = parse_json(header)
            feeds, wanted, request_id = decode_request(payload, call.signature, binary)
            raw = binary_outputs(payload, call.output_names)
            arrays = await call.run(feeds)
            status = 200
            if raw:
                response, header_length = encode_binary_response(
                    call.route.response_prefix, request_id, call.output_names, arrays, wanted, raw
                )
                extra = [(b"inference-header-content-length", str(header_length).encode())]
                content_type = b"application/octet-stream"
            else:
                response = encode_response(call.route.response_prefix, request_id, call.output_names, arrays, wanted)
        except ServeError as exc:
            call.failed(exc)
            status, response = exc.status, error_body(exc.message)
            close = isinstance(exc, TooLarge) and exc.close
        except ClientGone:
            call.release()
            return
        except Exception as exc:
            error = call.crashed(exc)
            status, response = error.status, error_body(error.message)
        finally:
            call.release()
        await _send(send, status, response, close=close, content_type=content_type, extra=extra)
        call.finish()


async def _read_body(receive, limit, declared=None):
    """The request body; TooLarge past ``limit`` bytes (the rest is read and discarded, up to a
    few times the limit, so the client gets its 413 on a usable connection). A Content-Length
    (``declared``) past that is answered at once, without waiting for the body."""
    if declared is not None and declared.isdigit() and int(declared) > DRAIN_FACTOR * limit:
        raise TooLarge.over(limit, close=True)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DRAIN_FACTOR * limit:
            raise TooLarge.over(limit, close=True)
        if not message.get("more_body", False):
            break
    if size > limit:
        raise TooLarge.over(limit, close=False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header(scope, name):
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _send(send, status, body, *, content_type=b"application/json", allow=None, close=False, extra=None):
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    if allow is not None:
        headers.append((b"allow", allow))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
