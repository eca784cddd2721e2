"""``berth``: register model versions and follow their jobs from CI.

Exit codes: 0 ok · 1 refused by the server, or the model/job turned out invalid/failed ·
2 usage, authentication or permission problem, or not found (status) · 3 the network or
server stayed down for --retry-for seconds, or --wait timed out.
"""

import argparse
import json
import os
import sys
import time
from urllib.parse import quote

from . import client as api
from . import compression
from .core.hashing import file_sha256

OK, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 3
HASH_PROGRESS_MIN_BYTES = 64 * 1024 * 1024
AUTH_HINT = (
    "Check --token / BERTH_TOKEN (from the API tokens page, or `manage.py api_token <user>`); "
    "registering needs the engineer role, reading the viewer role."
)


class UsageError(Exception):
    pass


class Progress:
    """Upload or hashing progress on stderr: redrawn in place on a terminal, otherwise a line
    every 10 % so that CI logs stay short."""

    def __init__(self, label, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._started = time.monotonic()
        self._first = None
        self._last_decile = -1
        self._open_line = False
        self._width = 0

    def __call__(self, done, total):
        if self._first is None:
            self._first = done
        percent = 100 * done // total if total else 100
        if not self.tty:
            if percent // 10 == self._last_decile:
                return
            self._last_decile = percent // 10
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = (done - self._first) / elapsed / 1e6
        line = f"{self.label} {percent:3d}% {done / 1e6:,.1f}/{total / 1e6:,.1f} MB {rate:,.1f} MB/s"
        if self.tty:
            # Padded so that a shorter line fully covers the one it replaces.
            self._width = max(self._width, len(line))
            self.stream.write("\r" + line.ljust(self._width))
            self._open_line = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self):
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False


# --- arguments -------------------------------------------------------------------------------


def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        default=os.environ.get("BERTH_URL"),
        help="Berth URL, e.g. https://berth.example (default: $BERTH_URL)",
    )
    common.add_argument("--token", default=os.environ.get("BERTH_TOKEN"), help="API token (default: $BERTH_TOKEN)")

    parser = argparse.ArgumentParser(prog="berth", description="Register, compress and benchmark model versions.")
    commands = parser.add_subparsers(dest="command", required=True)

    register = commands.add_parser("register", parents=[common], help="upload a model file as a new version")
    register.add_argument("--model", required=True, help="model name (lowercase slug)")
    register.add_argument("--version", required=True, help="version string, e.g. 1.4.0 or a commit")
    register.add_argument("--file", required=True, help="ONNX, TorchScript or torch.export (.pt2) file")
    register.add_argument("--metadata", default="", help="JSON object, or @file.json")
    register.add_argument("--tags", default="", help="comma-separated tags")
    register.add_argument("--alias", default="", help="point this alias (e.g. candidate) at the version")
    register.add_argument("--parent", default="", help="parent version (same model) or model:version")
    register.add_argument("--create-model", action="store_true", help="create the model if it does not exist")
    register.add_argument("--wait", action="store_true", help="wait until validation says ready or invalid")
    register.add_argument("--timeout", type=float, default=900, help="seconds --wait waits (default 900)")
    register.add_argument(
        "--chunk-size", type=_positive_int, default=api.CHUNK_SIZE, help="upload chunk size in bytes (default 8 MiB)"
    )
    register.add_argument(
        "--retry-for",
        type=float,
        default=api.RETRY_FOR,
        help="seconds to keep retrying while the network or server is down (default 300)",
    )

    jobs = argparse.ArgumentParser(add_help=False)
    jobs.add_argument("--version", required=True, metavar="NAME:VERSION", help="the version to work on")
    jobs.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any job parameter; VALUE is JSON when it parses as JSON (repeatable)",
    )
    jobs.add_argument("--wait", action="store_true", help="wait for the jobs to finish and print their results")
    jobs.add_argument("--timeout", type=float, default=3600, help="seconds --wait waits (default 3600)")

    benchmark = commands.add_parser(
        "benchmark", parents=[common, jobs], help="measure a version on one or more hardware targets"
    )
    benchmark.add_argument("--target", action="append", required=True, help="hardware target slug (repeatable)")
    benchmark.add_argument("--batch-sizes", default="1", help="comma-separated, e.g. 1,8,32 (default 1)")
    benchmark.add_argument("--threads", default="", help="comma-separated thread counts (default: runtime's)")
    benchmark.add_argument(
        "--measure",
        default="inference",
        help="inference: session.run alone (default); requests: requests end to end through a local berth-serve",
    )
    benchmark.add_argument(
        "--encoding", help="with --measure requests: json (default), binary (the binary tensor extension) or grpc"
    )

    compress = commands.add_parser("compress", parents=[common, jobs], help="make a compressed variant of a version")
    compress.add_argument("--target", required=True, help="hardware target slug whose workers do the work")
    compress.add_argument(
        "--method", required=True, choices=compression.NAMES, help="see the README's table of methods"
    )
    compress.add_argument("--output-version", default="", help="name of the new version (default: derived)")
    compress.add_argument(
        "--then-benchmark",
        default="",
        metavar="BATCH_SIZES",
        help="benchmark the result at these batch sizes on the same target, e.g. 1,32",
    )

    serve_profile = commands.add_parser(
        "serve-profile",
        parents=[common, jobs],
        help="measure the dynamic batching and inference threads that serve a version fastest on a target",
    )
    serve_profile.add_argument("--target", required=True, help="hardware target slug whose workers measure it")
    serve_profile.add_argument("--concurrency", default="", help="clients sending at once, e.g. 1,8,32 (default)")
    serve_profile.add_argument("--batch-sizes", default="", help="max batch sizes, e.g. 1,8,32 (default; 1: off)")
    serve_profile.add_argument("--threads", default="", help="inference threads, e.g. 1,4 (default: 1 and one per CPU)")
    serve_profile.add_argument("--budget-ms", type=float, help="the p99 budget in ms (default 50)")
    serve_profile.add_argument(
        "--search",
        choices=["quick", "full"],
        help="quick: a hill climb measuring a few configurations (default); full: every one",
    )

    status = commands.add_parser("status", parents=[common], help="show a version or a job")
    status.add_argument("ref", nargs="?", metavar="NAME:VERSION", help="the version to show")
    status.add_argument("--job", type=int, help="show job ID instead")
    status.add_argument("--json", action="store_true", help="print the API's JSON")
    return parser


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _metadata(text):
    if not text:
        return {}
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise UsageError(f"Cannot read the metadata file: {exc}") from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--metadata is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise UsageError('--metadata must be a JSON object, e.g. {"commit": "abc123"}.')
    return value


def _client(args):
    if not args.server:
        raise UsageError("No server: pass --server or set BERTH_URL.")
    if not args.token:
        raise UsageError("No token: pass --token or set BERTH_TOKEN.")
    try:
        return api.Client(args.server, args.token)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


# --- register --------------------------------------------------------------------------------


def cmd_register(args):
    metadata = _metadata(args.metadata)
    tags = [t.strip() for t in args.tags.split(",") if t.strip()]
    if not os.path.isfile(args.file):
        raise UsageError(f"No such file: {args.file}")
    client = _client(args)
    # Asked before hashing, so that a bad token or server fails at once, even for a big file.
    existing = _existing_version(client, args.model, args.version, args.retry_for)

    hashing = Progress("hashing  ") if os.path.getsize(args.file) >= HASH_PROGRESS_MIN_BYTES else None
    sha256 = file_sha256(args.file, progress=hashing)
    if hashing:
        hashing.finish()

    if existing is not None:
        if existing["sha256"] != sha256:
            raise api.ApiError(
                409,
                f"Version {args.version} of {args.model} already exists with different "
                f"content (sha256 {existing['sha256'][:12]}…, yours {sha256[:12]}…). Versions "
                "are immutable: register these bytes under a new version string.",
            )
        created, version = False, existing
    else:
        uploading = Progress("uploading")
        try:
            upload = api.upload_file(
                client,
                args.file,
                sha256=sha256,
                chunk_size=args.chunk_size,
                retry_for=args.retry_for,
                progress=uploading,
            )
        finally:
            uploading.finish()
        created, version = api.upload_complete(
            client,
            upload["id"],
            model=args.model,
            version=args.version,
            sha256=sha256,
            metadata=metadata,
            tags=tags,
            parent=args.parent,
            alias=args.alias,
            create_model=args.create_model,
            retry_for=args.retry_for,
        )

    ref = f"{version['model']}:{version['version']}"
    print(f"{'registered' if created else 'already registered'} {ref} ({version['status']}) sha256 {version['sha256']}")
    print(f"page: {client.url(version['page_url'])}")
    if not args.wait:
        return OK
    return _wait_until_validated(client, version, args.timeout)


def _existing_version(client, model, version, retry_for):
    """The version if it is registered already (re-runs of a CI step then upload nothing)."""
    try:
        return api.Retry(retry_for).call(lambda: client.get(_version_path(model, version)))
    except api.ApiError as exc:
        if exc.status == 404:
            return None
        raise


def _version_path(model, version):
    return f"/api/v1/models/{quote(model, safe='')}/versions/{quote(version, safe='')}/"


def _wait_until_validated(client, version, timeout):
    ref = f"{version['model']}:{version['version']}"
    path = _version_path(version["model"], version["version"])
    deadline = time.monotonic() + timeout
    interval = 0.5
    print(f"waiting for {ref} to be validated (up to {timeout:g} s)…", file=sys.stderr)
    while version["status"] not in ("ready", "invalid"):
        if time.monotonic() + interval > deadline:
            print(
                f"error: {ref} is still {version['status']} after {timeout:g} s ({version['status_detail']}).",
                file=sys.stderr,
            )
            return UNREACHABLE
        time.sleep(interval)
        interval = min(interval * 1.5, 5)
        try:
            version = client.get(path)
        except api.TransientError as exc:
            print(f"warning: {exc}; still waiting", file=sys.stderr)
    if version["status"] == "invalid":
        print(f"error: {ref} is invalid: {version['status_detail']}", file=sys.stderr)
        return REFUSED
    print(f"{ref} is ready")
    for line in _signature_lines(version.get("io_signature") or {}):
        print(line)
    return OK


def _signature_lines(signature):
    for side in ("inputs", "outputs"):
        tensors = signature.get(side) or []
        if tensors:
            yield f"{side + ':':9}" + ", ".join(_tensor(t) for t in tensors)


def _tensor(spec):
    shape = ", ".join(str(d) for d in spec.get("shape") or [])
    return f"{spec.get('name')} {spec.get('dtype', '?')}[{shape}]"


# --- benchmark and compress ------------------------------------------------------------------


def _int_list(text, option):
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise UsageError(f"{option} takes whole numbers separated by commas, e.g. 1,8,32.") from exc


def _params(pairs):
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--param takes KEY=VALUE, not {pair!r}.")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params


def cmd_benchmark(args):
    params = {"batch_sizes": _int_list(args.batch_sizes, "--batch-sizes")}
    if args.threads:
        params["threads"] = _int_list(args.threads, "--threads")
    # Sent as given: the dashboard checks them and names the allowed values when one is wrong.
    if args.measure != "inference":
        params["measure"] = args.measure
    if args.encoding:
        params["encoding"] = args.encoding
    params.update(_params(args.param))
    client = _client(args)
    jobs = [_start_job(client, "benchmark", args.version, target, params) for target in args.target]
    return _follow(client, jobs, args)


def cmd_compress(args):
    params = {"method": args.method, **_params(args.param)}
    if args.output_version:
        params["output_version"] = args.output_version
    if args.then_benchmark:
        params["then_benchmark"] = {"batch_sizes": _int_list(args.then_benchmark, "--then-benchmark")}
    client = _client(args)
    return _follow(client, [_start_job(client, "compress", args.version, args.target, params)], args)


def cmd_serve_profile(args):
    params = {}
    for key, value, flag in (
        ("concurrency", args.concurrency, "--concurrency"),
        ("batch_sizes", args.batch_sizes, "--batch-sizes"),
        ("threads", args.threads, "--threads"),
    ):
        if value:
            params[key] = _int_list(value, flag)
    if args.budget_ms is not None:
        params["p99_budget_ms"] = args.budget_ms
    if args.search:
        params["search"] = args.search
    params.update(_params(args.param))
    client = _client(args)
    return _follow(client, [_start_job(client, "serve_profile", args.version, args.target, params)], args)


def _start_job(client, kind, version, target, params):
    _, job = client.json(
        "POST", "/api/v1/jobs/", {"kind": kind, "version": version, "target": target, "params": params}
    )
    print(f"started job {job['id']}: {kind} of {job['version']} on {job['target']} ({client.url(job['url'])})")
    if job.get("waiting_for"):
        print(f"note: {job['waiting_for']}", file=sys.stderr)
    return job


def _follow(client, jobs, args):
    """With --wait: poll the jobs (and a benchmark a compress job queues) until they finish."""
    if not args.wait:
        return OK
    deadline = time.monotonic() + args.timeout
    pending = [job["id"] for job in jobs]
    code = OK
    interval = 1.0
    shown = {}  # job id -> the progress line last shown
    while pending:
        if time.monotonic() > deadline:
            print(
                f"error: jobs {', '.join(map(str, pending))} did not finish within {args.timeout:g} s.", file=sys.stderr
            )
            return UNREACHABLE
        time.sleep(interval)
        interval = min(interval * 1.5, 5)
        for job_id in list(pending):
            try:
                job = client.get(f"/api/v1/jobs/{job_id}/")
            except api.TransientError as exc:
                print(f"warning: {exc}; still waiting", file=sys.stderr)
                continue
            if job["status"] not in ("succeeded", "failed", "cancelled"):
                line = f"job {job_id}: {job['status']} {job.get('progress') or 0:.0f}% {job.get('message') or ''}"
                if shown.get(job_id) != line:
                    print(line.rstrip(), file=sys.stderr, flush=True)
                    shown[job_id] = line
                continue
            pending.remove(job_id)
            _print_result(job)
            if job["status"] != "succeeded":
                code = REFUSED
            elif job["result"].get("benchmark_job"):
                pending.append(job["result"]["benchmark_job"])
    return code


def _print_result(job):
    print(f"job {job['id']} ({job['kind']} of {job['version']} on {job['target']}): {job['status']}")
    if job["status"] != "succeeded":
        print(f"  {job['error'] or job['message']}")
        return
    result = job["result"]
    if job["kind"] == "benchmark":
        quality = result.get("quality") or {}
        if result.get("scope") == "request":
            print(f"  requests end to end through a local berth-serve, {result['encoding']} encoding")
        print(f"  {'batch':>5} {'threads':>7} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9} {'items/s':>11}")
        for row in result.get("results", []):
            print(
                f"  {row['batch_size']:>5} {str(row['threads'] or 'default'):>7} {row['p50_ms']:>9.3f} "
                f"{row['p95_ms']:>9.3f} {row['p99_ms']:>9.3f} {row['throughput']:>11,.0f}"
                + ("" if row["stable"] else "  (unstable)")
            )
        if quality.get("accuracy") is not None:
            delta = quality.get("accuracy_delta")
            print(
                f"  accuracy {quality['accuracy'] * 100:.2f} %"
                + (f" ({delta * 100:+.2f} pt vs the parent)" if delta is not None else "")
            )
        measured = (quality.get("quality") or {}).get("metrics") or {}
        if measured:
            against = (quality.get("quality") or {}).get("reference")
            print(
                "  quality: "
                + ", ".join(
                    f"{key} {figure['value']:.4g}"
                    for key, figure in measured.items()
                    if figure.get("value") is not None
                )
                + (f" (fidelity against {against})" if against else "")
            )
    elif job["kind"] == "serve_profile":
        _print_serving_profile(result)
    elif result.get("output_version"):
        ratio = result.get("size_ratio")
        print(
            f"  created {result['output_version']}, {result.get('size_bytes', 0):,} bytes"
            + (f" ({ratio:.2f}× the parent)" if ratio else "")
        )


def _print_serving_profile(result):
    runs, best = result.get("runs") or [], result.get("recommended")
    searched = (
        f"quick search: {len(runs)} of the {result['grid']} configurations measured"
        if result.get("search") == "quick"
        else f"every configuration measured ({len(runs)})"
    )
    print(f"  {searched}; p99 budget {result.get('p99_budget_ms')} ms")
    print(f"  {'threads':>7} {'batch':>5} {'clients':>7} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9}")
    for run in runs:
        figures = (
            f"{run['throughput']:>9,.0f} {run['p50_ms']:>9.3f} {run['p99_ms']:>9.3f}"
            if run.get("p99_ms") is not None
            else f"{'-':>9} {'-':>9} {'-':>9}"
        )
        print(
            f"  {run['threads']:>7} {run['max_batch_size']:>5} {run['concurrency']:>7} {figures}"
            + ("  (too few samples)" if run.get("too_few_samples") else "")
            + ("  recommended" if run == best else "")
        )
    if best is None:
        print("  no configuration kept p99 within the budget")
    else:
        print(
            f"  recommended: max batch size {best['max_batch_size']}, max queue delay {best['max_queue_delay_us']} µs, "
            f"{best['threads']} inference thread(s) (apply it on the endpoint page, or deploy with "
            "apply_serving_profile)"
        )


# --- status ----------------------------------------------------------------------------------


def cmd_status(args):
    if (args.ref is None) == (args.job is None):
        raise UsageError("Give either NAME:VERSION or --job ID.")
    client = _client(args)
    if args.job is not None:
        job = client.get(f"/api/v1/jobs/{args.job}/")
        _print_job(job, args.json)
        return REFUSED if job["status"] == "failed" else OK
    model, sep, version = args.ref.partition(":")
    if not sep or not model or not version:
        raise UsageError(f"Give the version as NAME:VERSION, e.g. digits:1.4.0 (not {args.ref!r}).")
    found = client.get(_version_path(model, version))
    _print_version(found, args.json)
    return REFUSED if found["status"] == "invalid" else OK


def _print_version(version, as_json):
    if as_json:
        print(json.dumps(version, indent=2))
        return
    rows = [
        ("status", version["status"] + (f" ({version['status_detail']})" if version.get("status_detail") else "")),
        ("format", version.get("format", "")),
        ("size", f"{version.get('size_bytes', 0) / 1e6:,.1f} MB ({version.get('size_bytes', 0):,} bytes)"),
        ("sha256", version.get("sha256", "")),
    ]
    rows += [
        (line.split(":", 1)[0], line.split(":", 1)[1].strip())
        for line in _signature_lines(version.get("io_signature") or {})
    ]
    for job in version.get("jobs") or []:
        rows.append(
            (
                "job",
                f"#{job['id']} {job['kind']} {job['status']} {job['progress']}%"
                + (f" {job['message']}" if job.get("message") else ""),
            )
        )
    print(f"{version['model']}:{version['version']}")
    for label, value in rows:
        print(f"  {label:8} {value}")


def _print_job(job, as_json):
    if as_json:
        print(json.dumps(job, indent=2))
        return
    print(f"job {job['id']}")
    for label in ("kind", "status", "progress", "message", "error", "version", "target"):
        value = job.get(label)
        if value not in (None, ""):
            print(f"  {label:8} {value}{'%' if label == 'progress' else ''}")


# --- entry point -----------------------------------------------------------------------------

COMMANDS = {
    "register": cmd_register,
    "status": cmd_status,
    "benchmark": cmd_benchmark,
    "compress": cmd_compress,
    "serve-profile": cmd_serve_profile,
}


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    except api.GaveUp as exc:
        print(f"error: {exc}", file=sys.stderr)
        return UNREACHABLE
    except api.TransientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return UNREACHABLE
    except api.ApiError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        if exc.status in (401, 403):
            print(f"hint: {AUTH_HINT}", file=sys.stderr)
            return USAGE
        if exc.status == 404 and args.command == "status":
            return USAGE
        return REFUSED
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume the upload", file=sys.stderr)
        return 130
