"""Steady traffic for a digits endpoint, with an optional drift phase and malformed requests,
to watch Berth's monitoring react.

    python -m serving.loadgen --url http://127.0.0.1:8080 --model digits --rate 20 \\
        [--drift-after 60 --drift-for 120] [--malformed-every 50] [--duration 600]

Sends scikit-learn's load_digits images (float32 in [0, 1], 64 features) as Open Inference
Protocol infer requests at a steady rate (open loop: the schedule does not wait for slow
answers, up to --connections requests in flight). During the drift phase the images are
brighter (x * 1.6 + 0.25, clipped to 1). Every Nth request is malformed (a wrong shape or an
unknown input, alternately). Prints a line of statistics every 10 s. Standard library HTTP.
"""

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse

REPORT_SECONDS = 10


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m serving.loadgen", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="berth-serve's base URL")
    parser.add_argument("--model", default="digits")
    parser.add_argument("--version", help="pin a version (default: the endpoint's weighted split)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    parser.add_argument("--duration", type=float, default=0, help="seconds to run (default: until Ctrl-C)")
    parser.add_argument("--drift-after", type=float, default=None, help="start the bright-images phase after S s")
    parser.add_argument("--drift-for", type=float, default=60.0, help="length of the drift phase (default 60 s)")
    parser.add_argument(
        "--drift-every",
        type=float,
        default=0,
        help="repeat the drift phase every S s from --drift-after (default: once)",
    )
    parser.add_argument("--malformed-every", type=int, default=0, help="every Nth request is malformed (0: none)")
    parser.add_argument("--connections", type=int, default=4, help="requests in flight at most (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


class Stats:
    """Counts and latencies of one reporting interval and of the whole run."""

    def __init__(self):
        self.lock = threading.Lock()
        self.total = {"sent": 0, "ok": 0, "rejected": 0, "failed": 0, "unreachable": 0, "correct": 0}
        self._interval()

    def _interval(self):
        self.window = {"sent": 0, "ok": 0, "rejected": 0, "failed": 0, "unreachable": 0, "correct": 0}
        self.latencies = []
        self.versions = {}

    def add(self, outcome, latency_ms=None, version=None, correct=False):
        with self.lock:
            for counts in (self.window, self.total):
                counts["sent"] += 1
                counts[outcome] += 1
                counts["correct"] += correct
            if latency_ms is not None:
                self.latencies.append(latency_ms)
            if version is not None:
                self.versions[version] = self.versions.get(version, 0) + 1

    def line(self, elapsed, drifting):
        with self.lock:
            window, latencies, versions = self.window, sorted(self.latencies), self.versions
            self._interval()
        p50 = latencies[len(latencies) // 2] if latencies else float("nan")
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
        accuracy = f"{window['correct'] / window['ok']:.1%}" if window["ok"] else "-"
        split = " ".join(f"v{v}={n}" for v, n in sorted(versions.items())) or "-"
        return (
            f"t={elapsed:5.0f}s sent={window['sent']} ok={window['ok']} rejected(4xx)={window['rejected']} "
            f"failed(5xx)={window['failed']} unreachable={window['unreachable']} "
            f"rate={window['sent'] / REPORT_SECONDS:.1f}/s p50={p50:.1f}ms p99={p99:.1f}ms accuracy={accuracy} "
            f"versions: {split} drift={'ON' if drifting else 'off'}"
        )


def digits_images(seed=0):
    """(images, bright images, labels): load_digits shuffled with ``seed``, as float32 in [0, 1],
    and the drift phase's brighter copies (x * 1.6 + 0.25, clipped to 1). Request i sends row
    i % len(images)."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    images = (digits.data[order] / 16.0).astype(np.float32)
    return images, np.minimum(images * 1.6 + 0.25, 1.0).astype(np.float32), digits.target[order]


class LoadGenerator:
    def __init__(self, args):
        self.args = args
        parsed = urllib.parse.urlsplit(args.url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.images, self.bright, self.labels = digits_images(args.seed)
        self.stats = Stats()
        self.path = f"/v2/models/{args.model}" + (f"/versions/{args.version}" if args.version else "") + "/infer"
        self.input_name, self.datatype = self._input()
        self._next = 0
        self._lock = threading.Lock()
        self.started = None
        self.stop = threading.Event()

    def _input(self):
        """The model's input name and datatype, from its metadata (waits for the server)."""
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
                connection.request("GET", f"/v2/models/{self.args.model}")
                response = connection.getresponse()
                body = json.loads(response.read() or b"{}")
                connection.close()
                if response.status == 200:
                    tensor = body["inputs"][0]
                    return tensor["name"], tensor["datatype"]
                problem = f"{response.status} {body.get('error', '')}"
            except (OSError, ValueError) as exc:
                problem = str(exc)
            if time.monotonic() > deadline:
                sys.exit(f"loadgen: {self.args.url} does not serve model {self.args.model}: {problem}")
            time.sleep(1)

    def drifting(self, elapsed):
        after, every = self.args.drift_after, self.args.drift_every
        if after is None or elapsed < after:
            return False
        since = (elapsed - after) % every if every else elapsed - after
        return since < self.args.drift_for

    def body(self, index, elapsed):
        every = self.args.malformed_every
        row = index % len(self.images)
        x = (self.bright if self.drifting(elapsed) else self.images)[row]
        if every and (index + 1) % every == 0:
            if (index // every) % 2:
                tensor = {
                    "name": "not_" + self.input_name,
                    "shape": [1, 64],
                    "datatype": self.datatype,
                    "data": x.tolist(),
                }
            else:
                tensor = {"name": self.input_name, "shape": [1, 63], "datatype": self.datatype, "data": x[:63].tolist()}
            return json.dumps({"inputs": [tensor]}).encode(), None
        tensor = {"name": self.input_name, "shape": [1, 64], "datatype": self.datatype, "data": x.tolist()}
        return json.dumps({"inputs": [tensor]}).encode(), int(self.labels[row])

    def worker(self):
        connection = None
        interval = 1.0 / self.args.rate
        while not self.stop.is_set():
            with self._lock:
                index = self._next
                self._next += 1
            due = self.started + index * interval
            delay = due - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return
            elapsed = time.monotonic() - self.started
            if self.args.duration and elapsed >= self.args.duration:
                self.stop.set()
                return
            body, label = self.body(index, elapsed)
            sent = time.perf_counter()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
                connection.request("POST", self.path, body=body, headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException):
                if connection is not None:
                    connection.close()
                connection = None
                self.stats.add("unreachable")
                continue
            latency = (time.perf_counter() - sent) * 1000
            if response.status == 200:
                result = json.loads(answer)
                logits = result["outputs"][0]["data"]
                predicted = max(range(len(logits)), key=logits.__getitem__)
                self.stats.add("ok", latency, result.get("model_version"), correct=predicted == label)
            else:
                self.stats.add("rejected" if response.status < 500 else "failed", latency)

    def run(self):
        args = self.args
        print(
            f"loadgen: {args.rate:g} req/s to {args.url}{self.path} (input {self.input_name!r}, "
            f"{len(self.images)} load_digits images)"
            + (f", drift from {args.drift_after:g} s for {args.drift_for:g} s" if args.drift_after is not None else "")
            + (f", again every {args.drift_every:g} s" if args.drift_after is not None and args.drift_every else "")
            + (f", every {args.malformed_every}th request malformed" if args.malformed_every else "")
            + (f", for {args.duration:g} s" if args.duration else ", until Ctrl-C"),
            flush=True,
        )
        self.started = time.monotonic()
        threads = [threading.Thread(target=self.worker, daemon=True) for _ in range(max(1, args.connections))]
        for thread in threads:
            thread.start()
        next_report = self.started + REPORT_SECONDS
        try:
            while not self.stop.wait(max(0.0, next_report - time.monotonic())):
                elapsed = time.monotonic() - self.started
                print(self.stats.line(elapsed, self.drifting(elapsed)), flush=True)
                next_report += REPORT_SECONDS
        except KeyboardInterrupt:
            self.stop.set()
        for thread in threads:
            thread.join(35)
        total = self.stats.total
        print(
            f"loadgen: done after {time.monotonic() - self.started:.0f} s: sent {total['sent']}, ok {total['ok']}, "
            f"rejected {total['rejected']}, failed {total['failed']}, unreachable {total['unreachable']}",
            flush=True,
        )
        return 0 if total["failed"] == 0 and total["unreachable"] == 0 else 1


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.rate <= 0:
        sys.exit("loadgen: --rate must be > 0")
    return LoadGenerator(args).run()


if __name__ == "__main__":
    sys.exit(main())
