"""Two-step signing for client-held keys: single and batch signing sessions."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response

from signer.http.auth import client, require, service
from signer.http.idempotency import idempotent, request_hash
from signer.http.records import json_body
from signer.sessions import Sessions
from signer.workflow import Actor

bp = Blueprint("sessions", __name__)


def _sessions() -> Sessions:
    return Sessions(service())


def _fingerprint(body: dict[str, Any]) -> str:
    return request_hash(json.dumps(body, sort_keys=True).encode())


@bp.post("/v1/records/<record_id>/signing-sessions")
@require("records:sign")
def start(record_id: str) -> Response:
    body = json_body()

    def produce() -> tuple[dict[str, Any], int]:
        return _sessions().start(Actor.of(client()), record_id, str(body.get("role", "")),
                                 body.get("certificate_chain")), 201

    return idempotent(_fingerprint(body), produce)


@bp.post("/v1/signing-sessions/<session_id>/complete")
@require("records:sign")
def complete(session_id: str) -> Response:
    body = json_body()

    def produce() -> tuple[dict[str, Any], int]:
        row = _sessions().complete(Actor.of(client()), session_id,
                                   body.get("signature_value"))
        return service().view(row), 200

    return idempotent(_fingerprint(body), produce)


@bp.post("/v1/batch-signing-sessions")
@require("records:sign")
def start_batch() -> Response:
    body = json_body()

    def produce() -> tuple[dict[str, Any], int]:
        return _sessions().start_batch(Actor.of(client()), str(body.get("role", "")),
                                       body.get("certificate_chain"),
                                       body.get("record_ids")), 201

    return idempotent(_fingerprint(body), produce)


@bp.post("/v1/batch-signing-sessions/<session_id>/complete")
@require("records:sign")
def complete_batch(session_id: str) -> Response:
    body = json_body()

    def produce() -> tuple[dict[str, Any], int]:
        return _sessions().complete_batch(Actor.of(client()), session_id,
                                          body.get("signatures")), 200

    return idempotent(_fingerprint(body), produce)
