"""The audit log: a hash chain, appended last in each write transaction, under a lock,
so it never forks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from archive.index import base
from archive.index import schema as t
from archive.index.base import IndexBase
from archive.index.chain import GENESIS, audit_hash, canonical_json
from archive.index.rows import AuditRow

# Key of the PostgreSQL advisory lock that serializes audit appends ("hocb").
AUDIT_LOCK_KEY = 0x686F6362


def _audit(row: sa.Row[Any]) -> AuditRow:
    return AuditRow(**row._mapping)


class AuditMixin(IndexBase):
    def append_audit(
        self,
        actor: str,
        tenant: str | None,
        action: str,
        record_id: str | None,
        detail: Mapping[str, Any],
    ) -> AuditRow:
        now = self._now()
        with self._write() as conn:
            return self._append_audit(conn, actor, tenant, action, record_id, detail, now)

    def list_audit(
        self, record_id: str | None = None, *, after_seq: int = 0, limit: int = 100
    ) -> list[AuditRow]:
        query = sa.select(t.audit).where(t.audit.c.seq > after_seq)
        if record_id is not None:
            query = query.where(t.audit.c.record_id == record_id)
        query = query.order_by(t.audit.c.seq).limit(limit)
        with self._read() as conn:
            return [_audit(row) for row in conn.execute(query)]

    def verify_audit_chain(self) -> tuple[bool, int | None]:
        """Recompute the chain: (True, None), or (False, seq of the first bad row)."""
        prev_seq, prev_hash = 0, GENESIS
        while True:
            page = self.list_audit(after_seq=prev_seq, limit=base.PAGE_SIZE)
            for row in page:
                try:
                    detail = json.loads(row.detail_json)
                except ValueError:
                    return False, row.seq
                expected = audit_hash(
                    seq=row.seq,
                    at=row.at,
                    actor=row.actor,
                    tenant=row.tenant,
                    action=row.action,
                    record_id=row.record_id,
                    detail=detail,
                    prev_hash=row.prev_hash,
                )
                if row.seq != prev_seq + 1 or row.prev_hash != prev_hash or row.hash != expected:
                    return False, row.seq
                prev_seq, prev_hash = row.seq, row.hash
            if len(page) < base.PAGE_SIZE:
                return True, None

    def _append_audit(
        self,
        conn: Connection,
        actor: str,
        tenant: str | None,
        action: str,
        record_id: str | None,
        detail: Mapping[str, Any],
        now: datetime,
    ) -> AuditRow:
        if self.dialect == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(AUDIT_LOCK_KEY)))
        # SQLite: the write transaction began IMMEDIATE, so it already holds the lock.
        last = conn.execute(
            sa.select(t.audit.c.seq, t.audit.c.hash).order_by(t.audit.c.seq.desc()).limit(1)
        ).first()
        seq, prev_hash = (last.seq + 1, last.hash) if last else (1, GENESIS)
        detail = json.loads(canonical_json(detail))  # as it will read back
        row = AuditRow(
            seq=seq,
            at=now,
            actor=actor,
            tenant=tenant,
            action=action,
            record_id=record_id,
            detail_json=canonical_json(detail),
            prev_hash=prev_hash,
            hash=audit_hash(
                seq=seq,
                at=now,
                actor=actor,
                tenant=tenant,
                action=action,
                record_id=record_id,
                detail=detail,
                prev_hash=prev_hash,
            ),
        )
        conn.execute(t.audit.insert().values(**asdict(row)))
        return row
