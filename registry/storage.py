"""Where artifacts live: Django storage (the file system by default, S3 through
django-storages when configured). Names are generated here; an uploaded filename never
becomes a path."""

import contextlib
import os
import shutil
import tempfile
import uuid

from django.core.files import File
from django.core.files.storage import default_storage

from berth.core.hashing import file_sha256
from common.errors import BerthError

EXTENSIONS = {"onnx": ".onnx", "torchscript": ".pt", "exported_program": ".pt2", "npz": ".npz"}


class IntegrityError(BerthError):
    """Stored bytes no longer match the sha256 recorded at registration."""


class _MovableFile(File):
    """A local file that FileSystemStorage moves into place instead of copying."""

    def __init__(self, path):
        super().__init__(open(path, "rb"), name=os.path.basename(path))
        self._path = str(path)

    def temporary_file_path(self):
        return self._path


def new_name(folder, owner, kind):
    return f"{folder}/{owner}/{uuid.uuid4().hex}{EXTENSIONS[kind]}"


def store(incoming, name):
    """Move an IncomingArtifact into storage under ``name``; returns the stored name.

    The bytes are flushed to disk first (and the rename after it), so a version whose row is
    committed never points at a file a power cut could lose.
    """
    _fsync(incoming.path)
    movable = _MovableFile(incoming.path)
    try:
        stored = default_storage.save(name, movable)
    finally:
        movable.close()
    try:
        _fsync(os.path.dirname(default_storage.path(stored)))
    except NotImplementedError:  # remote storage: durability is the store's business
        pass
    return stored


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def delete(name):
    if name and default_storage.exists(name):
        default_storage.delete(name)


@contextlib.contextmanager
def local_copy(name, *, sha256, suffix=""):
    """A local path to a stored file, checked against ``sha256`` before anyone uses it.

    On the file system this is the stored file itself; on remote storage it is downloaded to
    a temporary file first. Raises IntegrityError when the bytes changed since registration.
    """
    try:
        path = default_storage.path(name)
    except NotImplementedError:
        path = None
    if path is not None:
        _verify(path, sha256, name)
        yield path
        return
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        with default_storage.open(name, "rb") as src:
            shutil.copyfileobj(src, tmp, 1024 * 1024)
        tmp.flush()
        _verify(tmp.name, sha256, name)
        yield tmp.name


def _verify(path, sha256, name):
    if not os.path.exists(path):
        raise IntegrityError(f"The stored file {name} is missing.")
    actual = file_sha256(path)
    if actual != sha256:
        raise IntegrityError(
            f"The stored file {name} has sha256 {actual}, not {sha256} as registered: it changed on disk. "
            "Refusing to use it."
        )
