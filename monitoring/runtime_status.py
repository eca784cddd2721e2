"""What a local supervisor (``manage.py serve``, i.e. ``make run``) says about an endpoint's serving runtime, for
the endpoint page: whether it runs, and if not why and how to fix it. A small JSON file in the var folder,
written by the project shell and read here (monitoring must not import the shell)."""

import json
from pathlib import Path


def status_file(var_dir):
    return Path(var_dir) / "demo-serving.json"


def write(var_dir, *, endpoint, running, message, url=None):
    path = status_file(var_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"endpoint": endpoint, "running": running, "message": message, "url": url}))


def read(var_dir, endpoint):
    """The status written for ``endpoint``, or None (no local supervisor, or another endpoint's)."""
    try:
        status = json.loads(status_file(var_dir).read_text())
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) and status.get("endpoint") == endpoint else None


def clear(var_dir):
    status_file(var_dir).unlink(missing_ok=True)
