"""What this host is: CPU, memory, GPUs and the onnxruntime providers it can run.
Plain Python; reported by workers at start and recorded with every benchmark."""

import os
import platform
import shutil
import socket
import subprocess


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def gpus():
    """[{"name", "memory_mib", "driver"}] from nvidia-smi, or [] when there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            found.append({"name": parts[0], "memory_mib": int(float(parts[1])), "driver": parts[2]})
    return found


def onnxruntime_providers():
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def runtime_versions():
    """Installed versions, read from package metadata (importing torch just for this is slow)."""
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnx", "torch", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def host_facts():
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "gpus": gpus(),
        "providers": onnxruntime_providers(),
        "versions": runtime_versions(),
    }
