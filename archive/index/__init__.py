"""The index: records, signatures, versions, objects, idempotency answers, audit log,
jobs and share links."""

from archive.index.index import Index
from archive.index.rows import (
    ARCHIVED,
    AWAITING_SIGNATURES,
    JOB_FINISHED,
    JOB_QUEUED,
    JOB_RUNNING,
    SHARE_GUARDIAN,
    SHARE_TRANSFER,
    AuditRow,
    IdempotencyRow,
    IdempotencyWrite,
    JobRow,
    ObjectRow,
    RecordRow,
    ShareLinkRow,
    SignatureRow,
    TransferRow,
    VersionRow,
)
from archive.index.service_state import ARCHIVE_LOCK, FlagRow, JobQueue

__all__ = [
    "ARCHIVED",
    "ARCHIVE_LOCK",
    "AWAITING_SIGNATURES",
    "JOB_FINISHED",
    "JOB_QUEUED",
    "JOB_RUNNING",
    "SHARE_GUARDIAN",
    "SHARE_TRANSFER",
    "AuditRow",
    "FlagRow",
    "IdempotencyRow",
    "IdempotencyWrite",
    "Index",
    "JobQueue",
    "JobRow",
    "ObjectRow",
    "RecordRow",
    "ShareLinkRow",
    "SignatureRow",
    "TransferRow",
    "VersionRow",
]
