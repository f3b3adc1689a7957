"""/v1/records: create, read, download, sign with server-held keys."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, g, request

from signer.errors import InvalidInput, RequestError
from signer.http.auth import client, require, service
from signer.http.idempotency import idempotent, request_hash
from signer.workflow import Actor

bp = Blueprint("records", __name__, url_prefix="/v1/records")


def json_body() -> dict[str, Any]:
    try:
        body = json.loads(request.get_data(cache=True) or b"null")
    except ValueError as e:
        raise RequestError("the body is not valid JSON", code="body_invalid_json") from e
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object", code="body_invalid_json")
    return body


@bp.post("")
@require("records:write")
def create() -> Response:
    if not request.mimetype.startswith("multipart/form-data"):
        raise RequestError("send multipart/form-data with parts `document` and `metadata`",
                           code="multipart_required", status=415)
    upload = request.files.get("document")
    metadata = request.form.get("metadata")
    if metadata is None and "metadata" in request.files:
        metadata = request.files["metadata"].read().decode("utf-8", "replace")
    missing = [name for name, v in (("document", upload), ("metadata", metadata)) if v is None]
    if missing:
        raise InvalidInput(f"missing multipart part(s): {', '.join(missing)}",
                           code="multipart_missing_part")
    assert upload is not None and metadata is not None
    pdf = upload.stream  # Werkzeug spools a large upload to a temporary file: kept there
    svc = service()

    def produce() -> tuple[dict[str, Any], int]:
        row = svc.create_record(Actor.of(client()), pdf, metadata)
        g.record_id = row.id
        return svc.view(row), 201

    return idempotent(request_hash(pdf, metadata.encode()), produce)


@bp.get("/<record_id>")
@require("records:write")
def get(record_id: str) -> dict[str, Any]:
    svc = service()
    return svc.view(svc.record_row(client(), record_id))


@bp.get("/<record_id>/document")
@require("records:write")
def document(record_id: str) -> Response:
    svc = service()
    row = svc.record_row(client(), record_id)
    etag = row.current_sha256
    if request.if_none_match.contains(etag):
        return Response(status=304, headers={"ETag": f'"{etag}"'})
    resp = Response(svc.document(row), mimetype="application/pdf")
    resp.headers["ETag"] = f'"{etag}"'
    resp.headers["Content-Disposition"] = f'attachment; filename="{row.id}.pdf"'
    return resp


@bp.post("/<record_id>/signatures")
@require("records:sign")
def sign(record_id: str) -> Response:
    body = json_body()
    role, key = body.get("role"), body.get("key")
    bad = [f for f, v in (("role", role), ("key", key)) if not isinstance(v, str) or not v]
    if bad:
        raise InvalidInput(f"missing or empty: {', '.join(bad)}", code="body_invalid")
    svc = service()
    assert isinstance(role, str) and isinstance(key, str)

    authorization = body.get("authorization")

    def produce() -> tuple[dict[str, Any], int]:
        row = svc.sign_with_key(Actor.of(client()), record_id, role, key, authorization)
        return svc.view(row), 200

    # the one-time authorization is not part of the fingerprint (it is never kept)
    fingerprint = {k: v for k, v in body.items() if k != "authorization"}
    return idempotent(request_hash(json.dumps(fingerprint, sort_keys=True).encode()), produce)
