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

from dashboard.demo import DEMO_PASSWORD
from dashboard.webserver import gunicorn_command, gunicorn_environment
from registry.models import HardwareTarget


class Command(BaseCommand):
    help = ("Run the web server and local Celery workers (default queue with beat; every active target's "
            "queue, one job at a time) in the foreground.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--web-workers", type=int, default=2)
        parser.add_argument("--no-worker", action="store_true", help="Start the web server only.")
        parser.add_argument("--serving-port", type=int, default=8081,
                            help="Port of the demo endpoint's serving runtime (when the demo created one).")
        parser.add_argument("--no-demo-traffic", action="store_true",
                            help="Do not start the demo endpoint's runtime and traffic generator.")

    def handle(self, *args, host, port, web_workers, no_worker, serving_port, no_demo_traffic, **options):
        bin_dir = os.path.dirname(sys.executable)
        celery = [os.path.join(bin_dir, "celery"), "-A", "dashboard", "worker", "--loglevel", "INFO"]
        target_queues = [t.queue for t in HardwareTarget.objects.filter(active=True)]
        processes = {}
        if not no_worker:
            # Validation and housekeeping (with beat) in one worker; the targets' jobs in another,
            # one at a time, so that two benchmarks never share the CPU they are measuring.
            processes["worker"] = subprocess.Popen(celery + [
                "-B", "--schedule", str(settings.VAR_DIR / "celerybeat-schedule"), "-Q", "default",
                "--concurrency", "2", "--hostname", "local-default@%h"])
            if target_queues:
                processes["target worker"] = subprocess.Popen(celery + [
                    "-Q", ",".join(target_queues), "--concurrency", "1", "--hostname", "local-targets@%h"])
        queues = ["default"] + target_queues
        processes["web"] = subprocess.Popen(gunicorn_command(bind=f"{host}:{port}", workers=web_workers),
                                            env=gunicorn_environment(os.environ))
        self._wait_until_listening(host, port, processes["web"])
        demo = None if no_demo_traffic else self._demo_serving(processes, host, port, serving_port)
        self.stdout.write(self.style.SUCCESS(
            f"\nBerth is running at http://{host}:{port}/\n"
            f"  log in as admin, engineer or viewer with the password {DEMO_PASSWORD!r} (demo users)\n"
            f"  worker queues: {', '.join(queues) if not no_worker else 'none (--no-worker)'}\n"
            + (f"  demo endpoint {demo['endpoint']}: http://{host}:{serving_port}/v2/models/{demo['model']}/infer "
               "(Open Inference Protocol), with generated traffic\n" if demo else "")
            + "  stop with Ctrl-C\n"
        ))
        self._wait(processes)

    def _demo_serving(self, processes, host, port, serving_port):
        """The demo endpoint's serving runtime and a traffic generator (steady digits images, a
        phase of brighter ones that drifts, a few malformed requests)."""
        import json

        from dashboard.demo import demo_endpoint_file

        path = demo_endpoint_file()
        if not path.exists():
            return None
        demo = json.loads(path.read_text())
        python = sys.executable
        processes["serving runtime"] = subprocess.Popen([
            python, "-m", "serving.cli", "--dashboard", f"http://{host}:{port}", "--endpoint", demo["endpoint"],
            "--port", str(serving_port), "--cache-dir", str(settings.VAR_DIR / "serving-cache")],
            env={**os.environ, "BERTH_ENDPOINT_TOKEN": demo["token"]})
        processes["traffic"] = subprocess.Popen([
            python, "-m", "serving.loadgen", "--url", f"http://{host}:{serving_port}", "--model", demo["model"],
            "--rate", "10", "--drift-after", "90", "--drift-for", "120", "--drift-every", "600",
            "--malformed-every", "50"])
        return demo

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

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, process in processes.items():
                    if process.poll() is not None:
                        self.stderr.write(f"The {name} process exited with code {process.returncode}; stopping.")
                        stopping = True
                time.sleep(0.5)
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.terminate()
            deadline = time.monotonic() + 20
            for process in processes.values():
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
