"""What the index hands out: frozen dataclasses, never SQLAlchemy objects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from archive.store.base import Area

AWAITING_SIGNATURES = "awaiting_signatures"
ARCHIVED = "archived"


@dataclass(frozen=True)
class RecordRow:
    id: str
    tenant: str
    school_code: str
    school_name: str
    record_type: str
    policy: str
    student_id_number: str
    school_year: str
    metadata_json: str
    status: str
    current_sha256: str
    current_size: int
    original_sha256: str
    supersedes: str | None
    superseded_by: str | None
    chain_version: int
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
    verification_code: str | None = None
    """What the record's QR code carries (archive.verification, canonical form)."""


@dataclass(frozen=True)
class SignatureRow:
    id: int
    record_id: str
    role: str
    position: int
    signer_key: str | None
    signer_subject: str
    signer_issuer: str
    signer_serial: str
    field_name: str
    signed_at: datetime
    revision_sha256: str


@dataclass(frozen=True)
class VersionRow:
    record_id: str
    version: int
    sha256: str
    size: int
    reason: str  # "archived" | "renewed" | "superseded"
    created_at: datetime
    timestamp_valid_until: datetime | None = None


@dataclass(frozen=True)
class ObjectRow:
    sha256: str
    area: Area
    size: int
    record_id: str | None
    kind: str  # "original" | "revision" | "final" | "evidence"
    created_at: datetime


@dataclass(frozen=True)
class IdempotencyWrite:
    """A stored answer to write together with the change it answers for."""

    tenant: str
    key: str
    request_hash: str
    status_code: int
    response_json: str


@dataclass(frozen=True)
class IdempotencyRow:
    tenant: str
    key: str
    request_hash: str
    status_code: int
    response_json: str
    created_at: datetime


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: datetime
    actor: str
    tenant: str | None
    action: str
    record_id: str | None
    detail_json: str
    prev_hash: str
    hash: str

    @property
    def detail(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.detail_json)
        return value


JOB_QUEUED = "queued"
JOB_RUNNING = "running"
JOB_FINISHED = "finished"

SHARE_TRANSFER = "transfer"
SHARE_GUARDIAN = "guardian"
SHARE_PURPOSES = frozenset({SHARE_TRANSFER, SHARE_GUARDIAN})


@dataclass(frozen=True)
class JobRow:
    id: str
    tenant: str
    kind: str
    status: str  # JOB_QUEUED | JOB_RUNNING | JOB_FINISHED
    total: int
    done: int  # items handled, failed ones included
    failed_json: str
    params_json: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    lease_owner: str | None = None
    lease_until: datetime | None = None

    @property
    def failed(self) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = json.loads(self.failed_json)
        return value

    @property
    def params(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.params_json)
        return value


@dataclass(frozen=True)
class ShareLinkRow:
    token_sha256: str
    record_id: str
    purpose: str  # SHARE_TRANSFER | SHARE_GUARDIAN
    created_by: str
    created_at: datetime
    expires_at: datetime
    uses: int
    id: str | None = None
    """The link's public id (listing, revoking); never the token."""
    revoked_at: datetime | None = None
    revoked_by: str | None = None


@dataclass(frozen=True)
class TransferRow:
    """The sending school lets the receiving school read one pupil's archived records."""

    id: str
    student_id_number: str
    from_school: str
    to_school: str
    from_tenant: str
    created_by: str
    created_at: datetime
    note: str | None


SESSION_OPEN = "open"
SESSION_COMPLETED = "completed"


@dataclass(frozen=True)
class SigningSessionRow:
    id: str
    tenant: str
    kind: str  # "single" | "batch"
    role: str
    status: str  # SESSION_OPEN | SESSION_COMPLETED
    created_by: str
    state_json: str
    created_at: datetime
    expires_at: datetime
    completed_at: datetime | None

    @property
    def state(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.state_json)
        return value


@dataclass(frozen=True)
class EvidenceRow:
    """One evidence record of an archived object (`generation` 1 first, then renewals)."""

    object_sha256: str
    generation: int
    record_id: str
    evidence_sha256: str
    size: int
    batch_id: str
    algorithm: str
    valid_until: datetime
    current: bool
    created_at: datetime


@dataclass(frozen=True)
class EvidenceBatchRow:
    id: str
    kind: str  # "initial" | "timestamp" | "hash_tree"
    algorithm: str
    size: int
    root: str
    timestamp_time: datetime
    created_at: datetime


@dataclass(frozen=True)
class PendingObject:
    """An archived object without evidence yet."""

    sha256: str
    record_id: str
    archived_at: datetime
