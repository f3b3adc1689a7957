"""Share links: hashed tokens to one record, expiring, every use counted and audited."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from archive.errors import ArchiveError
from archive.index import schema as t
from archive.index.base import is_unique_violation
from archive.index.records import RecordsMixin
from archive.index.rows import SHARE_PURPOSES, ShareLinkRow


def _share_link(row: sa.Row[Any]) -> ShareLinkRow:
    return ShareLinkRow(**row._mapping)


class ShareLinksMixin(RecordsMixin):
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
                        id=str(uuid.uuid4()),
                    )
                )
            except sa.exc.IntegrityError as e:
                if is_unique_violation(e):
                    raise ArchiveError(
                        "a share link with this token already exists", code="share_link_exists"
                    ) from e
                raise
            link = self._must_get_share_link(conn, token_sha256)
            detail = {
                "token_sha256": token_sha256,
                "link_id": link.id,
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
        """Count one use of a live link and return it; an unknown, revoked or expired link
        raises ArchiveError (share_link_not_found, share_link_revoked, share_link_expired)
        and is not counted."""
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
            if row.revoked_at is not None:
                raise ArchiveError("the share link was revoked", code="share_link_revoked")
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

    def list_share_links(self, record_id: str) -> list[ShareLinkRow]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(t.share_links)
                .where(t.share_links.c.record_id == record_id)
                .order_by(t.share_links.c.created_at, t.share_links.c.id)
            )
            return [_share_link(row) for row in rows]

    def revoke_share_link(self, record_id: str, link_id: str, actor: str) -> ShareLinkRow:
        """Revoke a link of `record_id` (for ever; revoking twice keeps the first time);
        audited. ArchiveError share_link_not_found for a link of another record."""
        now = self._now()
        with self._write() as conn:
            row = conn.execute(
                sa.select(t.share_links.c.token_sha256, t.share_links.c.revoked_at,
                          t.records.c.tenant)
                .join(t.records, t.records.c.id == t.share_links.c.record_id)
                .where(t.share_links.c.id == link_id,
                       t.share_links.c.record_id == record_id)
                .with_for_update(of=t.share_links)
            ).first()
            if row is None:
                raise ArchiveError("no such share link", code="share_link_not_found")
            if row.revoked_at is None:
                conn.execute(
                    t.share_links.update()
                    .where(t.share_links.c.token_sha256 == row.token_sha256)
                    .values(revoked_at=now, revoked_by=actor)
                )
                self._append_audit(conn, actor, row.tenant, "share_link.revoked", record_id,
                                   {"link_id": link_id}, now)
            return self._must_get_share_link(conn, row.token_sha256)

    def _get_share_link(self, conn: Connection, token_sha256: str) -> ShareLinkRow | None:
        row = conn.execute(
            sa.select(t.share_links).where(t.share_links.c.token_sha256 == token_sha256)
        ).first()
        return _share_link(row) if row else None

    def _must_get_share_link(self, conn: Connection, token_sha256: str) -> ShareLinkRow:
        link = self._get_share_link(conn, token_sha256)
        assert link is not None
        return link
