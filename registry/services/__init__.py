"""Registry use cases: every write to models, versions, aliases, gates, datasets, targets and
uploads goes through a function of this package (one module per concept)."""

from .catalog import (
    dataset_attach,
    model_create,
    profile_store,
    target_create,
    version_create_derived,
    version_mark_invalid,
    version_mark_ready,
    version_mark_validating,
    version_register,
)
from .promotion import alias_remove, alias_set, gate_create, gate_delete
from .upload_sessions import upload_complete, upload_discard, upload_start, upload_write_chunk, uploads_expire

__all__ = [
    "alias_remove",
    "alias_set",
    "dataset_attach",
    "gate_create",
    "gate_delete",
    "model_create",
    "profile_store",
    "target_create",
    "upload_complete",
    "upload_discard",
    "upload_start",
    "upload_write_chunk",
    "uploads_expire",
    "version_create_derived",
    "version_mark_invalid",
    "version_mark_ready",
    "version_mark_validating",
    "version_register",
]
