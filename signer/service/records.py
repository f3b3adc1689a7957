"""Records: created from a rendered PDF and its metadata, read back by their school."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, BinaryIO

from archive.errors import ArchiveError
from archive.index import Index
from archive.index.rows import ARCHIVED, RecordRow
from archive.store import Area
from archive.store.base import sha256_of_file
from archive.verification import new_code, verify_url
from signer.clients import Client
from signer.errors import Conflict, InvalidInput, NotFound, from_archive
from signer.inputs import check_metadata, check_pdf
from signer.pades import qrstamp
from signer.policy import Policy
from signer.service.actors import Actor
from signer.service.documents import Documents, scratch_file
from signer.service.views import ARCHIVING, record_view, view_status
from signer.settings import Settings

RECORD_EXISTS = ("a record for this pupil, school year and record type exists; "
                 "send a correction with `supersedes`")


class Records:
    def __init__(self, settings: Settings, index: Index, documents: Documents,
                 policies: dict[str, Policy]) -> None:
        self.settings = settings
        self.index = index
        self.documents = documents
        self.policies = policies

    def row(self, client: Client, record_id: str) -> RecordRow:
        """The record, if one of the caller's schools holds it (404 either way)."""
        row = self.index.get_record(record_id)
        if row is None or not client.covers(row.school_code):
            raise NotFound(f"no record {record_id}", code="record_not_found")
        return row

    def view(self, row: RecordRow) -> dict[str, Any]:
        versions = self.index.list_versions(row.id) if row.status == ARCHIVED else None
        signatures = self.index.list_signatures(row.id)
        policy = self.policies.get(row.record_type)
        archiving = (self.index.archiving_attempts(row.id)
                     if view_status(row, policy, {s.role for s in signatures}) == ARCHIVING
                     else None)
        return record_view(row, policy, signatures, versions, self.settings.public_base_url,
                           archiving=archiving)

    @staticmethod
    def area(row: RecordRow) -> Area:
        """Where the record's current revision is: archived ones in the locked area."""
        return Area.ARCHIVE if row.status == ARCHIVED else Area.WORKING

    def document(self, row: RecordRow) -> bytes:
        return self.documents.get(row.current_sha256, self.area(row))

    @contextmanager
    def open_document(self, row: RecordRow) -> Iterator[BinaryIO]:
        with self.documents.open(row.current_sha256, self.area(row)) as f:
            yield f

    def create(self, actor: Actor, pdf: bytes | IO[bytes], metadata_raw: str | bytes
               ) -> RecordRow:
        """A new record from its rendered PDF (bytes, or a seekable file: a large upload
        is streamed to the store) and its metadata."""
        meta = check_metadata(metadata_raw, known_record_types=set(self.policies),
                              grades={k: p.grades for k, p in self.policies.items()
                                      if p.grades})
        if not actor.client.covers(meta.school_code):
            raise NotFound(f"school {meta.school_code} is not covered by this API key",
                           code="school_not_found")
        s = self.settings
        check_pdf(pdf, max_bytes=s.max_pdf_bytes, max_pages=s.max_pdf_pages,
                  max_objects=s.max_pdf_objects, max_tree_depth=s.max_pdf_tree_depth,
                  max_nesting=s.max_pdf_nesting)
        policy = self.policies[meta.record_type]
        # Uniqueness is per school: whether another school holds a record for this pupil
        # is never looked at, so no answer can tell (docs/CONTRACT.md, "Transfers").
        current = self.index.find_current_record(meta.school_code, meta.student_id_number,
                                                 meta.school_year, meta.record_type)
        if meta.supersedes is None and current is not None:
            raise Conflict(RECORD_EXISTS, code="record_exists")
        if meta.supersedes is not None:
            old = self.index.get_record(meta.supersedes)
            if old is None or not actor.client.covers(old.school_code):
                raise NotFound(f"superseded record {meta.supersedes} not found",
                               code="supersedes_not_found")
            if (old.school_code, old.student_id_number, old.school_year, old.record_type) != (
                    meta.school_code, meta.student_id_number, meta.school_year,
                    meta.record_type):
                raise InvalidInput(f"record {old.id} is for another school, pupil, year or "
                                   "record type", code="supersedes_mismatch")
            if current is None or current.id != old.id:
                raise Conflict(f"record {old.id} is not the newest version of this pupil's "
                               "record; correct the newest one", code="supersedes_not_current")
        # Every record carries its verification QR code and printed code, drawn before
        # the first signature so every signature covers them. The stamp is an
        # incremental update: the upload is, byte for byte, the first revision of the
        # stamped file, which is what the record's working document is from now on
        # (the upload's own hash stays in the audit detail).
        code = new_code()
        url = verify_url(self.settings.public_base_url, code)
        font = qrstamp.font_factory(self.settings.stamp_font)
        if isinstance(pdf, bytes):
            uploaded_sha256, uploaded_size = hashlib.sha256(pdf).hexdigest(), len(pdf)
            stamped = qrstamp.stamp(
                pdf, url=url, code=code, spec=policy.verification, font=font)
            obj = self.documents.put(stamped, Area.WORKING)
        else:
            uploaded_sha256 = sha256_of_file(pdf)
            uploaded_size = pdf.tell()
            with scratch_file() as out:
                qrstamp.stamp_to(pdf, out, url=url, code=code, spec=policy.verification,
                                 font=font)
                obj = self.documents.put(out, Area.WORKING)
        try:
            return self.index.create_record(
                tenant=actor.client.tenant, school_code=meta.school_code,
                school_name=meta.school_name, record_type=meta.record_type,
                policy=policy.ref, student_id_number=meta.student_id_number,
                school_year=meta.school_year,
                metadata_json=json.dumps(meta.raw, ensure_ascii=False, sort_keys=True),
                original=obj, actor=actor.name,
                audit_detail={"sha256": obj.sha256, "size": obj.size,
                              "uploaded_sha256": uploaded_sha256,
                              "uploaded_size": uploaded_size},
                supersedes=meta.supersedes, verification_code=code,
            )
        except ArchiveError as e:
            detail = RECORD_EXISTS if e.code == "record_exists" else None
            raise from_archive(e, detail, default_code="index_error") from e
