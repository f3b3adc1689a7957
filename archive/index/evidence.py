"""Evidence rows: which archived objects have evidence records, of which batch, valid
until when; and what still needs some."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from archive.index import schema as t
from archive.index.audit import AuditMixin
from archive.index.objects import ObjectsMixin
from archive.index.rows import EvidenceBatchRow, EvidenceRow, PendingObject
from archive.store.base import Area, StoredObject

EVIDENCE_KIND = "evidence"  # objects.kind of a stored evidence record


@dataclass(frozen=True)
class NewEvidence:
    """One evidence record to index: the object it proves and the stored record."""

    object_sha256: str
    record_id: str
    stored: StoredObject
    generation: int


def _evidence(row: sa.Row[Any]) -> EvidenceRow:
    return EvidenceRow(**row._mapping)


class EvidenceMixin(AuditMixin, ObjectsMixin):
    def objects_without_evidence(self, limit: int) -> list[PendingObject]:
        """Archived versions' objects that have no evidence record, oldest first."""
        v, e = t.versions.c, t.evidence.c
        first = sa.func.min(v.created_at).label("archived_at")
        query = (sa.select(v.sha256, sa.func.min(v.record_id).label("record_id"), first)
                 .where(~sa.exists().where(e.object_sha256 == v.sha256))
                 .group_by(v.sha256).order_by(first, v.sha256).limit(limit))
        with self._read() as conn:
            return [PendingObject(r.sha256, r.record_id, r.archived_at)
                    for r in conn.execute(query)]

    def count_without_evidence(self) -> int:
        v, e = t.versions.c, t.evidence.c
        with self._read() as conn:
            return int(conn.scalar(
                sa.select(sa.func.count(sa.distinct(v.sha256)))
                .where(~sa.exists().where(e.object_sha256 == v.sha256))) or 0)

    def add_evidence_batch(self, batch: EvidenceBatchRow, items: Sequence[NewEvidence],
                           *, valid_until: datetime, actor: str) -> int:
        """Index a batch and its stored evidence records in one transaction; each item's
        earlier generation stops being current. Items whose generation exists already
        (a rerun after a crash raced this one) are skipped; returns how many were added."""
        now = self._now()
        e = t.evidence.c
        added = 0
        with self._write() as conn:
            conn.execute(t.evidence_batches.insert().values(**batch.__dict__))
            for item in items:
                if item.stored.area is not Area.ARCHIVE:
                    raise ValueError("evidence records are stored in the archive area")
                exists = conn.scalar(sa.select(sa.func.count()).where(
                    e.object_sha256 == item.object_sha256, e.generation >= item.generation))
                if exists:
                    continue
                conn.execute(t.evidence.update().where(
                    e.object_sha256 == item.object_sha256, e.current.is_(True))
                    .values(current=False))
                conn.execute(t.evidence.insert().values(
                    object_sha256=item.object_sha256, generation=item.generation,
                    record_id=item.record_id, evidence_sha256=item.stored.sha256,
                    size=item.stored.size, batch_id=batch.id, algorithm=batch.algorithm,
                    valid_until=valid_until, current=True, created_at=now))
                self._insert_object(conn, item.stored, item.record_id, EVIDENCE_KIND, now)
                added += 1
            self._append_audit(conn, actor, None, f"evidence.{batch.kind}", None,
                               {"batch_id": batch.id, "size": added,
                                "algorithm": batch.algorithm, "root": batch.root,
                                "timestamp_time": batch.timestamp_time.isoformat()}, now)
        return added

    def current_evidence(self, object_sha256: str) -> EvidenceRow | None:
        e = t.evidence.c
        with self._read() as conn:
            row = conn.execute(sa.select(t.evidence).where(
                e.object_sha256 == object_sha256, e.current.is_(True))).first()
        return _evidence(row) if row else None

    def evidence_of_record(self, record_id: str) -> list[EvidenceRow]:
        """Every evidence record of the record's objects, by object and generation."""
        e = t.evidence.c
        with self._read() as conn:
            return [_evidence(r) for r in conn.execute(
                sa.select(t.evidence).where(e.record_id == record_id)
                .order_by(e.created_at, e.object_sha256, e.generation))]

    def evidence_groups_due(self, before: datetime, weak_algorithms: Sequence[str] = ()
                            ) -> list[tuple[str, int, datetime]]:
        """(batch id, members, valid until) of the current evidence due before `before`
        or hashed with one of `weak_algorithms`, soonest first: one group shares its
        newest archive timestamp."""
        e = t.evidence.c
        until = sa.func.min(e.valid_until)
        due = e.valid_until < before
        if weak_algorithms:
            due = sa.or_(due, e.algorithm.in_(list(weak_algorithms)))
        with self._read() as conn:
            return [(r[0], int(r[1]), r[2]) for r in conn.execute(
                sa.select(e.batch_id, sa.func.count(), until)
                .where(e.current.is_(True), due)
                .group_by(e.batch_id).order_by(until, e.batch_id))]

    def evidence_algorithms(self) -> list[str]:
        """The hash algorithms of current evidence records."""
        e = t.evidence.c
        with self._read() as conn:
            return sorted(conn.execute(sa.select(e.algorithm).distinct()
                                       .where(e.current.is_(True))).scalars())

    def current_evidence_in_batch(self, batch_id: str) -> list[EvidenceRow]:
        e = t.evidence.c
        with self._read() as conn:
            return [_evidence(r) for r in conn.execute(
                sa.select(t.evidence).where(e.batch_id == batch_id, e.current.is_(True))
                .order_by(e.object_sha256))]

    def evidence_counts(self, now: datetime, soon: datetime) -> dict[str, int]:
        """Objects by evidence state: missing, current (valid beyond `soon`), due, overdue."""
        e = t.evidence.c
        with self._read() as conn:
            def count(*where: Any) -> int:
                return int(conn.scalar(sa.select(sa.func.count()).select_from(t.evidence)
                                       .where(e.current.is_(True), *where)) or 0)
            overdue = count(e.valid_until <= now)
            due = count(e.valid_until > now, e.valid_until <= soon)
            ok = count(e.valid_until > soon)
        return {"missing": self.count_without_evidence(), "ok": ok, "due": due,
                "overdue": overdue}
