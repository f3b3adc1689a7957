"""Verification for anyone: POST /v1/verify (a report for any PDF) and GET /verify/<id>,
the page a record's QR code points at (Vietnamese, with an English toggle)."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

from flask import Blueprint, Response, render_template, request

from archive.times import parse_rfc3339
from signer.errors import InvalidInput
from signer.http.common import service

bp = Blueprint("verify", __name__, template_folder="templates")
VIETNAM = timezone(timedelta(hours=7))


@bp.app_template_filter("common_name")
def common_name(subject: str | None) -> str:
    """'UID=...,CN=Nguyễn Thị Hoa,OU=...' -> 'Nguyễn Thị Hoa'."""
    for part in (subject or "").split(","):
        key, _, value = part.partition("=")
        if key.strip() == "CN":
            return value.strip()
    return subject or ""


@bp.app_template_filter("vn_time")
def vn_time(value: str | None) -> str:
    """RFC 3339 UTC -> '23/11/2026 17:26 (giờ Việt Nam, UTC+7)' style, dd/mm/yyyy."""
    if not value:
        return ""
    try:
        dt = parse_rfc3339(value)
    except ValueError:
        return value
    return dt.astimezone(VIETNAM).strftime("%d/%m/%Y %H:%M:%S")


@bp.post("/v1/verify")
def verify() -> dict[str, Any]:
    upload = request.files.get("document")
    if upload is None:
        raise InvalidInput("send multipart/form-data with the PDF in part `document`",
                           code="multipart_missing_part")
    return service().verification.verify(upload.read())


@bp.get("/verify/<record_id>")
def page(record_id: str) -> Response:
    svc = service()
    row = svc.catalog.public_archived(record_id)
    if row is None:
        html = render_template("verify.html", found=False, record_id=record_id)
        return Response(html, status=404, mimetype="text/html")
    report = svc.verification.verify(svc.records.document(row))
    html = render_template("verify.html", found=True, record_id=record_id, row=row,
                           report=report, view=svc.records.view(row))
    return Response(html, mimetype="text/html")


@bp.get("/verify/<record_id>/document")
def page_document(record_id: str) -> Response:
    svc = service()
    row = svc.catalog.public_archived(record_id)
    if row is None:
        return Response("not found", status=404, mimetype="text/plain")
    resp = Response(svc.records.document(row), mimetype="application/pdf")
    resp.headers["Content-Disposition"] = f'inline; filename="{record_id}.pdf"'
    resp.headers["ETag"] = f'"{row.current_sha256}"'
    return resp
