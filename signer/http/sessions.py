"""Two-step signing for client-held keys: single and batch signing sessions."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response

from signer.http.auth import require
from signer.http.common import actor, json_body, service
from signer.http.idempotency import idempotent, request_hash

bp = Blueprint("sessions", __name__)


def _fingerprint(body: dict[str, Any]) -> str:
    return request_hash(json.dumps(body, sort_keys=True).encode())


@bp.post("/v1/records/<record_id>/signing-sessions")
@require("records:sign")
def start(record_id: str) -> Response:
    body = json_body()

    def produce() -> tuple[dict[str, Any], int]:
        return service().two_step.start(actor(), record_id, body["role"],
                                        body["certificate_chain"]), 201

    return idempotent(_fingerprint(body), produce)


@bp.post("/v1/signing-sessions/<session_id>/complete")
@require("records:sign")
def complete(session_id: str) -> Response:
    body = json_body()
    svc = service()

    def produce() -> tuple[dict[str, Any], int]:
        row = svc.two_step.complete(actor(), session_id, body["signature_value"])
        return svc.records.view(row), 200

    return idempotent(_fingerprint(body), produce)


@bp.post("/v1/batch-signing-sessions")
@require("records:sign")
def start_batch() -> Response:
    body = json_body()

    def produce() -> tuple[dict[str, Any], int]:
        return service().two_step.start_batch(actor(), body["role"],
                                              body["certificate_chain"],
                                              body["record_ids"]), 201

    return idempotent(_fingerprint(body), produce)


@bp.post("/v1/batch-signing-sessions/<session_id>/complete")
@require("records:sign")
def complete_batch(session_id: str) -> Response:
    body = json_body()

    def produce() -> tuple[dict[str, Any], int]:
        return service().two_step.complete_batch(actor(), session_id,
                                                 body["signatures"]), 200

    return idempotent(_fingerprint(body), produce)
