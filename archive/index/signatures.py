"""Signing steps and archived versions. A record's state moves by compare-and-set on
`current_sha256`, so of two concurrent steps exactly one wins."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from archive.errors import StaleRevision
from archive.index import schema as t
from archive.index.base import is_unique_violation
from archive.index.idempotency import IdempotencyMixin
from archive.index.records import RecordsMixin
from archive.index.rows import (
    ARCHIVED,
    AWAITING_SIGNATURES,
    IdempotencyWrite,
    RecordRow,
    SignatureRow,
    VersionRow,
)
from archive.store.base import Area, StoredObject


def _signature(row: sa.Row[Any]) -> SignatureRow:
    return SignatureRow(**row._mapping)


def _version(row: sa.Row[Any]) -> VersionRow:
    return VersionRow(**row._mapping)


class SignaturesMixin(RecordsMixin, IdempotencyMixin):
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
                if is_unique_violation(e):
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
        timestamp_valid_until: datetime | None = None,
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
                    timestamp_valid_until=timestamp_valid_until,
                )
            )
            self._insert_object(conn, final, record_id, "final", now)
            return self._finish_step(
                conn, record_id, "record.archived", actor, audit_detail, idempotency, now
            )

    def add_renewed_version(
        self,
        record_id: str,
        expected_current_sha256: str,
        final: StoredObject,
        *,
        actor: str,
        audit_detail: Mapping[str, Any],
        timestamp_valid_until: datetime | None,
    ) -> VersionRow:
        """A renewed final (locked in ARCHIVE) becomes the record's newest version, if
        the record is still at `expected_current_sha256` (else StaleRevision: renewed
        meanwhile). Earlier versions stay as they are."""
        if final.area is not Area.ARCHIVE:
            raise ValueError("a renewed final must be stored in the archive area")
        now = self._now()
        with self._write() as conn:
            moved = conn.execute(
                t.records.update()
                .where(t.records.c.id == record_id,
                       t.records.c.current_sha256 == expected_current_sha256,
                       t.records.c.status == ARCHIVED)
                .values(current_sha256=final.sha256, current_size=final.size, updated_at=now)
            )
            if moved.rowcount != 1:
                raise StaleRevision(f"record {record_id} is no longer at "
                                    f"{expected_current_sha256}")
            last = conn.scalar(sa.select(sa.func.max(t.versions.c.version))
                               .where(t.versions.c.record_id == record_id)) or 0
            values = {"record_id": record_id, "version": last + 1, "sha256": final.sha256,
                      "size": final.size, "reason": "renewed", "created_at": now,
                      "timestamp_valid_until": timestamp_valid_until}
            conn.execute(t.versions.insert().values(**values))
            self._insert_object(conn, final, record_id, "final", now)
            self._finish_step(conn, record_id, "record.renewed", actor,
                              {**audit_detail, "version": last + 1}, None, now)
            return VersionRow(**values)  # type: ignore[arg-type]

    def set_timestamp_valid_until(self, record_id: str, version: int,
                                  until: datetime | None) -> None:
        """Fill in what a version archived before 0005 did not record."""
        with self._write() as conn:
            conn.execute(t.versions.update()
                         .where(t.versions.c.record_id == record_id,
                                t.versions.c.version == version)
                         .values(timestamp_valid_until=until))

    def _newest_versions(self) -> Any:
        newest = (sa.select(t.versions.c.record_id,
                            sa.func.max(t.versions.c.version).label("version"))
                  .group_by(t.versions.c.record_id).subquery())
        return sa.select(t.versions).join(
            newest, sa.and_(t.versions.c.record_id == newest.c.record_id,
                            t.versions.c.version == newest.c.version))

    def versions_due(self, before: datetime, *, after_record_id: str = "",
                     limit: int = 500) -> list[VersionRow]:
        """Each record's newest version whose document timestamp can be validated only
        until `before` or earlier, or is not known yet; by record id."""
        v = t.versions.c
        query = (self._newest_versions()
                 .where(v.record_id > after_record_id,
                        sa.or_(v.timestamp_valid_until.is_(None),
                               v.timestamp_valid_until <= before))
                 .order_by(v.record_id).limit(limit))
        with self._read() as conn:
            return [_version(row) for row in conn.execute(query)]

    def renewal_counts(self, now: datetime, due_before: datetime) -> dict[str, int]:
        """Newest versions by renewal state: overdue (no longer valid), due (within the
        margin), unknown (archived before 0005, not yet looked at)."""
        newest = self._newest_versions().subquery()
        until = newest.c.timestamp_valid_until
        query = sa.select(
            sa.func.count().filter(until <= now),
            sa.func.count().filter(sa.and_(until > now, until <= due_before)),
            sa.func.count().filter(until.is_(None)),
        ).select_from(newest)
        with self._read() as conn:
            overdue, due, unknown = conn.execute(query).one()
        return {"overdue": int(overdue), "due": int(due), "unknown": int(unknown)}

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
            self._insert_idempotent(conn, idempotency, now)
        record = self._must_get_record(conn, record_id)
        # Last statement: the audit lock is held only until commit, and never before
        # another lock is taken, so writers cannot deadlock on it.
        self._append_audit(conn, actor, record.tenant, action, record_id, audit_detail, now)
        return record
