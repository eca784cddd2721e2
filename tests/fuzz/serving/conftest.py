"""berth-serve under fuzzing: one real process (``python -m serving.cli``, uvicorn on loopback,
gRPC beside it) for the session, serving three small ONNX versions with different signatures,
and reporting telemetry to the stand-in dashboard of tests/serving, so every module can check
that the server is still ready and that each request answered so far was counted exactly once,
under its error kind.

Versions of the model ``fuzz`` (all pinned by the tests; the weighted split is not fuzzed):

    "1"  x FP32 [batch, 4]                    -> y = log(x) FP32 [batch, 4]   (NaN / -Infinity out)
    "2"  i INT64 [batch, 3], m BOOL [batch, 3] -> z = where(m, i, 0) INT64 [batch, 3]
    "3"  h FP16 [2], d FP64 [batch]           -> hh = h * h FP16 [2], nd = -d FP64 [batch]

make test runs a bounded, seeded fuzz; make fuzz goes deeper with BERTH_FUZZ_EXAMPLES and
another BERTH_FUZZ_SEED (printed in pytest's header and in every failure).
"""

import json
import os
import re
import signal
import threading
import urllib.request
from collections import Counter

import numpy as np
import pytest

from tests.serving.conftest import FakeDashboard, Serve, make_spec, serve_args, wait_until

SEED = int(os.environ.get("BERTH_FUZZ_SEED", 20261205))
# Examples per property in make test; make fuzz sets BERTH_FUZZ_EXAMPLES (200 by default) and
# the properties scale from it.
EXAMPLES = int(os.environ.get("BERTH_FUZZ_EXAMPLES", 0)) or None
LIMIT = 64 * 1024  # the endpoint's max_request_bytes
MODEL = "fuzz"


def examples(default):
    """How many examples a property runs: ``default`` in make test, more in make fuzz."""
    return default if EXAMPLES is None else max(default, EXAMPLES * default // 50)


def pytest_report_header(config):
    return f"serving fuzz: BERTH_FUZZ_SEED={SEED} (replay a failure with the same seed)"


# --- the versions ------------------------------------------------------------------------------


def _onnx(nodes, inputs, outputs, initializers=()):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "fuzz", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="berth-fuzz")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _io(name, dtype, shape, dynamic=(0,)):
    return {"name": name, "dtype": dtype, "shape": shape, "dynamic_axes": list(dynamic)}


def build_versions():
    """{version: (onnx bytes, io_signature)}."""
    from onnx import TensorProto, helper, numpy_helper

    info = helper.make_tensor_value_info
    return {
        "1": (
            _onnx(
                [helper.make_node("Log", ["x"], ["y"])],
                [info("x", TensorProto.FLOAT, ["batch", 4])],
                [info("y", TensorProto.FLOAT, ["batch", 4])],
            ),
            {"inputs": [_io("x", "float32", ["batch", 4])], "outputs": [_io("y", "float32", ["batch", 4])]},
        ),
        "2": (
            _onnx(
                [helper.make_node("Where", ["m", "i", "zero"], ["z"])],
                [info("i", TensorProto.INT64, ["batch", 3]), info("m", TensorProto.BOOL, ["batch", 3])],
                [info("z", TensorProto.INT64, ["batch", 3])],
                [numpy_helper.from_array(np.zeros((), np.int64), "zero")],
            ),
            {
                "inputs": [_io("i", "int64", ["batch", 3]), _io("m", "bool", ["batch", 3])],
                "outputs": [_io("z", "int64", ["batch", 3])],
            },
        ),
        "3": (
            _onnx(
                [helper.make_node("Mul", ["h", "h"], ["hh"]), helper.make_node("Neg", ["d"], ["nd"])],
                [info("h", TensorProto.FLOAT16, [2]), info("d", TensorProto.DOUBLE, ["batch"])],
                [info("hh", TensorProto.FLOAT16, [2]), info("nd", TensorProto.DOUBLE, ["batch"])],
            ),
            {
                "inputs": [_io("h", "float16", [2], ()), _io("d", "float64", ["batch"])],
                "outputs": [_io("hh", "float16", [2], ()), _io("nd", "float64", ["batch"])],
            },
        ),
    }


class Version:
    """A served version: its signature and a direct onnxruntime session (the expected answers)."""

    def __init__(self, name, raw, io_signature):
        import hashlib

        import onnxruntime as ort

        self.name = name
        self.raw = raw
        self.sha256 = hashlib.sha256(raw).hexdigest()
        self.signature = io_signature
        self.session = ort.InferenceSession(raw, providers=["CPUExecutionProvider"])

    def run(self, feeds):
        names = [o["name"] for o in self.signature["outputs"]]
        return dict(zip(names, self.session.run(names, feeds)))


# --- what the server was asked, and what it must have counted -----------------------------------


class Ledger:
    """Every infer request the server answered, by version: requests, and refusals by status."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = Counter()
        self.statuses = Counter()  # (version, status)

    def answered(self, version, status):
        with self.lock:
            self.requests[version] += 1
            if status != 200:
                self.statuses[version, status] += 1

    def expected(self):
        """Per version: requests, errors, and errors by kind (400 is bad_request or invalid_input:
        the status does not say which, so those two are compared as a sum)."""
        with self.lock:
            out = {}
            for version, count in self.requests.items():
                refused = {s: n for (v, s), n in self.statuses.items() if v == version}
                out[version] = {
                    "requests": count,
                    "errors": sum(refused.values()),
                    "400": refused.get(400, 0),
                    "413": refused.get(413, 0),
                    "other": sum(n for s, n in refused.items() if s not in (400, 413)),
                }
            return out


def _by_status(totals):
    out = {}
    for version, t in totals.items():
        kinds = t["error_kinds"]
        out[version] = {
            "requests": t["requests"],
            "errors": t["errors"],
            "400": kinds.get("bad_request", 0) + kinds.get("invalid_input", 0),
            "413": kinds.get("too_large", 0),
            "other": sum(n for k, n in kinds.items() if k not in ("bad_request", "invalid_input", "too_large")),
        }
    return out


class Server:
    """The berth-serve process of a module, its telemetry sink and the ledger of what it answered."""

    def __init__(self, process, dashboard, versions):
        self.process = process
        self.dashboard = dashboard
        self.versions = versions
        self.port = process.port
        self.grpc_address = "127.0.0.1:" + re.search(r"grpc on 127\.0\.0\.1:(\d+)", process.log()).group(1)
        self.ledger = Ledger()

    def path(self, version):
        return f"/v2/models/{MODEL}/versions/{version}/infer"

    def metrics_failures(self):
        """{(version, kind): count} and {version: requests} from /metrics."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10).read().decode()
        failures, requests = {}, {}
        for line in text.splitlines():
            match = re.match(r"berth_request_failures_total\{(.*)\} (\S+)", line)
            if match:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
                failures[labels["version"], labels["kind"]] = int(float(match.group(2)))
            match = re.match(r"berth_requests_total\{(.*)\} (\S+)", line)
            if match:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
                requests[labels["version"]] = int(float(match.group(2)))
        return failures, requests

    def assert_ready(self):
        """Ready, and a valid request to every version gets its correct answer."""
        from .transports import GRPC, HTTP_JSON, valid_body

        assert urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/health/ready", timeout=10).status == 200
        for version in self.versions.values():
            feeds = {
                t["name"]: np.ones([1 if d == "batch" else d for d in t["shape"]], dtype=t["dtype"])
                for t in version.signature["inputs"]
            }
            answer = HTTP_JSON.infer(self, version.name, json.dumps(valid_body(feeds)).encode())
            assert answer.status == 200, answer
            HTTP_JSON.check_outputs(answer, version, feeds)
            from tritonclient.grpc import service_pb2 as pb
            from .transports import DATATYPES, raw_bytes

            request = pb.ModelInferRequest(model_name=MODEL, model_version=version.name)
            for name, array in feeds.items():
                request.inputs.add(name=name, datatype=DATATYPES[array.dtype.name], shape=array.shape)
                request.raw_input_contents.append(raw_bytes(array))
            code, response = GRPC.infer(self, version.name, request)
            assert code == "OK", response
            GRPC.check_outputs(response, version, feeds)

    def assert_counted(self):
        """Telemetry and /metrics count every answered request once, each refusal under its kind."""
        expected = self.ledger.expected()

        def explain():
            log = "\n".join(line for line in self.process.log().splitlines() if "Invalid HTTP" not in line)
            return f"telemetry {expected} (seed {SEED}); got {_by_status(self.dashboard.totals())}; log:\n{log[-3000:]}"

        try:
            wait_until(lambda: _by_status(self.dashboard.totals()) == expected, timeout=20)
        except AssertionError:
            raise AssertionError(explain()) from None
        failures, requests = self.metrics_failures()
        totals = self.dashboard.totals()
        assert requests == {v: t["requests"] for v, t in totals.items()}
        assert failures == {(v, k): n for v, t in totals.items() for k, n in t["error_kinds"].items()}


@pytest.fixture(scope="session")
def server(tmp_path_factory, request):
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:  # the header hook runs only for conftests loaded at start-up
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\nserving fuzz: BERTH_FUZZ_SEED={SEED} (BERTH_FUZZ_EXAMPLES={EXAMPLES or 'unset: make test bounds'})"
            )
    folder = tmp_path_factory.mktemp("serve-fuzz")
    versions = {name: Version(name, raw, io) for name, (raw, io) in build_versions().items()}
    dashboard = FakeDashboard()
    deployments = [
        {
            "version": v.name,
            "weight": 100 if v.name == "1" else 0,
            "sha256": v.sha256,
            "size_bytes": len(v.raw),
            "format": "onnx",
            "artifact_url": f"/api/v1/endpoints/digits-prod/artifacts/{v.name}/",
            "io_signature": v.signature,
            "features": [],
        }
        for v in versions.values()
    ]
    spec = make_spec(
        deployments,
        model=MODEL,
        max_request_bytes=LIMIT,
        telemetry={"url": "/api/v1/telemetry/", "flush_seconds": 1.0, "flush_requests": 100000},
    )

    class Raw:  # FakeDashboard.publish matches artifacts by sha256
        def __init__(self, version):
            self.sha256, self.raw = version.sha256, version.raw

    dashboard.publish(spec, [Raw(v) for v in versions.values()])
    process = Serve(
        serve_args(dashboard.url, folder / "cache", "--poll-seconds", "30", "--threads", "2", "--grpc-port", "0"),
        folder / "serve.log",
    ).wait_ready()
    served = Server(process, dashboard, versions)
    yield served
    code = process.stop()
    dashboard.stop()
    assert code in (0, -signal.SIGTERM), f"berth-serve exited with {code} (seed {SEED}):\n{process.log()}"
    assert "Traceback" not in process.log(), process.log()


@pytest.fixture(autouse=True, scope="module")
def _ends_ready_and_counted(server):
    """After each module's fuzzing: the server is still ready, and its metrics and telemetry
    count every request the module sent."""
    yield
    server.assert_ready()
    server.assert_counted()
