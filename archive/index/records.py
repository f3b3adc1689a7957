"""Records: creation (and corrections that supersede), lookups, listing and counts."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from archive.errors import ArchiveError, DuplicateRecord
from archive.index import schema as t
from archive.index.audit import AuditMixin
from archive.index.base import is_unique_violation
from archive.index.objects import ObjectsMixin
from archive.index.rows import AWAITING_SIGNATURES, AuditRow, RecordRow
from archive.store.base import StoredObject
from archive.verification import new_code

# The most records one `list_records` call returns.
MAX_LIST_LIMIT = 1000
# The audit action of a failed attempt to archive a record whose roles have all signed.
ARCHIVING_FAILED = "record.archiving_failed"


class ToFinish(NamedTuple):
    """A record whose roles have all signed, not archived (`records_to_finish`): how
    often archiving it failed, and when last."""

    row: RecordRow
    attempts: int
    last_attempt_at: datetime | None


class ArchivingAttempts(NamedTuple):
    """The failed attempts to archive one record (`archiving_attempts`): how many, and
    the newest (its detail: code, attempt, next_attempt_at, job_id)."""

    attempts: int
    last: AuditRow | None


class RecordCount(NamedTuple):
    """How many records of one school have one status and record type (`count_records`);
    `superseded` counts those of them that a correction replaced."""

    school_code: str
    status: str
    record_type: str
    total: int
    superseded: int


def _record(row: sa.Row[Any]) -> RecordRow:
    return RecordRow(**row._mapping)


class RecordsMixin(AuditMixin, ObjectsMixin):
    def create_record(
        self,
        *,
        tenant: str,
        school_code: str,
        school_name: str,
        record_type: str,
        policy: str,
        student_id_number: str,
        school_year: str,
        metadata_json: str,
        original: StoredObject,
        actor: str,
        audit_detail: Mapping[str, Any],
        supersedes: str | None = None,
        record_id: str | None = None,
        verification_code: str | None = None,
    ) -> RecordRow:
        """Insert a record awaiting signatures. With `supersedes`, it becomes the next
        version of that record's chain (of the same school), and the old one gains
        `superseded_by`."""
        record_id = record_id or str(uuid.uuid4())
        verification_code = verification_code or new_code()
        now = self._now()
        with self._write() as conn:
            chain_version = 1
            if supersedes is not None:
                old = self._get_record(conn, supersedes)
                if old is None:
                    raise ArchiveError(
                        f"superseded record {supersedes} does not exist",
                        code="supersedes_not_found",
                    )
                if (old.school_code, old.student_id_number, old.school_year,
                        old.record_type) != (
                    school_code,
                    student_id_number,
                    school_year,
                    record_type,
                ):
                    raise ArchiveError(
                        f"record {supersedes} is for another school, pupil, year or "
                        "record type",
                        code="supersedes_mismatch",
                    )
                chain_version = old.chain_version + 1
            try:
                conn.execute(
                    t.records.insert().values(
                        id=record_id,
                        tenant=tenant,
                        school_code=school_code,
                        school_name=school_name,
                        record_type=record_type,
                        policy=policy,
                        student_id_number=student_id_number,
                        school_year=school_year,
                        metadata_json=metadata_json,
                        status=AWAITING_SIGNATURES,
                        current_sha256=original.sha256,
                        current_size=original.size,
                        original_sha256=original.sha256,
                        supersedes=supersedes,
                        superseded_by=None,
                        chain_version=chain_version,
                        created_at=now,
                        updated_at=now,
                        archived_at=None,
                        verification_code=verification_code,
                    )
                )
            except sa.exc.IntegrityError as e:
                if is_unique_violation(e):
                    raise DuplicateRecord(
                        f"a record for pupil {student_id_number}, {school_year}, "
                        f"{record_type} already exists (version {chain_version})"
                    ) from e
                raise
            if supersedes is not None:
                linked = conn.execute(
                    t.records.update()
                    .where(t.records.c.id == supersedes, t.records.c.superseded_by.is_(None))
                    .values(superseded_by=record_id, updated_at=now)
                )
                if linked.rowcount != 1:
                    raise DuplicateRecord(f"record {supersedes} is already superseded")
            self._insert_object(conn, original, record_id, "original", now)
            if supersedes is not None:
                self._append_audit(
                    conn,
                    actor,
                    tenant,
                    "record.superseded",
                    supersedes,
                    {"superseded_by": record_id},
                    now,
                )
            self._append_audit(conn, actor, tenant, "record.created", record_id, audit_detail, now)
            return self._must_get_record(conn, record_id)

    def get_record(self, record_id: str) -> RecordRow | None:
        with self._read() as conn:
            return self._get_record(conn, record_id)

    def find_current_record(self, school_code: str, student_id_number: str,
                            school_year: str, record_type: str) -> RecordRow | None:
        """The newest record of a pupil's chain at a school for a year and type (not
        superseded)."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(t.records).where(
                    t.records.c.school_code == school_code,
                    t.records.c.student_id_number == student_id_number,
                    t.records.c.school_year == school_year,
                    t.records.c.record_type == record_type,
                    t.records.c.superseded_by.is_(None),
                ).order_by(t.records.c.chain_version.desc()).limit(1)
            ).first()
            return _record(row) if row else None

    def find_record_by_verification_code(self, code: str) -> RecordRow | None:
        """The record whose QR code carries `code` (canonical form)."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(t.records).where(t.records.c.verification_code == code)
            ).first()
            return _record(row) if row else None

    def list_records(
        self,
        schools: Collection[str],
        *,
        student_id_number: str | None = None,
        school_year: str | None = None,
        status: str | None = None,
        record_type: str | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[RecordRow]:
        """Records of `schools` matching the filters, in (created_at, id) order: the first
        `limit` whose key comes after `after` (keyset pagination).

        A record's key never changes, so a reader paging with the last key it saw meets
        every record that existed when it started exactly once, however many records are
        added meanwhile (a new one is met at most once)."""
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIST_LIMIT}")
        if not schools:
            return []
        r = t.records.c
        query = sa.select(t.records).where(r.school_code.in_(sorted(schools)))
        if student_id_number is not None:
            query = query.where(r.student_id_number == student_id_number)
        if school_year is not None:
            query = query.where(r.school_year == school_year)
        if status is not None:
            query = query.where(r.status == status)
        if record_type is not None:
            query = query.where(r.record_type == record_type)
        if after is not None:
            after_at, after_id = after
            if after_at.utcoffset() is None:
                raise ValueError("the cursor time must be timezone-aware")
            key = sa.tuple_(
                sa.literal(after_at, r.created_at.type), sa.literal(after_id, r.id.type)
            )
            query = query.where(sa.tuple_(r.created_at, r.id) > key)
        query = query.order_by(r.created_at, r.id).limit(limit)
        with self._read() as conn:
            return [_record(row) for row in conn.execute(query)]

    def count_records(
        self, schools: Collection[str], *, school_year: str | None = None
    ) -> list[RecordCount]:
        """Record counts of `schools` by school, status and record type."""
        if not schools:
            return []
        r = t.records.c
        superseded = sa.func.sum(sa.case((r.superseded_by.is_not(None), 1), else_=0))
        query = (
            sa.select(r.school_code, r.status, r.record_type, sa.func.count(), superseded)
            .where(r.school_code.in_(sorted(schools)))
            .group_by(r.school_code, r.status, r.record_type)
            .order_by(r.school_code, r.status, r.record_type)
        )
        if school_year is not None:
            query = query.where(r.school_year == school_year)
        with self._read() as conn:
            return [
                RecordCount(row[0], row[1], row[2], int(row[3]), int(row[4] or 0))
                for row in conn.execute(query)
            ]

    def record_chain(self, record_id: str, *, max_length: int = 1000) -> list[RecordRow]:
        """The correction chain `record_id` belongs to, oldest first (following
        `supersedes` back and `superseded_by` forward); [] for an unknown record."""
        with self._read() as conn:
            start = self._get_record(conn, record_id)
            if start is None:
                return []
            older: list[RecordRow] = []
            row = start
            while row.supersedes is not None and len(older) < max_length:
                prev = self._get_record(conn, row.supersedes)
                if prev is None:
                    break
                older.append(prev)
                row = prev
            newer: list[RecordRow] = []
            row = start
            while row.superseded_by is not None and len(newer) < max_length:
                nxt = self._get_record(conn, row.superseded_by)
                if nxt is None:
                    break
                newer.append(nxt)
                row = nxt
            return [*reversed(older), start, *newer]

    def records_to_finish(self, last_roles: Mapping[str, str], before: datetime, *,
                          limit: int = 1000) -> list[ToFinish]:
        """Records awaiting signatures (not superseded) whose last role has signed,
        unchanged since before `before`: signed, not archived (a crash, a TSA outage, a
        store refusal between the last signature and the archive). `last_roles`: record
        type -> its policy's last role (roles sign in order). Never tried first, then
        the longest waiting."""
        if not last_roles:
            return []
        r, s, a = t.records.c, t.signatures.c, t.audit.c
        last_signed = sa.exists().where(
            s.record_id == r.id,
            sa.or_(*(sa.and_(r.record_type == record_type, s.role == role)
                     for record_type, role in sorted(last_roles.items()))))
        failed = sa.and_(a.record_id == r.id, a.action == ARCHIVING_FAILED)
        attempts = sa.select(sa.func.count()).where(failed).scalar_subquery()
        last_at = sa.select(sa.func.max(a.at)).where(failed).scalar_subquery()
        query = (sa.select(t.records, attempts.label("attempts"), last_at.label("last_at"))
                 .where(r.status == AWAITING_SIGNATURES, r.superseded_by.is_(None),
                        r.updated_at < before, last_signed)
                 .order_by(attempts, r.updated_at, r.id).limit(limit))
        columns = t.records.c.keys()
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [ToFinish(RecordRow(**{k: row._mapping[k] for k in columns}),
                         int(row.attempts or 0), _utc(row.last_at)) for row in rows]

    def archiving_attempts(self, record_id: str) -> ArchivingAttempts:
        """The failed attempts to archive `record_id` (audited as ARCHIVING_FAILED)."""
        a = t.audit.c
        failed = sa.and_(a.record_id == record_id, a.action == ARCHIVING_FAILED)
        with self._read() as conn:
            count = conn.scalar(sa.select(sa.func.count()).select_from(t.audit).where(failed))
            last = conn.execute(sa.select(t.audit).where(failed)
                                .order_by(a.seq.desc()).limit(1)).first()
        return ArchivingAttempts(int(count or 0), AuditRow(**last._mapping) if last else None)

    def _get_record(self, conn: Connection, record_id: str) -> RecordRow | None:
        row = conn.execute(sa.select(t.records).where(t.records.c.id == record_id)).first()
        return _record(row) if row else None

    def _must_get_record(self, conn: Connection, record_id: str) -> RecordRow:
        record = self._get_record(conn, record_id)
        assert record is not None
        return record


def _utc(value: datetime | None) -> datetime | None:
    """A time from an aggregate: SQLite gives it back naive (UTC), or as text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.utcoffset() is not None else value.replace(tzinfo=UTC)
