"""Service-wide state that every worker and instance reads from the index: flags that
make the service not ready until an operator clears them, and the job queue's depth
and age (for monitoring)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from archive.index import schema as t
from archive.index.audit import AuditMixin
from archive.index.rows import JOB_QUEUED, JOB_RUNNING

# The store kept a weaker Object Lock than asked (signer.service.archiving)
ARCHIVE_LOCK = "archive_lock"
FLAGS = frozenset({ARCHIVE_LOCK})


@dataclass(frozen=True)
class FlagRow:
    name: str
    detail: str
    raised_at: datetime
    last_raised_at: datetime
    occurrences: int
    record_id: str | None


@dataclass(frozen=True)
class JobQueue:
    """Jobs waiting for a worker: queued, or running with a lease that ran out (their
    worker died); `oldest_created_at` of the oldest of them (None: none waits)."""

    waiting: int
    oldest_created_at: datetime | None


def _flag(row: sa.Row[Any]) -> FlagRow:
    return FlagRow(**row._mapping)


class ServiceStateMixin(AuditMixin):
    def raise_flag(self, name: str, detail: str, *, actor: str, tenant: str | None = None,
                   record_id: str | None = None) -> FlagRow:
        """Raise `name` (or count it again while raised: the newest detail is kept, and
        when it was first raised). Audited."""
        if name not in FLAGS:
            raise ValueError(f"unknown service flag {name!r}")
        now = self._now()
        values = {"name": name, "detail": detail, "raised_at": now, "last_raised_at": now,
                  "occurrences": 1, "record_id": record_id}
        c = t.service_flags.c
        with self._write() as conn:
            insert = (sqlite.insert(t.service_flags) if self.dialect == "sqlite"
                      else postgresql.insert(t.service_flags))
            conn.execute(insert.values(**values).on_conflict_do_update(
                index_elements=[c.name],
                set_={"detail": detail, "last_raised_at": now, "record_id": record_id,
                      "occurrences": c.occurrences + 1}))
            self._append_audit(conn, actor, tenant, "flag.raised", record_id,
                               {"flag": name, "detail": detail}, now)
            return _flag(conn.execute(sa.select(t.service_flags)
                                      .where(c.name == name)).one())

    def clear_flag(self, name: str, *, actor: str) -> FlagRow | None:
        """Clear `name`: the row it was (None when it was not raised, and nothing is
        audited then)."""
        now = self._now()
        c = t.service_flags.c
        with self._write() as conn:
            row = conn.execute(sa.select(t.service_flags).where(c.name == name)).first()
            if row is None:
                return None
            flag = _flag(row)
            conn.execute(t.service_flags.delete().where(c.name == name))
            self._append_audit(conn, actor, None, "flag.cleared", None,
                               {"flag": name, "detail": flag.detail,
                                "occurrences": flag.occurrences,
                                "raised_at": flag.raised_at.isoformat()}, now)
            return flag

    def get_flag(self, name: str) -> FlagRow | None:
        with self._read() as conn:
            row = conn.execute(sa.select(t.service_flags)
                               .where(t.service_flags.c.name == name)).first()
            return _flag(row) if row else None

    def list_flags(self) -> list[FlagRow]:
        with self._read() as conn:
            return [_flag(row) for row in conn.execute(
                sa.select(t.service_flags).order_by(t.service_flags.c.name))]

    def job_queue(self) -> JobQueue:
        c = t.jobs.c
        waiting = sa.or_(c.status == JOB_QUEUED,
                         sa.and_(c.status == JOB_RUNNING,
                                 sa.or_(c.lease_until.is_(None), c.lease_until < self._now())))
        with self._read() as conn:
            count, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(c.created_at)).where(waiting)).one()
        return JobQueue(waiting=int(count or 0), oldest_created_at=oldest)
