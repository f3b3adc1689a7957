"""Idempotency-Key on POSTs: the same key and request give the first answer again;
the same key with a different request is 409 idempotency_conflict."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import IO, Any

from flask import Response, request

from archive.index.rows import IdempotencyWrite
from signer.errors import Conflict, InvalidInput
from signer.http.common import client, service


def request_hash(*parts: bytes | IO[bytes]) -> str:
    """The request's fingerprint: method, path, and each part's SHA-256 (a file part is
    read in chunks from its start and left at its start)."""
    h = hashlib.sha256(request.method.encode() + b" " + request.path.encode())
    for part in parts:
        if isinstance(part, bytes):
            h.update(hashlib.sha256(part).digest())
        else:
            part.seek(0)
            h.update(hashlib.file_digest(part, "sha256").digest())  # type: ignore[arg-type]
            part.seek(0)
    return h.hexdigest()


def idempotent(fingerprint: str, produce: Callable[[], tuple[dict[str, Any], int]]) -> Response:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 200):
        raise InvalidInput("Idempotency-Key must be 1-200 characters",
                           code="idempotency_key_invalid")
    index = service().index
    tenant = client().tenant
    if key:
        prior = index.get_idempotent(tenant, key)
        if prior is not None:
            if prior.request_hash != fingerprint:
                raise Conflict("this Idempotency-Key was used with a different request",
                               code="idempotency_conflict")
            resp = Response(prior.response_json, status=prior.status_code,
                            mimetype="application/json")
            resp.headers["Idempotent-Replayed"] = "true"
            return resp
    body, status = produce()
    text = json.dumps(body, ensure_ascii=False)
    if key:
        stored = index.put_idempotent(IdempotencyWrite(tenant=tenant, key=key,
                                                       request_hash=fingerprint,
                                                       status_code=status, response_json=text))
        if stored.request_hash != fingerprint:
            raise Conflict("this Idempotency-Key was used with a different request",
                           code="idempotency_conflict")
        text = stored.response_json
    return Response(text, status=status, mimetype="application/json")
