"""What `manage.py serve` (make run) needs from the machine it runs on: whether a port is free
and who holds it, a lock so that one run owns a ``var/`` at a time, and the demo serving
runtime's status, which the endpoint page shows. No Django here."""

import errno
import fcntl
import json
import os
import socket
from pathlib import Path


def port_in_use(host, port):
    """True if nothing can listen on (host, port) now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def port_holder(port):
    """ "pid 1234 (redis-server …)" for the process listening on ``port``, when /proc tells (Linux,
    and the process is the user's own); None otherwise."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in inodes for fd in fds):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                return f"pid {pid} ({command.strip()[:80]})"
        except OSError:
            continue
    return None


def busy_port_text(port, variable):
    """One line: who holds ``port`` and the make variable that picks another one."""
    holder = port_holder(port)
    return (
        f"port {port} is in use{f' by {holder}' if holder else ''}: `make run {variable}={port + 10}` picks another one"
    )


class RunLock:
    """``var/run.lock``, held (flock) while a `manage.py serve` runs; the file says who holds it."""

    def __init__(self, var_dir):
        self.path = Path(var_dir) / "run.lock"
        self._file = None

    def acquire(self, details):
        """True if this run now holds the lock; False if another run does (see holder())."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), **details}))
        handle.flush()
        self._file = handle
        return True

    def held(self):
        """True if a run holds the lock now (checked without taking it for long)."""
        if not self.path.exists():
            return False
        with open(self.path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
        return False

    def holder(self):
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def release(self):
        if self._file is not None:
            self._file.close()  # closing drops the flock; the file stays (a later run truncates it)
            self._file = None


def already_running_text(var_dir, holder):
    return (
        f"Berth is already running from {var_dir} (pid {holder.get('pid', '?')}, "
        f"{holder.get('url', 'address unknown')}); this run leaves it alone and exits. "
        "Stop that one with Ctrl-C in its terminal to start again."
    )


if __name__ == "__main__":  # make run's first step (no Django, no venv needed): python3 dashboard/runlocal.py var
    import sys

    lock = RunLock(sys.argv[1])
    if lock.held():
        print(already_running_text(sys.argv[1], lock.holder()), file=sys.stderr)
        sys.exit(1)
