"""Share links: an archived record's PDF for someone without an API key (a guardian, the
next school), until the link expires. The token is shown once; the index keeps only its
SHA-256, and every use (and every refused use) is audited."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from archive.errors import ArchiveError
from archive.index import Index
from archive.index.rows import ARCHIVED, RecordRow, ShareLinkRow
from archive.times import rfc3339
from signer.errors import FieldError, Gone, InvalidInput, NotFound, from_archive
from signer.service.actors import Actor
from signer.service.catalog import Catalog

SHARE_MIN_SECONDS = 60
SHARE_MAX_SECONDS = 30 * 24 * 3600
# secrets.token_urlsafe(32) is 43 characters; anything unlike a token is not looked up.
SHARE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
SHARE_ACTOR = "share-link"


@dataclass(frozen=True)
class SharedDocument:
    row: RecordRow
    data: bytes
    link: ShareLinkRow | None = None
    """The link as counted (its purpose and expiry, for the share page)."""


def share_link_view(link: ShareLinkRow) -> dict[str, Any]:
    now = datetime.now(UTC)
    state = ("revoked" if link.revoked_at is not None
             else "expired" if link.expires_at <= now else "live")
    return {"id": link.id, "purpose": link.purpose, "state": state,
            "created_at": rfc3339(link.created_at), "created_by": link.created_by,
            "expires_at": rfc3339(link.expires_at), "uses": link.uses,
            "revoked_at": rfc3339(link.revoked_at) if link.revoked_at else None}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ShareLinks:
    def __init__(self, index: Index, catalog: Catalog, public_base_url: str, *,
                 min_seconds: int = SHARE_MIN_SECONDS) -> None:
        self.index = index
        self.catalog = catalog
        self.public_base_url = public_base_url.rstrip("/")
        self.min_seconds = min_seconds  # shorter in tests, to watch a link expire

    def create(self, actor: Actor, record_id: str, expires_in: int, purpose: str
               ) -> dict[str, Any]:
        row = self.catalog.archived_row(actor.client, record_id)
        if not self.min_seconds <= expires_in <= SHARE_MAX_SECONDS:
            message = f"an integer number of seconds, {self.min_seconds}..{SHARE_MAX_SECONDS}"
            raise InvalidInput(f"expires_in: {message}", code="body_invalid",
                               errors=[FieldError("expires_in", message)])
        token = secrets.token_urlsafe(32)
        expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=expires_in)
        try:
            link = self.index.create_share_link(_digest(token), row.id, purpose, actor.name,
                                                expires_at)
        except ValueError as e:  # the index's clock is past expires_at already
            raise InvalidInput(str(e), code="body_invalid") from e
        return {"url": f"{self.public_base_url}/v1/shared/{token}",
                "page_url": f"{self.public_base_url}/shared/{token}",
                "expires_at": rfc3339(link.expires_at), "purpose": link.purpose,
                "record_id": row.id, "id": link.id}

    def list(self, actor: Actor, record_id: str) -> list[dict[str, Any]]:
        """A record's links (never their tokens), oldest first."""
        row = self.catalog.archived_row(actor.client, record_id)
        return [share_link_view(link) for link in self.index.list_share_links(row.id)]

    def revoke(self, actor: Actor, record_id: str, link_id: str) -> dict[str, Any]:
        """Revoke a link for ever (a second revoke answers the same); audited."""
        row = self.catalog.archived_row(actor.client, record_id)
        try:
            link = self.index.revoke_share_link(row.id, link_id, actor.name)
        except ArchiveError as e:
            if e.code == "share_link_not_found":
                raise NotFound(f"record {row.id} has no share link {link_id}",
                               code="share_link_not_found") from e
            raise from_archive(e) from e
        return share_link_view(link)

    def open(self, token: str) -> SharedDocument:
        """The archived PDF behind a live link; the use is counted and audited."""
        missing = NotFound("no such share link", code="share_link_not_found")
        if not SHARE_TOKEN.match(token):
            raise missing
        digest = _digest(token)
        try:
            link = self.index.count_share_use(digest, actor=SHARE_ACTOR)
        except ArchiveError as e:
            if e.code == "share_link_expired":
                self._audit_refused(digest, "expired")
                raise Gone("this share link has expired; ask the school for a new one",
                           code="share_link_expired") from e
            if e.code == "share_link_revoked":
                self._audit_refused(digest, "revoked")
                raise Gone("this share link was revoked by the school; ask it for a new one",
                           code="share_link_revoked") from e
            raise (missing if e.code == "share_link_not_found" else from_archive(e)) from e
        row = self.index.get_record(link.record_id)
        if row is None or row.status != ARCHIVED:  # cannot happen: only archived ones are shared
            raise missing
        return SharedDocument(row, self.catalog.archived_bytes(row.current_sha256), link)

    def _audit_refused(self, digest: str, reason: str) -> None:
        link = self.index.get_share_link(digest)
        if link is None:
            return
        row = self.index.get_record(link.record_id)
        self.index.append_audit(SHARE_ACTOR, row.tenant if row else None, "share_link.refused",
                                link.record_id, {"token_sha256": digest, "reason": reason,
                                                 "expires_at": rfc3339(link.expires_at)})
