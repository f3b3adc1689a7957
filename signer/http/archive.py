"""Archivists and verifiers: listing, versions, packages, share links, school transfers,
statistics.

Every record endpoint answers 404 for a record of a school the caller's tenant does not
cover, exactly as for a missing one.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from flask import Blueprint, Response, g, request

from signer.errors import RequestError
from signer.http.auth import require
from signer.http.common import actor, client, json_body, pdf_response, query_error, service
from signer.http.idempotency import idempotent, request_hash
from signer.service.catalog import STATUSES, RecordQuery, schools_for
from signer.service.reads import read_purpose

bp = Blueprint("archive", __name__)

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
SCHOOL_YEAR = re.compile(r"[0-9]{4}-[0-9]{4}")
STUDENT_ID = re.compile(r"[0-9]{12}")


def _matching_arg(name: str, pattern: re.Pattern[str], message: str) -> str | None:
    """The query parameter, when given, in the form openapi.yaml documents (an empty one
    is not that form either)."""
    value = request.args.get(name)
    if value is not None and not pattern.fullmatch(value):
        raise query_error(name, message)
    return value


def _school_year_arg() -> str | None:
    return _matching_arg("school_year", SCHOOL_YEAR, "a school year such as 2024-2025")


def _limit_arg() -> int:
    text = request.args.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 1:
        raise RequestError(f"limit must be an integer 1..{MAX_LIMIT}", code="limit_invalid")
    return min(limit, MAX_LIMIT)


def _bounded_arg(name: str, most: int) -> str | None:
    value = request.args.get(name) or None
    if value is not None and len(value) > most:
        raise query_error(name, f"at most {most} characters")
    return value


# -- listing ---------------------------------------------------------------------------


@bp.get("/v1/archive/records")
@require("archive:read")
def list_records() -> dict[str, Any]:
    status = request.args.get("status")
    if status is not None and status not in STATUSES:
        raise query_error("status", f"one of {', '.join(STATUSES)}")
    query = RecordQuery(
        student_id_number=_matching_arg("student_id", STUDENT_ID,
                                        "a personal identification number (12 digits)"),
        record_type=_bounded_arg("record_type", 64),
        school_year=_school_year_arg(), status=status, limit=_limit_arg(),
        cursor=request.args.get("cursor") or None,  # empty: the first page
        schools=schools_for(client(), request.args.get("school_code") or None))
    return service().catalog.page(query)


# -- one record, its versions, its package ---------------------------------------------


@bp.get("/v1/archive/records/<record_id>")
@require("archive:read", "records:write")
def get_record(record_id: str) -> dict[str, Any]:
    return service().catalog.record(client(), record_id)


@bp.get("/v1/archive/records/<record_id>/versions")
@require("archive:read", "records:write")
def versions(record_id: str) -> Response:
    items = service().catalog.versions(client(), record_id)
    return Response(json.dumps(items), mimetype="application/json")


@bp.get("/v1/archive/records/<record_id>/versions/<int:version>/document")
@require("archive:read", "records:write")
def version_document(record_id: str, version: int) -> Response:
    catalog = service().catalog
    row, found = catalog.version(client(), record_id, version)
    purpose = read_purpose(request.args.get("purpose"))
    return pdf_response(lambda: catalog.read_version(actor(), row, found, purpose),
                        found.sha256, f"{row.id}-v{found.version}.pdf")


@bp.get("/v1/archive/records/<record_id>/package")
@require("archive:read", "records:write")
def package(record_id: str) -> Response:
    g.record_id = record_id
    built = service().packages.build(actor(), record_id)
    resp = Response(built.data, mimetype="application/zip")
    resp.headers["Content-Disposition"] = f'attachment; filename="{built.record_id}.zip"'
    resp.headers["Digest"] = "sha-256=" + base64.b64encode(bytes.fromhex(built.sha256)).decode()
    return resp


@bp.get("/v1/archive/records/<record_id>/evidence")
@require("archive:read", "records:write")
def evidence(record_id: str) -> Response:
    svc = service()
    row = svc.catalog.archived_row(client(), record_id, transferred=True)
    der, found = svc.evidence.of_newest_version(row)
    resp = Response(der, mimetype="application/octet-stream")
    resp.headers["Content-Disposition"] = (
        f'attachment; filename="{row.id}-{found.object_sha256[:12]}-g{found.generation}.ers"')
    resp.headers["Digest"] = "sha-256=" + base64.b64encode(
        bytes.fromhex(found.evidence_sha256)).decode()
    return resp


# -- share links -----------------------------------------------------------------------


@bp.post("/v1/archive/records/<record_id>/share")
@require("archive:read", "records:write")
def share(record_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """A link to the archived PDF that needs no API key, until it expires. The token is
    shown here once (so Idempotency-Key is not honoured: answering a retry with the same
    link would mean keeping the token)."""
    g.record_id = record_id
    body = json_body()
    link = service().shares.create(actor(), record_id, body["expires_in"], body["purpose"])
    return link, 201, {"Cache-Control": "no-store"}


@bp.get("/v1/archive/records/<record_id>/shares")
@require("archive:read", "records:write")
def share_links(record_id: str) -> dict[str, Any]:
    return {"items": service().shares.list(actor(), record_id)}


@bp.post("/v1/archive/records/<record_id>/shares/<link_id>/revoke")
@require("archive:read", "records:write")
def revoke_share_link(record_id: str, link_id: str) -> dict[str, Any]:
    g.record_id = record_id
    return service().shares.revoke(actor(), record_id, link_id)


@bp.get("/v1/shared/<token>")
def shared(token: str) -> Response:
    """The archived PDF behind a share link (no API key); every use is audited."""
    doc = service().shares.open(token)
    g.record_id, g.tenant = doc.row.id, doc.row.tenant
    resp = pdf_response(lambda: doc.data, doc.row.current_sha256, f"{doc.row.id}.pdf",
                        inline=True)
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Robots-Tag"] = "noindex, nofollow"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


# -- school transfers ------------------------------------------------------------------


@bp.post("/v1/transfers")
@require("records:write")
def create_transfer() -> Response:
    body = json_body()

    def produce() -> tuple[dict[str, Any], int]:
        return service().transfers.create(actor(), body["student_id"], body["to_school"],
                                          body.get("from_school"), body.get("note")), 201

    return idempotent(request_hash(json.dumps(body, sort_keys=True).encode()), produce)


@bp.get("/v1/transfers")
@require("archive:read", "records:write")
def list_transfers() -> dict[str, Any]:
    return service().transfers.list(actor())


@bp.get("/v1/transfers/<transfer_id>")
@require("archive:read", "records:write")
def get_transfer(transfer_id: str) -> dict[str, Any]:
    return service().transfers.get(actor(), transfer_id)


# -- statistics ------------------------------------------------------------------------


@bp.get("/v1/stats")
@require("stats:read")
def stats() -> dict[str, Any]:
    school_code = request.args.get("school_code") or None
    year = _school_year_arg()
    schools = schools_for(client(), school_code)
    return {"tenant": client().tenant, "school_code": school_code, "school_year": year,
            **service().stats.of(schools, year)}
