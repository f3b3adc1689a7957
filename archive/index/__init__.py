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

__all__ = [
    "ARCHIVED",
    "AWAITING_SIGNATURES",
    "JOB_FINISHED",
    "JOB_QUEUED",
    "JOB_RUNNING",
    "SHARE_GUARDIAN",
    "SHARE_TRANSFER",
    "AuditRow",
    "IdempotencyRow",
    "IdempotencyWrite",
    "Index",
    "JobRow",
    "ObjectRow",
    "RecordRow",
    "ShareLinkRow",
    "SignatureRow",
    "TransferRow",
    "VersionRow",
]
