"""School transfers: the sending school lets the receiving school read one pupil's
archived records. Recorded for ever and audited; nothing here changes a record."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa

from archive.index import schema as t
from archive.index.records import RecordsMixin, _record
from archive.index.rows import ARCHIVED, RecordRow, TransferRow


def _transfer(row: sa.Row[Any]) -> TransferRow:
    return TransferRow(**row._mapping)


class TransfersMixin(RecordsMixin):
    def create_transfer(self, *, student_id_number: str, from_school: str, to_school: str,
                        from_tenant: str, actor: str, note: str | None = None
                        ) -> TransferRow:
        if from_school == to_school:
            raise ValueError("a transfer goes to another school")
        transfer_id = str(uuid.uuid4())
        now = self._now()
        with self._write() as conn:
            conn.execute(t.transfers.insert().values(
                id=transfer_id, student_id_number=student_id_number,
                from_school=from_school, to_school=to_school, from_tenant=from_tenant,
                created_by=actor, created_at=now, note=note))
            self._append_audit(conn, actor, from_tenant, "transfer.created", None,
                               {"transfer_id": transfer_id, "from_school": from_school,
                                "to_school": to_school}, now)
            row = conn.execute(sa.select(t.transfers).where(t.transfers.c.id == transfer_id)
                               ).one()
            return _transfer(row)

    def get_transfer(self, transfer_id: str) -> TransferRow | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(t.transfers).where(t.transfers.c.id == transfer_id)).first()
            return _transfer(row) if row else None

    def list_transfers(self, schools: Collection[str], *, limit: int = 500
                       ) -> list[TransferRow]:
        """Transfers from or to any of `schools`, newest first."""
        if not schools:
            return []
        c = t.transfers.c
        names = sorted(schools)
        with self._read() as conn:
            rows = conn.execute(
                sa.select(t.transfers)
                .where(sa.or_(c.from_school.in_(names), c.to_school.in_(names)))
                .order_by(c.created_at.desc(), c.id).limit(limit))
            return [_transfer(row) for row in rows]

    def transferred_to(self, record: RecordRow, schools: Collection[str]) -> bool:
        """Whether a transfer lets one of `schools` read `record` (archived, of the
        transferred pupil, held by the sending school)."""
        if record.status != ARCHIVED or not schools:
            return False
        c = t.transfers.c
        with self._read() as conn:
            found = conn.execute(
                sa.select(c.id).where(
                    c.student_id_number == record.student_id_number,
                    c.from_school == record.school_code,
                    c.to_school.in_(sorted(schools)),
                ).limit(1)).first()
            return found is not None

    def transferred_records(self, transfer: TransferRow) -> list[RecordRow]:
        """The pupil's archived records at the sending school, oldest first."""
        r = t.records.c
        with self._read() as conn:
            rows = conn.execute(
                sa.select(t.records).where(
                    r.school_code == transfer.from_school,
                    r.student_id_number == transfer.student_id_number,
                    r.status == ARCHIVED,
                ).order_by(r.created_at, r.id))
            return [_record(row) for row in rows]
