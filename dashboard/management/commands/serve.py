"""Start the web server (gunicorn) and local Celery workers for every queue, and keep them
running until Ctrl-C. What `make run` ends with."""

import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from dashboard import runlocal
from dashboard.demo import DEMO_ENDPOINT, DEMO_PASSWORD, demo_serving_credentials
from dashboard.runlocal import RunLock
from dashboard.webserver import gunicorn_command, gunicorn_environment
from monitoring import runtime_status
from registry.models import HardwareTarget


class Command(BaseCommand):
    help = (
        "Run the web server and local Celery workers (default queue with beat; every active target's "
        "queue, one job at a time) in the foreground."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--no-worker", action="store_true", help="Start the web server only.")
        parser.add_argument(
            "--serving-port",
            type=int,
            default=8081,
            help="Port of the demo endpoint's serving runtime (when the demo created one).",
        )
        parser.add_argument(
            "--no-demo-traffic",
            action="store_true",
            help="Do not start the demo endpoint's runtime and traffic generator.",
        )

    def handle(self, *args, host, port, web_workers, no_worker, serving_port, no_demo_traffic, **options):
        var_dir = settings.VAR_DIR
        lock = RunLock(var_dir)
        if not lock.acquire({"url": f"http://{host}:{port}/"}):
            self.stderr.write(runlocal.already_running_text(var_dir, lock.holder()))
            sys.exit(1)
        processes = {}
        try:
            if runlocal.port_in_use(host, port):
                self.stderr.write("The dashboard cannot start: " + runlocal.busy_port_text(port, "PORT"))
                sys.exit(1)
            self._start(processes, host, port, web_workers, no_worker, serving_port, no_demo_traffic)
            self._wait(processes)
        finally:
            _stop(processes)
            runtime_status.clear(var_dir)
            lock.release()

    def _start(self, processes, host, port, web_workers, no_worker, serving_port, no_demo_traffic):
        bin_dir = os.path.dirname(sys.executable)
        celery = [os.path.join(bin_dir, "celery"), "-A", "dashboard", "worker", "--loglevel", "INFO"]
        target_queues = [t.queue for t in HardwareTarget.objects.filter(active=True)]
        demo, reissued, problem = None, False, None
        if not no_demo_traffic:
            demo, reissued = demo_serving_credentials()
            if demo and runlocal.port_in_use(host, serving_port):
                problem = runlocal.busy_port_text(serving_port, "SERVE_PORT")
        if not no_worker:
            # Validation and housekeeping (with beat) in one worker; the targets' jobs in another,
            # one at a time, so that two benchmarks never share the CPU they are measuring.
            processes["worker"] = _popen(
                celery
                + [
                    "-B",
                    "--schedule",
                    str(settings.VAR_DIR / "celerybeat-schedule"),
                    "-Q",
                    "default",
                    "--concurrency",
                    "2",
                    "--hostname",
                    "local-default@%h",
                ]
            )
            if target_queues:
                processes["target worker"] = _popen(
                    celery + ["-Q", ",".join(target_queues), "--concurrency", "1", "--hostname", "local-targets@%h"]
                )
        queues = ["default"] + target_queues
        processes["web"] = _popen(
            gunicorn_command(bind=f"{host}:{port}", workers=web_workers), env=gunicorn_environment(os.environ)
        )
        self._wait_until_listening(host, port, processes["web"])
        if demo and not problem:
            self._demo_serving(processes, demo, host, port, serving_port)
        elif demo:
            runtime_status.write(
                settings.VAR_DIR,
                endpoint=DEMO_ENDPOINT,
                running=False,
                message=f"The demo's serving runtime is not running: {problem}.",
            )
        demo_line = ""
        if demo and not problem:
            demo_line = (
                f"  demo endpoint {demo['endpoint']}: http://{host}:{serving_port}/v2/models/{demo['model']}"
                "/infer (Open Inference Protocol), with generated traffic\n"
            )
            if reissued:
                demo_line += "    (its token had been replaced on the endpoint page: the demo runtime got a new one)\n"
        elif demo:
            demo_line = (
                f"  demo endpoint {demo['endpoint']} is not served: {problem}; the rest of Berth runs without it\n"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"\nBerth is running at http://{host}:{port}/\n"
                f"  log in as admin, engineer or viewer with the password {DEMO_PASSWORD!r} (demo users)\n"
                f"  worker queues: {', '.join(queues) if not no_worker else 'none (--no-worker)'}\n"
                + demo_line
                + "  stop with Ctrl-C\n"
            )
        )

    def _demo_serving(self, processes, demo, host, port, serving_port):
        """The demo endpoint's serving runtime and a traffic generator (steady digits images, a
        phase of brighter ones that drifts, a few malformed requests). Both are optional: if they
        stop, the rest keeps running and the endpoint page says why."""
        python = sys.executable
        log_path = settings.VAR_DIR / "demo-serving.log"
        self._serving_log = log_path
        with open(log_path, "w") as log:
            processes["serving runtime"] = _popen(
                [
                    python,
                    "-m",
                    "serving.cli",
                    "--dashboard",
                    f"http://{host}:{port}",
                    "--endpoint",
                    demo["endpoint"],
                    "--port",
                    str(serving_port),
                    "--cache-dir",
                    str(settings.VAR_DIR / "serving-cache"),
                ],
                env={**os.environ, "BERTH_ENDPOINT_TOKEN": demo["token"]},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes["traffic"] = _popen(
            [
                python,
                "-m",
                "serving.loadgen",
                "--url",
                f"http://{host}:{serving_port}",
                "--model",
                demo["model"],
                "--rate",
                "10",
                "--drift-after",
                "90",
                "--drift-for",
                "120",
                "--drift-every",
                "600",
                "--malformed-every",
                "50",
            ]
        )
        url = f"http://{host}:{serving_port}/v2/models/{demo['model']}/infer"
        runtime_status.write(
            settings.VAR_DIR,
            endpoint=DEMO_ENDPOINT,
            running=True,
            url=url,
            message=f"The demo's serving runtime answers at {url} (log: {log_path}).",
        )

    def _wait_until_listening(self, host, port, web, timeout=60):
        """Print the banner once the server answers, not somewhere inside its start-up logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and web.poll() is None:
            try:
                socket.create_connection((host, port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)

    def _wait(self, processes):
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # Ctrl-C, kill, a closed terminal
            signal.signal(sig, stop)
        while not stopping:
            for name, process in list(processes.items()):
                if name not in processes or process.poll() is None:  # (traffic goes with the runtime)
                    continue
                if name in OPTIONAL:
                    self._optional_stopped(processes, name, process.returncode)
                else:
                    self.stderr.write(f"The {name} process exited with code {process.returncode}; stopping.")
                    stopping = True
            time.sleep(0.5)

    def _optional_stopped(self, processes, name, code):
        """The demo's runtime or traffic stopped: say why, keep the rest running."""
        del processes[name]
        if name == "traffic":
            self.stderr.write(
                f"The demo traffic generator exited with code {code}; the demo endpoint gets no "
                "more generated traffic. The rest keeps running."
            )
            return
        reason = RUNTIME_EXITS.get(code, f"it exited with code {code}")
        last = _last_line(getattr(self, "_serving_log", None))
        message = (
            f"The demo's serving runtime stopped: {reason}"
            + (f" (last log line: {last})" if last else "")
            + ". The dashboard and workers keep running; `make run` again to retry."
        )
        runtime_status.write(settings.VAR_DIR, endpoint=DEMO_ENDPOINT, running=False, message=message)
        self.stderr.write(message)
        traffic = processes.pop("traffic", None)
        if traffic is not None:
            _stop({"traffic": traffic})


# The demo's parts that may stop without stopping the rest.
OPTIONAL = ("serving runtime", "traffic")
# berth-serve's exit codes (serving/cli.py) as a reason.
RUNTIME_EXITS = {
    2: "the dashboard refused its endpoint token or spec",
    3: "it could not listen on its port (in use? `make run SERVE_PORT=8091`)",
}


def _popen(command, **kwargs):
    """A child in its own process group (session), so that stopping it stops its children too,
    and so that Ctrl-C reaches only this command, which then stops every group it started."""
    return subprocess.Popen(command, start_new_session=True, **kwargs)


def _stop(processes, grace=20):
    """SIGTERM to every child's process group, then SIGKILL to what is left after ``grace`` s."""
    for process in processes.values():
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes.values():
        _signal_group(process, signal.SIGKILL)  # stragglers of a group whose leader exited
        process.wait()


def _signal_group(process, sig):
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _last_line(path):
    try:
        lines = [line for line in open(path, errors="replace").read().splitlines() if line.strip()]
    except (OSError, TypeError):
        return None
    return lines[-1].strip()[:300] if lines else None
