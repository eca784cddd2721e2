"""Streaming bytes to disk with the sha256 computed as they arrive.

Two ways in, one result: a multipart form field (``HashingFileUploadHandler``) or the chunks
of a resumable upload (``append_chunk``). Either gives an ``IncomingArtifact``: a file in
``BERTH_UPLOAD_DIR`` with its size and sha256, which storage then moves (a rename, not a copy).
"""

import contextlib
import fcntl
import hashlib
import queue
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from berth.core.hashing import file_sha256
from common.errors import BerthError, Busy, Conflict, TooLarge

READ_SIZE = 1024 * 1024


@dataclass
class IncomingArtifact:
    """A complete file on local disk, ready to be moved into storage."""

    path: Path
    size: int
    sha256: str

    def temporary_file_path(self):
        # FileSystemStorage moves (renames) files that expose this, instead of copying them.
        return str(self.path)


def upload_dir():
    path = Path(settings.BERTH_UPLOAD_DIR)
    (path / "tmp").mkdir(parents=True, exist_ok=True)
    return path


def too_large_error(size):
    limit = settings.BERTH_MAX_UPLOAD_BYTES
    return TooLarge(
        f"The file is {size:,} bytes; this server accepts at most {limit:,} bytes (BERTH_MAX_UPLOAD_BYTES).",
        field="artifact",
    )


class HashingUploadedFile(TemporaryUploadedFile):
    sha256 = ""


class HashingFileUploadHandler(TemporaryFileUploadHandler):
    """Multipart files go straight to a temp file in the upload dir, hashed and size-capped."""

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        upload_dir()
        self.file = HashingUploadedFile(self.file_name, self.content_type, 0, self.charset, self.content_type_extra)
        self._hash = hashlib.sha256()
        self._received = 0

    def receive_data_chunk(self, raw_data, start):
        self._received += len(raw_data)
        if self._received > settings.BERTH_MAX_UPLOAD_BYTES:
            raise too_large_error(self._received)
        self._hash.update(raw_data)
        self.file.write(raw_data)

    def file_complete(self, file_size):
        self.file.sha256 = self._hash.hexdigest()
        return super().file_complete(file_size)


def incoming_from_uploaded_file(uploaded):
    """An IncomingArtifact for a multipart file received by HashingFileUploadHandler."""
    if not isinstance(uploaded, HashingUploadedFile):
        raise BerthError("The artifact must be sent as a file in a multipart form.", field="artifact")
    return IncomingArtifact(Path(uploaded.temporary_file_path()), uploaded.size, uploaded.sha256)


# --- resumable chunked uploads ---------------------------------------------------------------


class _HashCache:
    """sha256 state of uploads being received by this process, keyed by (upload id, offset).

    Hash objects cannot be stored in the database, so a chunk that lands on another process
    (or after a restart) simply leaves no entry, and the final hash is then read from disk.
    """

    def __init__(self, capacity=256):
        self._items = OrderedDict()
        self._lock = threading.Lock()
        self._capacity = capacity

    def take(self, upload_id, offset):
        with self._lock:
            item = self._items.pop(upload_id, None)
        if item and item[0] == offset:
            return item[1]
        return hashlib.sha256() if offset == 0 else None

    def put(self, upload_id, offset, hasher):
        with self._lock:
            self._items[upload_id] = (offset, hasher)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def drop(self, upload_id):
        with self._lock:
            self._items.pop(upload_id, None)


_hashes = _HashCache()


def part_path(upload_id):
    return upload_dir() / f"{upload_id}.part"


def create_part_file(upload_id):
    part_path(upload_id).touch()


def remove_part_file(upload_id):
    _hashes.drop(upload_id)
    part_path(upload_id).unlink(missing_ok=True)


@contextlib.contextmanager
def locked_part(upload_id, mode="r+b"):
    """The upload's part file, opened and exclusively locked: one writer (or finisher) at a time."""
    path = part_path(upload_id)
    try:
        f = open(path, mode)
    except FileNotFoundError as exc:
        raise Conflict("This upload's data is gone (expired or discarded). Start a new upload.") from exc
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Busy(
                "Another request is writing or finishing this upload right now (perhaps an earlier "
                "attempt of yours the network lost); retry in a moment. Send chunks one at a time."
            ) from exc
        yield f


def append_chunk(*, upload_id, current_offset, record_offset, start, length, stream):
    """Write ``length`` bytes from ``stream`` at ``start`` of the upload's part file, then
    ``record_offset(new_offset)``.

    Only one writer per upload at a time (an exclusive lock on the part file, held until the
    offset is recorded); the chunk must start exactly where the received bytes end. If the
    stream ends early (the client went away) or the offset cannot be recorded (the database
    went away), the part file is cut back to ``start`` and nothing is counted.
    Returns the new offset.
    """
    with locked_part(upload_id) as f:
        offset = current_offset()
        if start != offset:
            raise Conflict(
                f"This chunk starts at byte {start:,} but the server has {offset:,} bytes of this upload. "
                f"Chunks must be sent in order without overlap: resume from byte {offset:,}.",
                extra={"offset": offset},
            )
        hasher = _hashes.take(upload_id, start)
        f.seek(start)
        f.truncate()
        received = 0
        with _BackgroundHash(hasher) as background:
            while received < length:
                data = stream.read(min(READ_SIZE, length - received))
                if not data:
                    break
                f.write(data)
                background.update(data)
                received += len(data)
        if received != length:
            f.truncate(start)
            raise BerthError(
                f"The chunk ended after {received:,} of {length:,} bytes. Nothing was kept; resend it from byte {start:,}.",
                extra={"offset": start},
            )
        f.flush()
        try:
            record_offset(start + length)
        except BaseException:
            f.truncate(start)
            raise
        if hasher:
            _hashes.put(upload_id, start + length, hasher)
        return start + length


class _BackgroundHash:
    """Feeds a hash object from a second thread. hashlib releases the GIL for large buffers,
    so hashing one block overlaps receiving and writing the next (a bounded queue keeps
    memory flat). With no hash object it does nothing."""

    def __init__(self, hasher, depth=8):
        self.hasher = hasher
        self.blocks = queue.Queue(maxsize=depth) if hasher else None

    def __enter__(self):
        if self.hasher:
            self.thread = threading.Thread(target=self._run, name="upload-hash", daemon=True)
            self.thread.start()
        return self

    def _run(self):
        while (block := self.blocks.get()) is not None:
            self.hasher.update(block)

    def update(self, data):
        if self.hasher:
            self.blocks.put(data)

    def __exit__(self, *exc_info):
        if self.hasher:
            self.blocks.put(None)
            self.thread.join()
        return False


def finished_sha256(upload_id, size):
    """The sha256 of a fully received upload: from this process's running hash if it saw
    every chunk, otherwise read back from disk."""
    hasher = _hashes.take(upload_id, size)
    if hasher is not None:
        return hasher.hexdigest()
    return file_sha256(part_path(upload_id))


def incoming_copy(source_path):
    """Copy a local file into the upload dir, hashing it on the way (for files Berth itself
    produces: demo models, converted and compressed versions)."""
    digest = hashlib.sha256()
    target = upload_dir() / "tmp" / f"{uuid.uuid4().hex}.incoming"
    size = 0
    with open(source_path, "rb") as src, open(target, "wb") as dst:
        while chunk := src.read(READ_SIZE):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
    return IncomingArtifact(target, size, digest.hexdigest())
