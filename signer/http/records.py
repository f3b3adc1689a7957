"""/v1/records: create, read, download, sign with server-held or remote keys."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, g, request

from signer.errors import InvalidInput, RequestError
from signer.http.auth import require
from signer.http.common import actor, client, form_text, json_body, pdf_response, service
from signer.http.idempotency import idempotent, request_hash
from signer.service.reads import read_purpose

bp = Blueprint("records", __name__, url_prefix="/v1/records")


@bp.post("")
@require("records:write")
def create() -> Response:
    if not request.mimetype.startswith("multipart/form-data"):
        raise RequestError("send multipart/form-data with parts `document` and `metadata`",
                           code="multipart_required", status=415)
    upload = request.files.get("document")
    metadata = form_text("metadata")  # bytes as sent: check_metadata wants UTF-8
    missing = [name for name, v in (("document", upload), ("metadata", metadata)) if v is None]
    if missing:
        raise InvalidInput(f"missing multipart part(s): {', '.join(missing)}",
                           code="multipart_missing_part")
    assert upload is not None and metadata is not None
    pdf = upload.stream  # Werkzeug spools a large upload to a temporary file: kept there
    records = service().records

    def produce() -> tuple[dict[str, Any], int]:
        row = records.create(actor(), pdf, metadata)
        g.record_id = row.id
        return records.view(row), 201

    return idempotent(request_hash(pdf, metadata), produce)


@bp.get("/<record_id>")
@require("records:write")
def get(record_id: str) -> dict[str, Any]:
    records = service().records
    return records.view(records.row(client(), record_id))


@bp.get("/<record_id>/document")
@require("records:write")
def document(record_id: str) -> Response:
    svc = service()
    row = svc.records.row(client(), record_id)
    purpose = read_purpose(request.args.get("purpose"))
    return pdf_response(lambda: svc.catalog.read_current(actor(), row, purpose),
                        row.current_sha256, f"{row.id}.pdf")


@bp.post("/<record_id>/signatures")
@require("records:sign")
def sign(record_id: str) -> Response:
    body = json_body()
    svc = service()

    def produce() -> tuple[dict[str, Any], int]:
        row = svc.key_signing.sign(actor(), record_id, body["role"], body["key"],
                                   body.get("authorization"))
        return svc.records.view(row), 200

    # the one-time authorization is not part of the fingerprint (it is never kept)
    fingerprint = {k: v for k, v in body.items() if k != "authorization"}
    return idempotent(request_hash(json.dumps(fingerprint, sort_keys=True).encode()), produce)
