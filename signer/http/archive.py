"""Archivists and verifiers: listing, versions, packages, share links, statistics.

Every record endpoint answers 404 for a record of a school the caller's tenant does not
cover, exactly as for a missing one. Listing pages by keyset on (created_at, id): the
cursor is that key, base64url-encoded, so paging stays exact while records are added.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, g, request

from archive.errors import ArchiveError
from archive.index.rows import ARCHIVED, AWAITING_SIGNATURES, SHARE_PURPOSES, RecordRow
from archive.package import EvidenceFile, PackageError, PackageInput, VersionFile, build_package
from archive.store import Area
from signer.errors import (
    Conflict,
    DependencyError,
    FieldError,
    Gone,
    IntegrityError,
    InvalidInput,
    NotFound,
    RequestError,
)
from signer.http.auth import client, require, service
from signer.http.records import json_body
from signer.workflow import Actor, Hocba
from signer.workflow import iso as _iso

bp = Blueprint("archive", __name__)
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
STATUSES = (AWAITING_SIGNATURES, ARCHIVED)
SCHOOL_YEAR = re.compile(r"^[0-9]{4}-[0-9]{4}$")
MAX_CURSOR_CHARS = 256
# Share links: how long one may live. The shortest is configurable (app.config) so that a
# test can watch a link expire without waiting a minute.
SHARE_MIN_SECONDS = 60
SHARE_MAX_SECONDS = 30 * 24 * 3600
SHARE_MIN_CONFIG = "HOCBA_SHARE_MIN_EXPIRES_IN"
# secrets.token_urlsafe(32) is 43 characters; anything unlike a token is not looked up.
SHARE_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,128}$")
SHARE_ACTOR = "share-link"


# -- cursors ---------------------------------------------------------------------------


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


# -- helpers ---------------------------------------------------------------------------


def _query_error(field: str, message: str) -> RequestError:
    return RequestError(f"{field}: {message}", code="query_invalid",
                        errors=[FieldError(field, message)])


def _school_year_arg() -> str | None:
    year = request.args.get("school_year") or None
    if year is not None and not SCHOOL_YEAR.match(year):
        raise _query_error("school_year", "a school year such as 2024-2025")
    return year


def _schools_for(school_code: str | None) -> frozenset[str]:
    """The schools a request may see: one named school (404 if not covered) or all the
    caller's tenant covers."""
    if school_code is None:
        return client().schools
    if not client().covers(school_code):
        raise NotFound(f"school {school_code} is not covered by this API key",
                       code="school_not_found")
    return frozenset({school_code})


def _archived_row(svc: Hocba, record_id: str) -> RecordRow:
    row = svc.record_row(client(), record_id)
    g.record_id = row.id
    if row.status != ARCHIVED:
        raise Conflict(f"record {row.id} is not archived yet ({row.status})",
                       code="record_not_archived")
    return row


def _archived_bytes(svc: Hocba, sha256: str) -> bytes:
    try:
        return svc.store.get(sha256, Area.ARCHIVE)
    except ArchiveError as e:
        raise DependencyError(f"store: {e}", code="store_error") from e


def _version_view(v: Any) -> dict[str, Any]:
    return {"version": v.version, "sha256": v.sha256, "size": v.size,
            "created_at": _iso(v.created_at), "reason": v.reason}


def _chain_view(svc: Hocba, row: RecordRow) -> list[dict[str, Any]]:
    """The correction chain of `row`, oldest first; records of schools the caller does
    not cover are left out."""
    return [{"id": r.id, "chain_version": r.chain_version, "status": r.status,
             "supersedes": r.supersedes, "superseded_by": r.superseded_by,
             "created_at": _iso(r.created_at), "archived_at": _iso(r.archived_at)}
            for r in svc.index.record_chain(row.id) if client().covers(r.school_code)]


def _pdf_response(data: bytes, sha256: str, filename: str, *, inline: bool = False) -> Response:
    if request.if_none_match.contains(sha256):
        return Response(status=304, headers={"ETag": f'"{sha256}"'})
    resp = Response(data, mimetype="application/pdf")
    resp.headers["ETag"] = f'"{sha256}"'
    disposition = "inline" if inline else "attachment"
    resp.headers["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    return resp


# -- listing ---------------------------------------------------------------------------


@bp.get("/v1/archive/records")
@require("archive:read")
def list_records() -> dict[str, Any]:
    args = request.args
    status = args.get("status") or None
    if status is not None and status not in STATUSES:
        raise _query_error("status", f"one of {', '.join(STATUSES)}")
    student_id = args.get("student_id") or None
    if student_id is not None and len(student_id) > 32:
        raise _query_error("student_id", "at most 32 characters")
    record_type = args.get("record_type") or None
    if record_type is not None and len(record_type) > 64:
        raise _query_error("record_type", "at most 64 characters")
    year = _school_year_arg()
    limit_text = args.get("limit")
    limit = DEFAULT_LIMIT
    if limit_text:
        try:
            limit = int(limit_text)
        except ValueError:
            limit = 0
        if limit < 1:
            raise RequestError(f"limit must be an integer 1..{MAX_LIMIT}",
                               code="limit_invalid")
        limit = min(limit, MAX_LIMIT)
    cursor = args.get("cursor")
    after = decode_cursor(cursor) if cursor is not None else None
    schools = _schools_for(args.get("school_code") or None)
    svc = service()
    # One more than asked: whether there is a next page, without an empty last page.
    rows = svc.index.list_records(
        schools, student_id_number=student_id, school_year=year, status=status,
        record_type=record_type, after=after, limit=limit + 1)
    page = rows[:limit]
    more = len(rows) > limit
    return {"items": [svc.view(r) for r in page],
            "next_cursor": encode_cursor(page[-1]) if page and more else None}


# -- one record, its versions, its package ---------------------------------------------


@bp.get("/v1/archive/records/<record_id>")
@require("archive:read", "records:write")
def get_record(record_id: str) -> dict[str, Any]:
    svc = service()
    row = svc.record_row(client(), record_id)
    body = svc.view(row)
    body["chain_version"] = row.chain_version
    body["chain"] = _chain_view(svc, row)
    return body


@bp.get("/v1/archive/records/<record_id>/versions")
@require("archive:read", "records:write")
def versions(record_id: str) -> Response:
    svc = service()
    row = svc.record_row(client(), record_id)
    items = [_version_view(v) for v in svc.index.list_versions(row.id)]
    return Response(json.dumps(items), mimetype="application/json")


@bp.get("/v1/archive/records/<record_id>/versions/<int:version>/document")
@require("archive:read", "records:write")
def version_document(record_id: str, version: int) -> Response:
    svc = service()
    row = svc.record_row(client(), record_id)
    found = next((v for v in svc.index.list_versions(row.id) if v.version == version), None)
    if found is None:
        raise NotFound(f"record {row.id} has no version {version}", code="version_not_found")
    if request.if_none_match.contains(found.sha256):
        return Response(status=304, headers={"ETag": f'"{found.sha256}"'})
    return _pdf_response(_archived_bytes(svc, found.sha256), found.sha256,
                         f"{row.id}-v{found.version}.pdf")


@bp.get("/v1/archive/records/<record_id>/package")
@require("archive:read", "records:write")
def package(record_id: str) -> Response:
    svc = service()
    row = _archived_row(svc, record_id)
    version_rows = svc.index.list_versions(row.id)
    files = [VersionFile(v.version, v.sha256, _archived_bytes(svc, v.sha256))
             for v in version_rows]
    newest = max(files, key=lambda f: f.version) if files else None
    report = svc.verify(newest.data) if newest else {}
    evidence: list[EvidenceFile] = []  # none are produced yet (see archive/package.py)
    metadata = {
        "package": {"format": "hocba-record-package/1", "created_at": _iso(datetime.now(UTC)),
                    "created_by": Actor.of(client()).name},
        "record": svc.view(row),
        "metadata": json.loads(row.metadata_json),
        "school": {"code": row.school_code, "name": row.school_name},
        "signatures": [
            {"role": s.role, "position": s.position, "field": s.field_name,
             "signer": {"subject": s.signer_subject, "issuer": s.signer_issuer,
                        "serial": s.signer_serial, "key": s.signer_key},
             "signed_at": _iso(s.signed_at), "revision_sha256": s.revision_sha256}
            for s in svc.index.list_signatures(row.id)],
        "versions": [{**_version_view(v), "file": f"data/versions/v{v.version}.pdf"}
                     for v in version_rows],
        "chain": {"chain_version": row.chain_version, "supersedes": row.supersedes,
                  "superseded_by": row.superseded_by, "records": _chain_view(svc, row)},
        "validation_report": {"file": "data/validation-report.json",
                              "version": newest.version if newest else None},
        "evidence_records": [f"data/evidence/{e.name}" for e in evidence],
    }
    inp = PackageInput(
        record_id=row.id, school_code=row.school_code, school_name=row.school_name,
        record_type=row.record_type, school_year=row.school_year, versions=files,
        metadata=metadata, validation_report=report, evidence_records=evidence)
    try:
        data = build_package(inp)
    except PackageError as e:
        if e.code == "package_hash_mismatch":
            raise IntegrityError(e.detail, code="integrity_error") from e
        raise DependencyError(f"package: {e.detail}", code="package_failed") from e
    digest = hashlib.sha256(data).hexdigest()
    svc.index.append_audit(Actor.of(client()).name, row.tenant, "record.package_exported",
                           row.id, {"sha256": digest, "size": len(data),
                                    "versions": [f.version for f in files]})
    resp = Response(data, mimetype="application/zip")
    resp.headers["Content-Disposition"] = f'attachment; filename="{row.id}.zip"'
    resp.headers["Digest"] = "sha-256=" + base64.b64encode(bytes.fromhex(digest)).decode()
    return resp


# -- share links -----------------------------------------------------------------------


@bp.post("/v1/archive/records/<record_id>/share")
@require("archive:read", "records:write")
def share(record_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """A link to the archived PDF that needs no API key, until it expires. The token is
    shown here once; the index keeps only its SHA-256. (So Idempotency-Key is not
    honoured: answering a retry with the same link would mean keeping the token.)"""
    svc = service()
    row = _archived_row(svc, record_id)
    body = json_body()
    low = int(current_app.config.get(SHARE_MIN_CONFIG, SHARE_MIN_SECONDS))
    expires_in, purpose = body.get("expires_in"), body.get("purpose")
    errors = []
    if (not isinstance(expires_in, int) or isinstance(expires_in, bool)
            or not low <= expires_in <= SHARE_MAX_SECONDS):
        errors.append(FieldError("expires_in",
                                 f"an integer number of seconds, {low}..{SHARE_MAX_SECONDS}"))
    if purpose not in SHARE_PURPOSES:
        errors.append(FieldError("purpose", f"one of {', '.join(sorted(SHARE_PURPOSES))}"))
    if errors:
        raise InvalidInput("; ".join(f"{e.field}: {e.message}" for e in errors),
                           code="body_invalid", errors=errors)
    assert isinstance(expires_in, int) and isinstance(purpose, str)
    token = secrets.token_urlsafe(32)
    expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=expires_in)
    try:
        link = svc.index.create_share_link(hashlib.sha256(token.encode()).hexdigest(), row.id,
                                           purpose, Actor.of(client()).name, expires_at)
    except ValueError as e:  # the index's clock is past expires_at already
        raise InvalidInput(str(e), code="body_invalid") from e
    base = svc.settings.public_base_url.rstrip("/")
    return ({"url": f"{base}/v1/shared/{token}", "expires_at": _iso(link.expires_at),
             "purpose": link.purpose, "record_id": row.id}, 201,
            {"Cache-Control": "no-store"})


@bp.get("/v1/shared/<token>")
def shared(token: str) -> Response:
    """The archived PDF behind a share link (no API key); every use is audited."""
    svc = service()
    missing = NotFound("no such share link", code="share_link_not_found")
    if not SHARE_TOKEN.match(token):
        raise missing
    digest = hashlib.sha256(token.encode()).hexdigest()
    try:
        link = svc.index.count_share_use(digest, actor=SHARE_ACTOR)
    except ArchiveError as e:
        if e.code == "share_link_not_found":
            raise missing from e
        if e.code == "share_link_expired":
            _audit_refused(svc, digest)
            raise Gone("this share link has expired; ask the school for a new one",
                       code="share_link_expired") from e
        raise
    g.record_id = link.record_id
    row = svc.index.get_record(link.record_id)
    if row is None or row.status != ARCHIVED:  # cannot happen: only archived ones are shared
        raise missing
    g.tenant = row.tenant
    resp = _pdf_response(_archived_bytes(svc, row.current_sha256), row.current_sha256,
                         f"{row.id}.pdf", inline=True)
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Robots-Tag"] = "noindex, nofollow"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


def _audit_refused(svc: Hocba, digest: str) -> None:
    link = svc.index.get_share_link(digest)
    if link is None:
        return
    row = svc.index.get_record(link.record_id)
    svc.index.append_audit(SHARE_ACTOR, row.tenant if row else None, "share_link.refused",
                           link.record_id, {"token_sha256": digest, "reason": "expired",
                                            "expires_at": _iso(link.expires_at)})


# -- statistics ------------------------------------------------------------------------


def _tally(counts: list[Any], record_types: list[str]) -> dict[str, Any]:
    by_status = dict.fromkeys(STATUSES, 0)
    by_type: dict[str, dict[str, int]] = {
        rt: {"total": 0, **dict.fromkeys(STATUSES, 0)} for rt in record_types}
    total = superseded = 0
    for c in counts:
        total += c.total
        superseded += c.superseded
        by_status[c.status] = by_status.get(c.status, 0) + c.total
        entry = by_type.setdefault(c.record_type, {"total": 0, **dict.fromkeys(STATUSES, 0)})
        entry["total"] += c.total
        entry[c.status] = entry.get(c.status, 0) + c.total
    return {"total": total, "superseded": superseded, "by_status": by_status,
            "by_record_type": by_type}


@bp.get("/v1/stats")
@require("stats:read")
def stats() -> dict[str, Any]:
    school_code = request.args.get("school_code") or None
    year = _school_year_arg()
    schools = _schools_for(school_code)
    svc = service()
    counts = svc.index.count_records(schools, school_year=year)
    record_types = sorted(svc.policies)
    return {"tenant": client().tenant, "school_code": school_code, "school_year": year,
            "schools": sorted(schools), **_tally(counts, record_types),
            "by_school": {s: _tally([c for c in counts if c.school_code == s], record_types)
                          for s in sorted(schools)}}
