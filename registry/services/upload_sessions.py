"""Resumable chunked uploads: start, write chunks in order, complete (registers the bytes),
discard, expire."""

import re
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from common import audit
from common.errors import BerthError, Conflict, InvalidModelFile, TooLarge

from .. import uploads
from ..models import Upload
from .catalog import version_register

_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# --- resumable uploads -----------------------------------------------------------------------


def upload_start(*, user, size, filename="", sha256=""):
    """Open a resumable upload of ``size`` bytes, or return the user's open upload of the
    same bytes (same size and sha256) so that a restarted client resumes where it stopped.
    Returns ``(upload, created)``."""
    if size < 1:
        raise BerthError("size must be at least 1 byte.", field="size")
    if size > settings.BERTH_MAX_UPLOAD_BYTES:
        raise uploads.too_large_error(size)
    sha256 = (sha256 or "").lower()
    if sha256 and not _SHA256.match(sha256):
        raise BerthError("sha256 must be 64 hexadecimal characters.", field="sha256")
    if sha256:
        existing = Upload.objects.filter(
            created_by=user, size=size, expected_sha256=sha256, status=Upload.Status.OPEN
        ).first()
        if existing is not None and uploads.part_path(existing.id).exists():
            return existing, False
    upload = Upload(created_by=user, size=size, filename=filename[:255], expected_sha256=sha256)
    with transaction.atomic():
        upload.save()
        uploads.create_part_file(upload.id)
    return upload, True


def upload_write_chunk(*, upload, content_range, content_length, stream):
    """Append one chunk (``Content-Range: bytes start-end/total``) to an open upload."""
    if upload.status != Upload.Status.OPEN:
        raise Conflict(f"This upload is {upload.status}; it takes no more data.")
    match = _CONTENT_RANGE.match(content_range or "")
    if not match:
        raise BerthError(
            "Send each chunk with a header 'Content-Range: bytes <first>-<last>/<total>'.", field="Content-Range"
        )
    first, last, total = (int(g) for g in match.groups())
    if total != upload.size:
        raise BerthError(
            f"Content-Range says the file has {total:,} bytes, but this upload was started for {upload.size:,}.",
            field="Content-Range",
        )
    if last < first or last >= total:
        raise BerthError(
            f"Content-Range bytes {first}-{last} is not a range inside 0-{total - 1}.", field="Content-Range"
        )
    length = last - first + 1
    if content_length != length:
        raise BerthError(
            f"Content-Range announces {length:,} bytes but the body has {content_length:,}.", field="Content-Length"
        )
    if length > settings.BERTH_MAX_CHUNK_BYTES:
        raise TooLarge(f"Chunks may be at most {settings.BERTH_MAX_CHUNK_BYTES:,} bytes; this one has {length:,}.")

    def current_offset():
        return Upload.objects.values_list("offset", flat=True).get(pk=upload.pk)

    def record_offset(offset):
        Upload.objects.filter(pk=upload.pk).update(offset=offset, updated=timezone.now())

    upload.offset = uploads.append_chunk(
        upload_id=upload.id,
        current_offset=current_offset,
        record_offset=record_offset,
        start=first,
        length=length,
        stream=stream,
    )
    return upload


def upload_complete(*, upload, user, sha256="", **registration):
    """Finish an upload and register its bytes as a version (see version_register).

    The sha256 of the received bytes must match the one the client gave (at start or now);
    otherwise the upload is discarded and nothing is registered. Completing an already
    completed upload returns its version. Returns ``(ModelVersion, created)``.
    """
    try:
        with uploads.locked_part(upload.id):
            upload.refresh_from_db()
            return _upload_complete_locked(upload=upload, user=user, sha256=sha256, **registration)
    except Conflict:
        upload.refresh_from_db()
        if upload.status == Upload.Status.COMPLETED and upload.version_id:
            return upload.version, False  # completed already (a retried or concurrent request)
        if upload.status != Upload.Status.OPEN:
            raise Conflict(f"This upload is {upload.status}: {upload.status_detail} Start a new upload.") from None
        raise


def _upload_complete_locked(*, upload, user, sha256, **registration):
    if upload.status != Upload.Status.OPEN:
        raise Conflict(f"This upload is {upload.status}: {upload.status_detail} Start a new upload.")
    if upload.offset != upload.size:
        raise Conflict(
            f"The upload is incomplete: {upload.offset:,} of {upload.size:,} bytes received. "
            f"Send the rest from byte {upload.offset:,}.",
            extra={"offset": upload.offset},
        )
    actual = uploads.finished_sha256(upload.id, upload.size)
    expected = (sha256 or upload.expected_sha256).lower()
    if expected and expected != actual:
        detail = (
            f"The received bytes have sha256 {actual}, not {expected} as announced. The upload was "
            "discarded and nothing was registered; upload the file again."
        )
        Upload.objects.filter(pk=upload.pk).update(status=Upload.Status.FAILED, status_detail=detail, sha256=actual)
        uploads.remove_part_file(upload.id)
        raise BerthError(detail, field="sha256")
    incoming = uploads.IncomingArtifact(uploads.part_path(upload.id), upload.size, actual)
    try:
        version, created = version_register(artifact=incoming, created_by=user, **registration)
    except InvalidModelFile as exc:
        # No version name makes these bytes acceptable: free the disk now.
        Upload.objects.filter(pk=upload.pk).update(
            status=Upload.Status.FAILED, status_detail=exc.message, sha256=actual
        )
        uploads.remove_part_file(upload.id)
        raise
    with transaction.atomic():
        Upload.objects.filter(pk=upload.pk).update(status=Upload.Status.COMPLETED, sha256=actual, version=version)
        audit.record(
            audit.Action.UPLOAD,
            version.ref,
            user=user,
            details={
                "upload": str(upload.id),
                "size_bytes": upload.size,
                "sha256": actual,
                "filename": upload.filename,
                "registered": created,
            },
        )
    uploads.remove_part_file(upload.id)
    return version, created


def upload_discard(*, upload):
    Upload.objects.filter(pk=upload.pk).update(status=Upload.Status.FAILED, status_detail="Discarded by the client.")
    uploads.remove_part_file(upload.id)


def uploads_expire(*, now=None):
    """Discard open uploads untouched for BERTH_UPLOAD_EXPIRY_HOURS; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.BERTH_UPLOAD_EXPIRY_HOURS)
    stale = list(Upload.objects.filter(status=Upload.Status.OPEN, updated__lt=cutoff).values_list("id", flat=True))
    for upload_id in stale:
        uploads.remove_part_file(upload_id)
    Upload.objects.filter(id__in=stale).update(
        status=Upload.Status.FAILED, status_detail="Expired: no data received for too long."
    )
    return len(stale)
