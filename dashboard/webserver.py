"""How Berth starts its web server (no Django import: benchmarks use it too)."""

import os
import sys


def gunicorn_command(*, bind, workers):
    """gunicorn with dashboard/gunicorn_conf.py, on ``bind`` (host:port), with ``workers`` processes."""
    return [
        os.path.join(os.path.dirname(sys.executable), "gunicorn"),
        "-c",
        "python:dashboard.gunicorn_conf",
        "dashboard.wsgi",
        "--bind",
        bind,
        "--workers",
        str(workers),
    ]


def gunicorn_environment(environ):
    """``environ`` plus glibc malloc tuning for the web server. Upload chunks arrive as buffers of
    up to 1 MiB, which glibc serves with mmap and hands back with munmap, page-faulting every
    4 KiB of every buffer again; a 32 MiB mmap threshold keeps them in the heap (about 20 %
    faster chunk uploads in bench/upload.py). It must be in the environment at start-up."""
    return {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "134217728", **environ}
