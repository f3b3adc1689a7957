"""Archivists' reads: listing a tenant's records, one record with its correction chain,
its versions and their documents. Listing pages by keyset on (created_at, id): the
cursor is that key, base64url-encoded, so paging stays exact while records are added."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archive.index import Index
from archive.index.rows import ARCHIVED, AWAITING_SIGNATURES, RecordRow, VersionRow
from archive.store import Area
from signer.clients import Client
from signer.errors import Conflict, NotFound, RequestError
from signer.service.actors import Actor
from signer.service.documents import Documents
from signer.service.reads import audit_read
from signer.service.records import Records
from signer.service.views import chain_item_view, version_view

STATUSES = (AWAITING_SIGNATURES, ARCHIVED)
MAX_CURSOR_CHARS = 256


def encode_cursor(row: RecordRow) -> str:
    key = [row.created_at.astimezone(UTC).isoformat(timespec="microseconds"), row.id]
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, str]:
    bad = RequestError("the cursor is not one this service gave out", code="cursor_invalid")
    if not text or len(text) > MAX_CURSOR_CHARS:
        raise bad
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        at_text, record_id = json.loads(raw)
        at = datetime.fromisoformat(at_text)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as e:
        raise bad from e
    if at.utcoffset() is None or not isinstance(record_id, str) or not 0 < len(record_id) <= 36:
        raise bad
    return at.astimezone(UTC), record_id


@dataclass(frozen=True)
class RecordQuery:
    schools: frozenset[str]
    student_id_number: str | None = None
    school_year: str | None = None
    status: str | None = None
    record_type: str | None = None
    cursor: str | None = None
    limit: int = 50


def schools_for(client: Client, school_code: str | None) -> frozenset[str]:
    """The schools a request may see: one named school (404 if not covered) or all the
    caller's tenant covers."""
    if school_code is None:
        return client.schools
    if not client.covers(school_code):
        raise NotFound(f"school {school_code} is not covered by this API key",
                       code="school_not_found")
    return frozenset({school_code})


class Catalog:
    def __init__(self, index: Index, records: Records, documents: Documents) -> None:
        self.index = index
        self.records = records
        self.documents = documents

    def page(self, q: RecordQuery) -> dict[str, Any]:
        after = decode_cursor(q.cursor) if q.cursor is not None else None
        # One more than asked: whether there is a next page, without an empty last page.
        rows = self.index.list_records(
            q.schools, student_id_number=q.student_id_number, school_year=q.school_year,
            status=q.status, record_type=q.record_type, after=after, limit=q.limit + 1)
        page = rows[:q.limit]
        more = len(rows) > q.limit
        return {"items": [self.records.view(r) for r in page],
                "next_cursor": encode_cursor(page[-1]) if page and more else None}

    def chain(self, client: Client, row: RecordRow) -> list[dict[str, Any]]:
        """The correction chain of `row`, oldest first; records the caller may not read
        are left out."""
        return [chain_item_view(r) for r in self.index.record_chain(row.id)
                if client.covers(r.school_code)
                or self.index.transferred_to(r, client.schools)]

    def record(self, client: Client, record_id: str) -> dict[str, Any]:
        row = self.readable_row(client, record_id)
        return {**self.records.view(row), "chain_version": row.chain_version,
                "chain": self.chain(client, row)}

    def readable_row(self, client: Client, record_id: str) -> RecordRow:
        """A record the caller may read: one of its schools', or an archived one of a
        pupil another school transferred to one of its schools (404 otherwise, as for a
        missing one). Reading only: signing paths use Records.row."""
        row = self.index.get_record(record_id)
        if row is not None and (client.covers(row.school_code)
                                or self.index.transferred_to(row, client.schools)):
            return row
        raise NotFound(f"no record {record_id}", code="record_not_found")

    def archived_row(self, client: Client, record_id: str, *, transferred: bool = False
                     ) -> RecordRow:
        """An archived record of the caller's schools (or, with `transferred`, one it may
        read through a transfer)."""
        row = (self.readable_row(client, record_id) if transferred
               else self.records.row(client, record_id))
        if row.status != ARCHIVED:
            raise Conflict(f"record {row.id} is not archived yet ({row.status})",
                           code="record_not_archived")
        return row

    def versions(self, client: Client, record_id: str) -> list[dict[str, Any]]:
        row = self.readable_row(client, record_id)
        return [version_view(v) for v in self.index.list_versions(row.id)]

    def version(self, client: Client, record_id: str, version: int
                ) -> tuple[RecordRow, VersionRow]:
        row = self.readable_row(client, record_id)
        found = next((v for v in self.index.list_versions(row.id) if v.version == version),
                     None)
        if found is None:
            raise NotFound(f"record {row.id} has no version {version}",
                           code="version_not_found")
        return row, found

    def read_current(self, actor: Actor, row: RecordRow, purpose: str) -> bytes:
        """The record's current document (working or archived), the read audited."""
        data = self.records.document(row)
        audit_read(self.index, actor, row, purpose, sha256=row.current_sha256,
                   status=row.status)
        return data

    def read_version(self, actor: Actor, row: RecordRow, found: VersionRow, purpose: str
                     ) -> bytes:
        """An archived version's bytes, the read audited (who, which record, purpose)."""
        data = self.archived_bytes(found.sha256)
        audit_read(self.index, actor, row, purpose, sha256=found.sha256,
                   version=found.version)
        return data

    def archived_bytes(self, sha256: str) -> bytes:
        return self.documents.get(sha256, Area.ARCHIVE)

