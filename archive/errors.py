"""Errors raised by the archive (store and index). Each carries a stable `code`.

The HTTP layer in `signer` maps these codes to problem+json; nothing here knows HTTP.
"""

from __future__ import annotations


class ArchiveError(Exception):
    """Root of every error the archive raises on purpose."""

    code: str = "archive_error"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class ObjectConflict(ArchiveError):
    """Different bytes are already stored under this name."""

    code = "object_conflict"


class ObjectMissing(ArchiveError):
    code = "object_missing"


class ObjectCorrupt(ArchiveError):
    """Stored bytes do not hash to their name."""

    code = "object_corrupt"


class LockMismatch(ArchiveError):
    """The lock read back from the store is not the lock that was asked for."""

    code = "lock_mismatch"


class StaleRevision(ArchiveError):
    """A compare-and-set lost: the record moved on since it was read."""

    code = "stale_revision"


class DuplicateRecord(ArchiveError):
    code = "record_exists"


class IdempotencyConflict(ArchiveError):
    code = "idempotency_conflict"
