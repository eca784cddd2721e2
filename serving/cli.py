"""berth-serve: serve an endpoint's deployed versions over the Open Inference Protocol v2.

    berth-serve --dashboard URL --endpoint NAME (--token-file FILE | --token TOKEN) [--host 127.0.0.1] [--port 8080]
                [--grpc-port 8081] [--poll-seconds 5] [--cache-dir DIR] [--threads N] [--workers N] [--no-telemetry]
    berth-serve --bundle DIR [--port 8080] [--dashboard URL --token TOKEN]   (offline)

The token may come from a file (--token-file) or the environment (BERTH_ENDPOINT_TOKEN) instead
of the command line, where other users of the host could read it (ps).
"""

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import uvicorn

from . import __version__
from .dashboard import DashboardClient
from .runtime import OPTIONS_ENV, ServeOptions, configure_logging
from .sources import DashboardSource, Refused, SourceUnavailable
from .spec import SpecError, parse_spec

log = logging.getLogger("berth.serve")

TOKEN_ENV = "BERTH_ENDPOINT_TOKEN"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="berth-serve",
        description="Serve a Berth endpoint over the Open Inference Protocol v2 (HTTP/JSON).",
        epilog="Online: --dashboard, --endpoint and --token-file (or --token, or BERTH_ENDPOINT_TOKEN). Offline: --bundle DIR "
        "(DIR/spec.json and DIR/artifacts/<sha256>.onnx); add --dashboard and --token to report telemetry.",
    )
    parser.add_argument("--dashboard", help="the dashboard's base URL, e.g. https://berth.example.com")
    parser.add_argument("--endpoint", help="the endpoint's name on the dashboard")
    token = parser.add_mutually_exclusive_group()
    token.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV),
        help=f"the endpoint token (default: ${TOKEN_ENV}); visible in ps, prefer --token-file",
    )
    token.add_argument(
        "--token-file", metavar="FILE", help="read the endpoint token from FILE (its first line), e.g. a mounted secret"
    )
    parser.add_argument("--bundle", help="serve a deployment bundle's folder offline instead of a dashboard's spec")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0 picks a free one)")
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="also serve the Open Inference Protocol over gRPC on this port (0 picks a free one; default: no gRPC)",
    )
    parser.add_argument("--poll-seconds", type=float, default=5.0, help="how often to check the spec (default 5)")
    parser.add_argument(
        "--cache-dir",
        default="~/.cache/berth-serve",
        help="where downloaded artifacts are kept as <sha256>.onnx (default ~/.cache/berth-serve)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="inference threads per worker process (default: one per CPU, at most 8); the endpoint's "
        "inference threads, when set, override it",
    )
    parser.add_argument(
        "--intra-op-threads",
        type=int,
        default=1,
        help="onnxruntime threads inside one inference (default 1: parallelism comes from --threads)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (default 1)")
    parser.add_argument("--no-telemetry", action="store_true", help="do not send telemetry to the dashboard")
    parser.add_argument(
        "--shutdown-flush-seconds",
        type=float,
        default=5.0,
        help="at shutdown, how long to keep trying to send pending telemetry (default 5)",
    )
    parser.add_argument(
        "--graceful-seconds",
        type=float,
        default=30.0,
        help="at shutdown, how long requests in flight may take to finish (default 30)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        help="seconds a client may take to send a whole request (headers and body) before it is "
        "answered 408 and disconnected (default 60)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--version", action="version", version=f"berth-serve {__version__}")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    if args.token_file:
        args.token = _read_token_file(parser, args.token_file)
    args.instance = uuid.uuid4().hex  # this replica's id on the dashboard, shared by its workers
    if args.workers < 1 or args.threads < 0 or args.intra_op_threads < 1 or args.poll_seconds <= 0:
        parser.error("--workers and --intra-op-threads must be >= 1, --threads >= 0, --poll-seconds > 0")
    if not args.request_timeout > 0:
        parser.error("--request-timeout must be > 0 seconds")
    if args.grpc_port is not None and not 0 <= args.grpc_port <= 65535:
        parser.error("--grpc-port must be a port number (0 picks a free one)")
    if args.bundle:
        spec = _check_bundle(args)
    else:
        missing = [f"--{name}" for name in ("dashboard", "endpoint", "token") if not getattr(args, name)]
        if missing:
            parser.error(
                f"{', '.join(missing)} required (the token also as --token-file FILE or ${TOKEN_ENV}; "
                "or --bundle DIR to serve offline)"
            )
        try:
            spec = _check_dashboard(args)
        except Refused as exc:
            print(
                f"berth-serve: {exc}. Check --endpoint and the token (--token-file, --token or {TOKEN_ENV}).",
                file=sys.stderr,
            )
            return 2
    if args.bundle and args.dashboard and not args.no_telemetry:
        if not args.token:
            parser.error("telemetry from a bundle needs --token (or --no-telemetry)")
        args.endpoint = args.endpoint or (spec.endpoint if spec else None)
        if not args.endpoint:
            parser.error("--endpoint is required: the bundle's spec names no endpoint")

    options = ServeOptions(
        dashboard=args.dashboard,
        endpoint=args.endpoint,
        token=args.token,
        bundle=args.bundle and str(Path(args.bundle).resolve()),
        cache_dir=args.cache_dir,
        poll_seconds=args.poll_seconds,
        threads=args.threads,
        intra_op_threads=args.intra_op_threads,
        telemetry=not args.no_telemetry,
        shutdown_flush_seconds=args.shutdown_flush_seconds,
        log_level=args.log_level,
        host=args.host,
        graceful_seconds=args.graceful_seconds,
        request_timeout=args.request_timeout,
        grpc_port=_grpc_port(args.host, args.grpc_port),
        instance=args.instance,
    )
    return _serve(args, options, spec)


def _grpc_port(host, port):
    """--grpc-port, with 0 resolved here to a free port (every worker process binds the same one)."""
    if port != 0:
        return port
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _read_token_file(parser, path):
    """The token in ``path`` (its first line, without surrounding blanks); a parser error if the
    file cannot be read or holds no token."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.readline(4096).strip()
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(f"--token-file {path}: {exc.strerror if isinstance(exc, OSError) else exc}")
    if not token:
        parser.error(f"--token-file {path} is empty; put the endpoint token on its first line")
    return token


def _check_bundle(args):
    path = Path(args.bundle) / "spec.json"
    try:
        spec = parse_spec(json.loads(path.read_text()))
    except FileNotFoundError:
        sys.exit(f"berth-serve: {path} does not exist; --bundle takes the folder holding spec.json and artifacts/")
    except (ValueError, SpecError) as exc:
        sys.exit(f"berth-serve: {path} cannot be served: {exc}")
    return spec


def _check_dashboard(args):
    """The first spec fetch: a refusal (401/403/404) is fatal; an unreachable dashboard is not
    (the runtime keeps trying and answers /v2/health/ready with 503 meanwhile)."""
    source = DashboardSource(
        DashboardClient(args.dashboard, args.token, instance=args.instance), args.endpoint, args.cache_dir
    )
    try:
        data, _ = source.fetch_spec(None)
    except SourceUnavailable as exc:
        log.warning(
            "%s at start-up; serving nothing (ready: 503) until it answers, checking every %g s", exc, args.poll_seconds
        )
        return None
    finally:
        source.client.close()
    try:
        return parse_spec(data)
    except SpecError as exc:
        log.error("the dashboard's spec cannot be served yet: %s", exc)
        return None


def _announce(host, port, options, spec, workers):
    where = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    source = f"bundle {options.bundle}" if options.bundle else f"endpoint {options.endpoint} of {options.dashboard}"
    if spec is not None:
        what = f"model {spec.model} generation {spec.generation}: {spec.split_text()}"
        infer = f"{where}/v2/models/{spec.model}/infer"
    else:
        what, infer = "nothing yet (waiting for the spec)", f"{where}/v2/models/<model>/infer"
    telemetry = f"telemetry to {options.dashboard}" if options.telemetry_enabled else "telemetry off"
    if options.grpc_port is not None:
        telemetry = f"grpc on {'[' + host + ']' if ':' in host else host}:{options.grpc_port} · {telemetry}"
    print(
        f"berth-serve {__version__}: listening on {where} ({workers} worker(s), "
        f"{options.inference_threads()} inference thread(s) each)\n"
        f"  serving {what} from {source}\n"
        f"  infer: POST {infer} · ready: {where}/v2/health/ready · metrics: {where}/metrics · {telemetry}",
        flush=True,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, announcing the bound address (``--port 0`` picks a free one)."""

    announce = None

    async def startup(self, sockets=None):
        await super().startup(sockets)
        if self.started and self.announce is not None:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            self.announce(host, port)


def _serve(args, options, spec):
    from .app import create_app

    from .transport import protocol_name

    loop = "uvloop" if _importable("uvloop") else "asyncio"
    http = protocol_name()
    # No access log and no proxy-header rewriting: both cost per request, and the runtime does not
    # use client addresses.
    common = dict(
        host=args.host,
        port=args.port,
        loop=loop,
        http=http,
        lifespan="on",
        access_log=False,
        proxy_headers=False,
        log_config=None,
        log_level="warning",
        server_header=False,
        timeout_graceful_shutdown=args.graceful_seconds,
    )

    if args.workers == 1:
        server = _Server(uvicorn.Config(create_app(options), **common))
        server.announce = lambda host, port: _announce(host, port, options, spec, 1)
        server.run()
        return 0

    from uvicorn.supervisors import Multiprocess

    os.environ[OPTIONS_ENV] = options.to_env()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # the workers' metrics, summed at /metrics
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="berth-serve-metrics-")
    config = uvicorn.Config("serving.app:create_app", factory=True, workers=args.workers, **common)
    sock = config.bind_socket()
    sock.listen(config.backlog)  # connections wait in the backlog until a worker takes them
    host, port = sock.getsockname()[:2]
    _announce(host, port, options, spec, args.workers)
    try:
        Multiprocess(config, sockets=[sock]).run()
    finally:
        if os.environ["PROMETHEUS_MULTIPROC_DIR"].startswith(tempfile.gettempdir()):
            shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    return 0


def _importable(name):
    try:
        __import__(name)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
