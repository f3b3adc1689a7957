"""The index: what the stored objects mean (records, signatures, versions, audit log,
jobs, share links).

Every write is one transaction. Record state moves by compare-and-set on
`current_sha256`, so of two concurrent steps exactly one wins. The audit log is appended
last in each write transaction, under a lock, so its hash chain never forks.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from archive.errors import ArchiveError, DuplicateRecord, IdempotencyConflict, StaleRevision
from archive.index import migrate as migrations
from archive.index import schema as t
from archive.index.chain import GENESIS, audit_hash, canonical_json
from archive.index.rows import (
    ARCHIVED,
    AWAITING_SIGNATURES,
    JOB_FINISHED,
    JOB_QUEUED,
    JOB_RUNNING,
    SESSION_COMPLETED,
    SESSION_OPEN,
    SHARE_PURPOSES,
    AuditRow,
    IdempotencyRow,
    IdempotencyWrite,
    JobRow,
    ObjectRow,
    RecordRow,
    ShareLinkRow,
    SignatureRow,
    SigningSessionRow,
    VersionRow,
)
from archive.store.base import Area, StoredObject

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Key of the PostgreSQL advisory lock that serializes audit appends ("hocb").
AUDIT_LOCK_KEY = 0x686F6362
PAGE_SIZE = 500
# The most records one `list_records` call returns.
MAX_LIST_LIMIT = 1000


class RecordCount(NamedTuple):
    """How many records of one school have one status and record type (`count_records`);
    `superseded` counts those of them that a correction replaced."""

    school_code: str
    status: str
    record_type: str
    total: int
    superseded: int


def utc_now() -> datetime:
    return datetime.now(UTC)


def _is_unique_violation(e: sa.exc.IntegrityError) -> bool:
    sqlstate = getattr(e.orig, "sqlstate", None)  # psycopg
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    name = getattr(e.orig, "sqlite_errorname", "")
    return name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


def _record(row: sa.Row[Any]) -> RecordRow:
    return RecordRow(**row._mapping)


def _signature(row: sa.Row[Any]) -> SignatureRow:
    return SignatureRow(**row._mapping)


def _version(row: sa.Row[Any]) -> VersionRow:
    return VersionRow(**row._mapping)


def _idempotency(row: sa.Row[Any]) -> IdempotencyRow:
    return IdempotencyRow(**row._mapping)


def _audit(row: sa.Row[Any]) -> AuditRow:
    return AuditRow(**row._mapping)


def _job(row: sa.Row[Any]) -> JobRow:
    return JobRow(**row._mapping)


def _session(row: sa.Row[Any]) -> SigningSessionRow:
    return SigningSessionRow(**row._mapping)


def _share_link(row: sa.Row[Any]) -> ShareLinkRow:
    return ShareLinkRow(**row._mapping)


def _object(row: sa.Row[Any]) -> ObjectRow:
    values = dict(row._mapping)
    values["area"] = Area(values["area"])
    return ObjectRow(**values)


class Index:
    def __init__(self, url: str, *, clock: Callable[[], datetime] = utc_now) -> None:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self._clock = clock
        self._engine: Engine = sa.create_engine(parsed, pool_pre_ping=True)
        self.dialect = self._engine.dialect.name
        if self.dialect == "sqlite":
            _configure_sqlite(self._engine)

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision (see `archive.index.migrate`).

        Safe to call from several workers starting at once, and a no-op when up to date.
        An index made by `create_all` before there were migrations is stamped first."""
        try:
            migrations.upgrade(self._engine)
        except sa.exc.OperationalError as e:
            raise ArchiveError(f"index unavailable: {e}", code="index_unavailable") from e

    def create_schema(self) -> None:
        """Old name of `migrate`."""
        self.migrate()

    def schema_revision(self) -> str | None:
        """The revision the database is at (None before the first migration)."""
        with self._read() as conn:
            return migrations.current_revision(conn)

    def close(self) -> None:
        self._engine.dispose()

    def check(self) -> None:
        with self._read() as conn:
            conn.execute(sa.select(1))

    # -- records -----------------------------------------------------------------------

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
    ) -> RecordRow:
        """Insert a record awaiting signatures. With `supersedes`, it becomes the next
        version of that record's chain, and the old one gains `superseded_by`."""
        record_id = record_id or str(uuid.uuid4())
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
                if (old.student_id_number, old.school_year, old.record_type) != (
                    student_id_number,
                    school_year,
                    record_type,
                ):
                    raise ArchiveError(
                        f"record {supersedes} is for another pupil, year or record type",
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
                    )
                )
            except sa.exc.IntegrityError as e:
                if _is_unique_violation(e):
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

    def working_objects_in_use(self, sha256s: Collection[str], *, other_than: str
                               ) -> set[str]:
        """Those of `sha256s` that a record other than `other_than`, not archived yet,
        still needs as working objects (byte-identical uploads share one
        content-addressed name)."""
        wanted = set(sha256s)
        if not wanted:
            return set()
        names = sorted(wanted)
        r, sig = t.records.c, t.signatures.c
        others = sa.and_(r.id != other_than, r.status != ARCHIVED)
        with self._read() as conn:
            used = set(conn.execute(
                sa.select(r.original_sha256, r.current_sha256).where(
                    others, sa.or_(r.original_sha256.in_(names),
                                   r.current_sha256.in_(names)))).all())
            used_by_signatures = conn.execute(
                sa.select(sig.revision_sha256).distinct()
                .join(t.records, r.id == sig.record_id)
                .where(others, sig.revision_sha256.in_(names))).scalars().all()
        found = {sha for pair in used for sha in pair} | set(used_by_signatures)
        return found & wanted

    def find_current_record(self, student_id_number: str, school_year: str,
                            record_type: str) -> RecordRow | None:
        """The newest record of a pupil's chain for a year and type (not superseded)."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(t.records).where(
                    t.records.c.student_id_number == student_id_number,
                    t.records.c.school_year == school_year,
                    t.records.c.record_type == record_type,
                    t.records.c.superseded_by.is_(None),
                ).order_by(t.records.c.chain_version.desc()).limit(1)
            ).first()
            return _record(row) if row else None

    def list_signatures(self, record_id: str) -> list[SignatureRow]:
        query = (
            sa.select(t.signatures)
            .where(t.signatures.c.record_id == record_id)
            .order_by(t.signatures.c.position, t.signatures.c.id)
        )
        with self._read() as conn:
            return [_signature(row) for row in conn.execute(query)]

    def add_signature(
        self,
        record_id: str,
        expected_current_sha256: str,
        new_object: StoredObject,
        *,
        role: str,
        position: int,
        signer_subject: str,
        signer_issuer: str,
        signer_serial: str,
        field_name: str,
        signed_at: datetime,
        signer_key: str | None = None,
        actor: str,
        audit_detail: Mapping[str, Any],
        idempotency: IdempotencyWrite | None = None,
    ) -> RecordRow:
        """Move `current` from `expected_current_sha256` to the signed revision and record
        the signature, in one transaction. A lost compare-and-set raises StaleRevision."""
        if signed_at.utcoffset() is None:
            raise ValueError("signed_at must be timezone-aware")
        now = self._now()
        with self._write() as conn:
            self._compare_and_set(
                conn,
                record_id,
                expected_current_sha256,
                current_sha256=new_object.sha256,
                current_size=new_object.size,
                updated_at=now,
            )
            try:
                conn.execute(
                    t.signatures.insert().values(
                        record_id=record_id,
                        role=role,
                        position=position,
                        signer_key=signer_key,
                        signer_subject=signer_subject,
                        signer_issuer=signer_issuer,
                        signer_serial=signer_serial,
                        field_name=field_name,
                        signed_at=signed_at,
                        revision_sha256=new_object.sha256,
                    )
                )
            except sa.exc.IntegrityError as e:
                if _is_unique_violation(e):
                    raise StaleRevision(f"record {record_id} is already signed as {role}") from e
                raise
            self._insert_object(conn, new_object, record_id, "revision", now)
            return self._finish_step(
                conn, record_id, "record.signed", actor, audit_detail, idempotency, now
            )

    def mark_archived(
        self,
        record_id: str,
        expected_current_sha256: str,
        final: StoredObject,
        *,
        actor: str,
        audit_detail: Mapping[str, Any],
        idempotency: IdempotencyWrite | None = None,
    ) -> RecordRow:
        """Point the record at its locked final in ARCHIVE and add it as a version."""
        if final.area is not Area.ARCHIVE:
            raise ValueError("a final must be stored in the archive area")
        now = self._now()
        with self._write() as conn:
            self._compare_and_set(
                conn,
                record_id,
                expected_current_sha256,
                status=ARCHIVED,
                archived_at=now,
                current_sha256=final.sha256,
                current_size=final.size,
                updated_at=now,
            )
            last = conn.scalar(
                sa.select(sa.func.max(t.versions.c.version)).where(
                    t.versions.c.record_id == record_id
                )
            )
            conn.execute(
                t.versions.insert().values(
                    record_id=record_id,
                    version=(last or 0) + 1,
                    sha256=final.sha256,
                    size=final.size,
                    reason="archived",
                    created_at=now,
                )
            )
            self._insert_object(conn, final, record_id, "final", now)
            return self._finish_step(
                conn, record_id, "record.archived", actor, audit_detail, idempotency, now
            )

    # -- versions and objects ----------------------------------------------------------

    def list_versions(self, record_id: str) -> list[VersionRow]:
        query = (
            sa.select(t.versions)
            .where(t.versions.c.record_id == record_id)
            .order_by(t.versions.c.version)
        )
        with self._read() as conn:
            return [_version(row) for row in conn.execute(query)]

    def find_version_by_sha256(self, sha256: str) -> VersionRow | None:
        query = (
            sa.select(t.versions)
            .where(t.versions.c.sha256 == sha256)
            .order_by(t.versions.c.record_id, t.versions.c.version)
            .limit(1)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        return _version(row) if row else None

    def list_objects(self, area: Area | None = None) -> Iterator[ObjectRow]:
        """All object rows, in pages, holding no connection while the caller works."""
        key = sa.tuple_(t.objects.c.sha256, t.objects.c.area)
        after: tuple[str, str] | None = None
        while True:
            query = sa.select(t.objects).order_by(t.objects.c.sha256, t.objects.c.area)
            if area is not None:
                query = query.where(t.objects.c.area == area.value)
            if after is not None:
                query = query.where(key > sa.tuple_(*after))
            with self._read() as conn:
                page = [_object(row) for row in conn.execute(query.limit(PAGE_SIZE))]
            yield from page
            if len(page) < PAGE_SIZE:
                return
            after = (page[-1].sha256, page[-1].area.value)

    # -- listing and counts (archive API) ----------------------------------------------

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

    # -- idempotency -------------------------------------------------------------------

    def get_idempotent(self, tenant: str, key: str) -> IdempotencyRow | None:
        with self._read() as conn:
            return self._get_idempotent(conn, tenant, key)

    def put_idempotent(self, answer: IdempotencyWrite) -> IdempotencyRow:
        """Store an answer; if the key is already taken, return the row that holds it."""
        with self._write() as conn:
            self._insert_ignoring_duplicate(
                conn, t.idempotency, {**asdict(answer), "created_at": self._now()}
            )
            row = self._get_idempotent(conn, answer.tenant, answer.key)
        assert row is not None
        return row

    # -- audit -------------------------------------------------------------------------

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
            page = self.list_audit(after_seq=prev_seq, limit=PAGE_SIZE)
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
            if len(page) < PAGE_SIZE:
                return True, None

    # -- jobs --------------------------------------------------------------------------

    def create_job(
        self,
        *,
        tenant: str,
        kind: str,
        total: int,
        params: Mapping[str, Any],
        actor: str,
        job_id: str | None = None,
    ) -> JobRow:
        """A queued job of `total` items; `params` is what a worker needs to run it."""
        if total < 0:
            raise ValueError("a job's total cannot be negative")
        job_id = job_id or str(uuid.uuid4())
        now = self._now()
        with self._write() as conn:
            conn.execute(
                t.jobs.insert().values(
                    id=job_id,
                    tenant=tenant,
                    kind=kind,
                    status=JOB_QUEUED,
                    total=total,
                    done=0,
                    failed_json="[]",
                    params_json=canonical_json(params),
                    created_at=now,
                    updated_at=now,
                    finished_at=None,
                )
            )
            job = self._must_get_job(conn, job_id)
            self._append_audit(conn, actor, tenant, "job.created", None, _job_detail(job), now)
            return job

    def get_job(self, job_id: str) -> JobRow | None:
        with self._read() as conn:
            return self._get_job(conn, job_id)

    def update_job_progress(
        self,
        job_id: str,
        done_delta: int,
        failed_item: Mapping[str, Any] | None = None,
        *,
        actor: str = "system",
    ) -> JobRow:
        """Count `done_delta` more items handled; `failed_item` (counted in the delta)
        describes one that failed. A queued job becomes running. Audited: the start and
        each failure, not plain progress (the items' own changes are audited already)."""
        if done_delta < 0:
            raise ValueError("done_delta cannot be negative")
        if failed_item is not None and done_delta < 1:
            raise ValueError("a failed item is an item done: done_delta must count it")
        now = self._now()
        with self._write() as conn:
            job = self._lock_unfinished_job(conn, job_id)
            if job.done + done_delta > job.total:
                raise ArchiveError(
                    f"job {job_id} would have {job.done + done_delta} of {job.total} items done",
                    code="job_progress_overflow",
                )
            failed = job.failed
            if failed_item is not None:
                failed.append(json.loads(canonical_json(failed_item)))
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.id == job_id)
                .values(
                    status=JOB_RUNNING,
                    done=t.jobs.c.done + done_delta,
                    failed_json=canonical_json(failed),
                    updated_at=now,
                )
            )
            updated = self._must_get_job(conn, job_id)
            if job.status == JOB_QUEUED:
                self._append_audit(
                    conn, actor, job.tenant, "job.started", None, _job_detail(updated), now
                )
            if failed_item is not None:
                detail = {"job_id": job_id, "item": failed[-1]}
                self._append_audit(conn, actor, job.tenant, "job.item_failed", None, detail, now)
            return updated

    def finish_job(self, job_id: str, *, actor: str = "system") -> JobRow:
        now = self._now()
        with self._write() as conn:
            job = self._lock_unfinished_job(conn, job_id)
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.id == job_id)
                .values(status=JOB_FINISHED, updated_at=now, finished_at=now)
            )
            finished = self._must_get_job(conn, job_id)
            detail = {**_job_detail(finished), "failed": len(finished.failed)}
            self._append_audit(conn, actor, job.tenant, "job.finished", None, detail, now)
            return finished

    def claim_job(self, owner: str, lease_seconds: int, *,
                  kinds: tuple[str, ...] | None = None,
                  job_id: str | None = None) -> JobRow | None:
        """Take the oldest queued job, or a running one whose lease ran out (its worker
        died), for `owner`. Two workers never hold the same job at once."""
        now = self._now()
        until = now + timedelta(seconds=lease_seconds)
        with self._write() as conn:
            query = (sa.select(t.jobs.c.id)
                     .where(sa.or_(t.jobs.c.status == JOB_QUEUED,
                                   sa.and_(t.jobs.c.status == JOB_RUNNING,
                                           sa.or_(t.jobs.c.lease_until.is_(None),
                                                  t.jobs.c.lease_until < now))))
                     .order_by(t.jobs.c.created_at, t.jobs.c.id).limit(1))
            if kinds is not None:
                query = query.where(t.jobs.c.kind.in_(kinds))
            if job_id is not None:
                query = query.where(t.jobs.c.id == job_id)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            found = conn.execute(query).scalar()
            if found is None:
                return None
            conn.execute(t.jobs.update().where(t.jobs.c.id == found).values(
                status=JOB_RUNNING, lease_owner=owner, lease_until=until, updated_at=now))
            return self._must_get_job(conn, found)

    def renew_job_lease(self, job_id: str, owner: str, lease_seconds: int) -> bool:
        """Extend the lease; False when another worker took the job over."""
        now = self._now()
        with self._write() as conn:
            result = conn.execute(
                t.jobs.update()
                .where(t.jobs.c.id == job_id, t.jobs.c.lease_owner == owner,
                       t.jobs.c.status == JOB_RUNNING)
                .values(lease_until=now + timedelta(seconds=lease_seconds)))
            return bool(result.rowcount)

    # -- two-step signing sessions ---------------------------------------------------

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

    def list_unfinished_jobs(self, tenant: str | None = None) -> list[JobRow]:
        """Queued and running jobs, oldest first: what a restarted worker resumes."""
        query = sa.select(t.jobs).where(t.jobs.c.status != JOB_FINISHED)
        if tenant is not None:
            query = query.where(t.jobs.c.tenant == tenant)
        query = query.order_by(t.jobs.c.created_at, t.jobs.c.id)
        with self._read() as conn:
            return [_job(row) for row in conn.execute(query)]

    # -- share links -------------------------------------------------------------------

    def create_share_link(
        self,
        token_sha256: str,
        record_id: str,
        purpose: str,
        created_by: str,
        expires_at: datetime,
    ) -> ShareLinkRow:
        """Keep the hash of a new share token for `record_id`; `created_by` is audited."""
        if purpose not in SHARE_PURPOSES:
            raise ValueError(f"unknown share link purpose {purpose!r}")
        if len(token_sha256) != 64:
            raise ValueError("token_sha256 must be a hex SHA-256")
        if expires_at.utcoffset() is None:
            raise ValueError("expires_at must be timezone-aware")
        now = self._now()
        if expires_at <= now:
            raise ValueError("a share link must expire in the future")
        with self._write() as conn:
            record = self._get_record(conn, record_id)
            if record is None:
                raise ArchiveError(f"record {record_id} does not exist", code="record_not_found")
            try:
                conn.execute(
                    t.share_links.insert().values(
                        token_sha256=token_sha256,
                        record_id=record_id,
                        purpose=purpose,
                        created_by=created_by,
                        created_at=now,
                        expires_at=expires_at,
                        uses=0,
                    )
                )
            except sa.exc.IntegrityError as e:
                if _is_unique_violation(e):
                    raise ArchiveError(
                        "a share link with this token already exists", code="share_link_exists"
                    ) from e
                raise
            link = self._must_get_share_link(conn, token_sha256)
            detail = {
                "token_sha256": token_sha256,
                "purpose": purpose,
                "expires_at": link.expires_at.isoformat(),
            }
            self._append_audit(
                conn, created_by, record.tenant, "share_link.created", record_id, detail, now
            )
            return link

    def get_share_link(self, token_sha256: str) -> ShareLinkRow | None:
        with self._read() as conn:
            return self._get_share_link(conn, token_sha256)

    def count_share_use(self, token_sha256: str, *, actor: str = "share-link") -> ShareLinkRow:
        """Count one use of a live link and return it; an unknown or expired link raises
        ArchiveError (share_link_not_found, share_link_expired) and is not counted."""
        now = self._now()
        with self._write() as conn:
            row = conn.execute(
                sa.select(t.share_links, t.records.c.tenant)
                .join(t.records, t.records.c.id == t.share_links.c.record_id)
                .where(t.share_links.c.token_sha256 == token_sha256)
                .with_for_update(of=t.share_links)
            ).first()
            if row is None:
                raise ArchiveError("no such share link", code="share_link_not_found")
            if row.expires_at <= now:
                raise ArchiveError("the share link has expired", code="share_link_expired")
            conn.execute(
                t.share_links.update()
                .where(t.share_links.c.token_sha256 == token_sha256)
                .values(uses=t.share_links.c.uses + 1)
            )
            link = self._must_get_share_link(conn, token_sha256)
            detail = {"token_sha256": token_sha256, "purpose": link.purpose, "uses": link.uses}
            self._append_audit(
                conn, actor, row.tenant, "share_link.used", link.record_id, detail, now
            )
            return link

    # -- inside transactions -----------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.utcoffset() is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except sa.exc.OperationalError as e:
            raise ArchiveError(f"index unavailable: {e}", code="index_unavailable") from e

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction; on SQLite it takes the write lock up front."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(hocba_begin="IMMEDIATE")
                with conn.begin():
                    yield conn
        except sa.exc.OperationalError as e:
            raise ArchiveError(f"index unavailable: {e}", code="index_unavailable") from e

    def _get_record(self, conn: Connection, record_id: str) -> RecordRow | None:
        row = conn.execute(sa.select(t.records).where(t.records.c.id == record_id)).first()
        return _record(row) if row else None

    def _must_get_record(self, conn: Connection, record_id: str) -> RecordRow:
        record = self._get_record(conn, record_id)
        assert record is not None
        return record

    def _compare_and_set(
        self, conn: Connection, record_id: str, expected_current_sha256: str, **values: Any
    ) -> None:
        moved = conn.execute(
            t.records.update()
            .where(
                t.records.c.id == record_id,
                t.records.c.current_sha256 == expected_current_sha256,
                t.records.c.status == AWAITING_SIGNATURES,
            )
            .values(**values)
        )
        if moved.rowcount != 1:
            raise StaleRevision(
                f"record {record_id} is no longer at {expected_current_sha256} awaiting signatures"
            )

    def _finish_step(
        self,
        conn: Connection,
        record_id: str,
        action: str,
        actor: str,
        audit_detail: Mapping[str, Any],
        idempotency: IdempotencyWrite | None,
        now: datetime,
    ) -> RecordRow:
        if idempotency is not None:
            try:
                conn.execute(t.idempotency.insert().values(**asdict(idempotency), created_at=now))
            except sa.exc.IntegrityError as e:
                if _is_unique_violation(e):
                    raise IdempotencyConflict(
                        f"idempotency key {idempotency.key!r} is already used"
                    ) from e
                raise
        record = self._must_get_record(conn, record_id)
        # Last statement: the audit lock is held only until commit, and never before
        # another lock is taken, so writers cannot deadlock on it.
        self._append_audit(conn, actor, record.tenant, action, record_id, audit_detail, now)
        return record

    def _get_job(self, conn: Connection, job_id: str) -> JobRow | None:
        row = conn.execute(sa.select(t.jobs).where(t.jobs.c.id == job_id)).first()
        return _job(row) if row else None

    def _must_get_job(self, conn: Connection, job_id: str) -> JobRow:
        job = self._get_job(conn, job_id)
        assert job is not None
        return job

    def _lock_unfinished_job(self, conn: Connection, job_id: str) -> JobRow:
        """The job's row, locked until commit (SQLite: the write transaction holds it)."""
        row = conn.execute(sa.select(t.jobs).where(t.jobs.c.id == job_id).with_for_update()).first()
        if row is None:
            raise ArchiveError(f"job {job_id} does not exist", code="job_not_found")
        job = _job(row)
        if job.status == JOB_FINISHED:
            raise ArchiveError(f"job {job_id} is already finished", code="job_finished")
        return job

    def _get_share_link(self, conn: Connection, token_sha256: str) -> ShareLinkRow | None:
        row = conn.execute(
            sa.select(t.share_links).where(t.share_links.c.token_sha256 == token_sha256)
        ).first()
        return _share_link(row) if row else None

    def _must_get_share_link(self, conn: Connection, token_sha256: str) -> ShareLinkRow:
        link = self._get_share_link(conn, token_sha256)
        assert link is not None
        return link

    def _get_idempotent(self, conn: Connection, tenant: str, key: str) -> IdempotencyRow | None:
        row = conn.execute(
            sa.select(t.idempotency).where(
                t.idempotency.c.tenant == tenant, t.idempotency.c.key == key
            )
        ).first()
        return _idempotency(row) if row else None

    def _insert_object(
        self, conn: Connection, stored: StoredObject, record_id: str, kind: str, now: datetime
    ) -> None:
        # The same bytes may already be known (e.g. a correction re-uploading a PDF).
        self._insert_ignoring_duplicate(
            conn,
            t.objects,
            {
                "sha256": stored.sha256,
                "area": stored.area.value,
                "size": stored.size,
                "record_id": record_id,
                "kind": kind,
                "created_at": now,
            },
        )

    def _insert_ignoring_duplicate(
        self, conn: Connection, table: sa.Table, values: Mapping[str, Any]
    ) -> None:
        if self.dialect == "sqlite":
            conn.execute(sqlite.insert(table).values(**values).on_conflict_do_nothing())
        elif self.dialect == "postgresql":
            conn.execute(postgresql.insert(table).values(**values).on_conflict_do_nothing())
        else:
            raise NotImplementedError(f"index dialect {self.dialect} is not supported")

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


def _switch_to_wal(cursor: Any) -> None:
    """WAL mode, waiting out other connections. SQLite answers "database is locked" here
    without calling the busy handler while another connection recovers a WAL left by a
    killed process, or switches a new database itself: retry until the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            busy = "locked" in str(e) or "busy" in str(e)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.01, 0.05))  # noqa: S311 - jitter, not a secret


def _configure_sqlite(engine: Engine) -> None:
    """WAL, busy timeout, foreign keys; and BEGIN emitted by us, IMMEDIATE for writes."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own
        cursor = dbapi_connection.cursor()
        try:
            # The timeout first: on a new database, workers starting at once race to
            # switch it to WAL.
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _switch_to_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("hocba_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _job_detail(job: JobRow) -> dict[str, Any]:
    return {"job_id": job.id, "kind": job.kind, "total": job.total, "done": job.done}
