"""Two-step signing sessions: opened, then completed once."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from archive.index import schema as t
from archive.index.audit import AuditMixin
from archive.index.chain import canonical_json
from archive.index.rows import SESSION_COMPLETED, SESSION_OPEN, SigningSessionRow


def _session(row: sa.Row[Any]) -> SigningSessionRow:
    return SigningSessionRow(**row._mapping)


class SessionsMixin(AuditMixin):
    def create_signing_session(self, *, session_id: str, tenant: str, kind: str, role: str,
                               created_by: str, state: Mapping[str, Any],
                               expires_at: datetime) -> SigningSessionRow:
        now = self._now()
        with self._write() as conn:
            conn.execute(t.signing_sessions.insert().values(
                id=session_id, tenant=tenant, kind=kind, role=role, status=SESSION_OPEN,
                created_by=created_by, state_json=canonical_json(state), created_at=now,
                expires_at=expires_at, completed_at=None))
            self._append_audit(conn, created_by, tenant, "signing_session.created", None,
                               {"session_id": session_id, "kind": kind, "role": role}, now)
            row = conn.execute(sa.select(t.signing_sessions)
                               .where(t.signing_sessions.c.id == session_id)).one()
            return _session(row)

    def get_signing_session(self, session_id: str) -> SigningSessionRow | None:
        with self._read() as conn:
            row = conn.execute(sa.select(t.signing_sessions)
                               .where(t.signing_sessions.c.id == session_id)).first()
            return _session(row) if row else None

    def complete_signing_session(self, session_id: str, actor: str) -> bool:
        """Mark an open session completed; False when it already was (compare-and-set)."""
        now = self._now()
        with self._write() as conn:
            result = conn.execute(
                t.signing_sessions.update()
                .where(t.signing_sessions.c.id == session_id,
                       t.signing_sessions.c.status == SESSION_OPEN)
                .values(status=SESSION_COMPLETED, completed_at=now))
            if not result.rowcount:
                return False
            tenant = conn.execute(sa.select(t.signing_sessions.c.tenant)
                                  .where(t.signing_sessions.c.id == session_id)).scalar()
            self._append_audit(conn, actor, tenant, "signing_session.completed", None,
                               {"session_id": session_id}, now)
            return True
