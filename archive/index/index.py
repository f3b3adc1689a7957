"""The index: what the stored objects mean (records, signatures, versions, audit log,
jobs, share links).

Every write is one transaction. Record state moves by compare-and-set on
`current_sha256`, so of two concurrent steps exactly one wins. The audit log is appended
last in each write transaction, under a lock, so its hash chain never forks.

`Index` is composed of one mixin per aggregate, all on `IndexBase` (the connection).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from archive.index import schema as t
from archive.index.audit import AuditMixin
from archive.index.base import IndexBase
from archive.index.evidence import EvidenceMixin
from archive.index.idempotency import IdempotencyMixin
from archive.index.jobs import JobsMixin
from archive.index.objects import ObjectsMixin
from archive.index.records import RecordCount, RecordsMixin
from archive.index.service_state import ServiceStateMixin
from archive.index.sessions import SessionsMixin
from archive.index.share_links import ShareLinksMixin
from archive.index.signatures import SignaturesMixin
from archive.index.transfers import TransfersMixin

__all__ = ["Index", "RecordCount"]


class Index(
    ServiceStateMixin,
    EvidenceMixin,
    TransfersMixin,
    SignaturesMixin,
    ShareLinksMixin,
    RecordsMixin,
    JobsMixin,
    SessionsMixin,
    AuditMixin,
    ObjectsMixin,
    IdempotencyMixin,
    IndexBase,
):
    def totals(self) -> dict[str, dict[str, int]]:
        """Counts for monitoring: records by status, jobs by status, signing sessions."""
        with self._read() as conn:
            records: dict[Any, Any] = dict(
                conn.execute(sa.select(t.records.c.status, sa.func.count())
                             .group_by(t.records.c.status)).all())
            jobs: dict[Any, Any] = dict(
                conn.execute(sa.select(t.jobs.c.status, sa.func.count())
                             .group_by(t.jobs.c.status)).all())
            audit = conn.execute(sa.select(sa.func.count()).select_from(t.audit)).scalar()
        return {"records": {str(k): int(v) for k, v in records.items()},
                "jobs": {str(k): int(v) for k, v in jobs.items()},
                "audit": {"rows": int(audit or 0)}}
