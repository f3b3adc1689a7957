"""What a person without an API key is shown (Decree 13/2023: children's personal data).

The one place that decides it. The public view (a verification code, an uploaded file)
shows the verdict, the roles, each signer's common name, signing times (Vietnam time),
the school, the school year and the archive date: never the pupil, a personal
identification number, a certificate's UID or serial, the record id or the document.
The share-link view (a guardian, the receiving school: someone the school chose) adds the
pupil's name, grade and class. The pages only render these dataclasses.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from archive.index.rows import ARCHIVED, RecordRow
from archive.times import parse_rfc3339
from archive.verification import canonical
from signer.pades.report import TOTAL_FAILED, TOTAL_PASSED

if TYPE_CHECKING:
    from signer.service.core import Hocba

VIETNAM = timezone(timedelta(hours=7))
ROLES = ("teacher", "principal", "seal")

# verdicts (the page's words for each are in signer/http/templates/strings.toml)
VALID = "valid"
NOT_VALID = "not_valid"
UNDETERMINED = "undetermined"
UNSIGNED = "unsigned"

# What a page about a code is: no such code, a record still being signed, or the view.
CODE_NOT_FOUND = "not_found"
CODE_PENDING = "pending"
CODE_ARCHIVED = "archived"

# Nine or more digits in a row could be (part of) a personal identification number; a
# certificate's CN or a school's name never needs them, so they are never shown.
_LONG_NUMBER = re.compile(r"\d{9,}")


@dataclass(frozen=True)
class SignerLine:
    role: str
    """'teacher', 'principal', 'seal', or 'other' (a signature no policy role names)."""
    name: str
    """The signing certificate's common name only."""
    signed_at: str
    """'dd/mm/yyyy HH:MM' in Vietnam time (the signature timestamp's), or ''."""
    verdict: str


@dataclass(frozen=True)
class PublicView:
    verdict: str
    """VALID (TOTAL_PASSED), NOT_VALID (TOTAL_FAILED), UNDETERMINED (INDETERMINATE) or
    UNSIGNED (INDETERMINATE: no signature at all)."""
    signers: tuple[SignerLine, ...]
    school_name: str | None = None
    school_year: str | None = None
    archived_on: str | None = None
    """'dd/mm/yyyy' (Vietnam time)."""
    archived_copy: bool = False
    """An uploaded file that is, byte for byte, a version hocba archived."""
    superseded: bool = False
    """A correction of this record was archived since."""


@dataclass(frozen=True)
class SharedView:
    """A share link's page: the public view plus who the record is about."""

    public: PublicView
    pupil_name: str
    grade: str
    class_name: str
    purpose: str | None
    expires_on: str | None
    """'dd/mm/yyyy HH:MM' (Vietnam time)."""


@dataclass(frozen=True)
class CodeLookup:
    kind: str  # CODE_NOT_FOUND | CODE_PENDING | CODE_ARCHIVED
    view: PublicView | None = None


def vn_time(value: datetime | str | None, *, with_time: bool = True) -> str:
    """A time as 'dd/mm/yyyy HH:MM' (or 'dd/mm/yyyy') in Vietnam time; a naive time is
    UTC (the index's)."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = parse_rfc3339(value)
        except ValueError:
            return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(VIETNAM).strftime("%d/%m/%Y %H:%M" if with_time else "%d/%m/%Y")


def safe_text(text: str | None) -> str:
    """Free text for a public page: long digit runs (an ID number?) left out."""
    return _LONG_NUMBER.sub("…", (text or "").strip())


def verdict_of(indication: str | None, *, signed: bool = True) -> str:
    if indication == TOTAL_PASSED:
        return VALID
    if indication == TOTAL_FAILED:
        return NOT_VALID
    return UNDETERMINED if signed else UNSIGNED


def public_view(report: dict[str, Any], record: RecordRow | None = None, *,
                archived_copy: bool = False) -> PublicView:
    """The public view of a verification report (`Verification.verify`, public or not:
    only the signer's common name is taken) and, for a record hocba archived, its school,
    year and archive date. Pure: the rule, testable without a service."""
    signatures = report.get("signatures") or []
    signers = tuple(
        SignerLine(role=s.get("role") if s.get("role") in ROLES else "other",
                   name=safe_text((s.get("signer") or {}).get("name")),
                   signed_at=vn_time(s.get("timestamp_time") or s.get("signing_time")),
                   verdict=verdict_of(s.get("indication")))
        for s in signatures)
    view = PublicView(verdict=verdict_of(report.get("indication"), signed=bool(signatures)),
                      signers=signers, archived_copy=archived_copy)
    if record is None:
        return view
    return PublicView(verdict=view.verdict, signers=signers,
                      school_name=safe_text(record.school_name),
                      school_year=safe_text(record.school_year),
                      archived_on=vn_time(record.archived_at, with_time=False) or None,
                      archived_copy=archived_copy,
                      superseded=record.superseded_by is not None)


def shared_view(report: dict[str, Any], record: RecordRow, *, purpose: str | None = None,
                expires_at: datetime | None = None) -> SharedView:
    """A share link's page. Pure, as `public_view`."""
    meta = json.loads(record.metadata_json)
    student = meta.get("student") or {}
    return SharedView(public=public_view(report, record),
                      pupil_name=str(student.get("full_name") or ""),
                      grade=str(meta.get("grade") if meta.get("grade") is not None else ""),
                      class_name=str(meta.get("class_name") or ""),
                      purpose=purpose, expires_on=vn_time(expires_at) or None)


# -- with the service: look up, read, verify --------------------------------------------


def of_code(svc: Hocba, text: str) -> CodeLookup:
    """The page for a typed or scanned verification code: case, hyphens and spaces do not
    matter. A record not archived yet says only that."""
    code = canonical(text)
    row = svc.index.find_record_by_verification_code(code) if code else None
    if row is None:
        return CodeLookup(CODE_NOT_FOUND)
    if row.status != ARCHIVED:
        return CodeLookup(CODE_PENDING)
    report = svc.verification.verify(svc.catalog.archived_bytes(row.current_sha256))
    return CodeLookup(CODE_ARCHIVED, public_view(report, row))


def of_upload(svc: Hocba, pdf: bytes) -> PublicView:
    """An uploaded file (nothing stored): its verdict and, when it is a version hocba
    archived, which school and year it is the archived copy for (never which record).
    Raises PdfRejected as `POST /v1/verify` does."""
    report, row = svc.verification.verify_archived(pdf)
    return public_view(report, row, archived_copy=row is not None)


def of_share(svc: Hocba, token: str) -> tuple[RecordRow, SharedView]:
    """A share link's page: one use of the link, counted and audited (ShareLinks.open;
    the download is another). NotFound / Gone as `GET /v1/shared/{token}`."""
    doc = svc.shares.open(token)
    report = svc.verification.verify(doc.data)
    link = doc.link
    return doc.row, shared_view(report, doc.row, purpose=link.purpose if link else None,
                                expires_at=link.expires_at if link else None)
