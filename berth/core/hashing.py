"""File hashing: the one sha256 helper of the registry, the serving runtime and the CLI."""

import hashlib
import os

READ_SIZE = 4 * 1024 * 1024


def file_sha256(path, *, progress=None):
    """Hex sha256 of the file at ``path``, read in blocks; ``progress(done_bytes, total_bytes)``
    is called before the first block and after each one when given."""
    digest = hashlib.sha256()
    buffer = bytearray(READ_SIZE)
    view = memoryview(buffer)
    total = os.path.getsize(path) if progress else 0
    done = 0
    if progress:
        progress(0, total)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
            if progress:
                done += n
                progress(done, total)
    return digest.hexdigest()
