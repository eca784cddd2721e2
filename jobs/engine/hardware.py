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
    """[{"index", "name", "memory_mib", "driver", "uuid"}] per GPU from nvidia-smi, or [] when there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version,uuid", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(out)


def parse_nvidia_smi(out):
    """The GPUs of ``nvidia-smi --query-gpu=index,name,memory.total,driver_version,uuid`` CSV output."""
    found = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        try:
            found.append(
                {
                    "index": int(parts[0]),
                    "name": parts[1],
                    "memory_mib": int(float(parts[2])),
                    "driver": parts[3],
                    "uuid": parts[4],
                }
            )
        except ValueError:
            continue
    return found


def onnxruntime_providers():
    """What onnxruntime lists; ``proven_providers`` says which of them really run."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def proven_providers():
    """(usable, problems): the providers a tiny session ran on, and {provider: reason} for the others."""
    from .gpu import prove_providers, usable_providers

    verdicts = prove_providers(onnxruntime_providers())
    return usable_providers(verdicts), {name: reason for name, reason in verdicts.items() if reason is not None}


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
        **dict(zip(("providers", "provider_problems"), proven_providers())),
        "versions": runtime_versions(),
    }
