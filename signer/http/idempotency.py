"""Idempotency-Key on POSTs: one key, one effect, one answer for every caller.

The key is reserved in the index before anything is produced (one row per tenant and
key), so of concurrent callers exactly one produces. The others: a different request is
409 idempotency_conflict at once; the same request waits for the answer and gets it
replayed (same status and body, `Idempotent-Replayed: true`), or 409
idempotency_in_progress with Retry-After when the first caller is still at work after
WAIT_SECONDS. docs/CONTRACT.md, "Idempotency", is the contract."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import IO, Any

from flask import Response, g, request

from archive.errors import ArchiveError
from archive.index.idempotency import PENDING
from archive.index.rows import IdempotencyRow
from signer.errors import Conflict, InvalidInput
from signer.http.common import client, service

log = logging.getLogger("hocba.idempotency")

# How long a caller with the same request waits for the first caller's answer.
WAIT_SECONDS = 30.0
POLL_FIRST, POLL_MAX = 0.02, 0.5
# A reservation this old is its holder's, dead (a killed worker): the next caller with
# the same request takes it over. Far above any request's run time (worker timeout 120 s).
STALE_AFTER = timedelta(minutes=10)


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
    if not key:
        body, status = produce()
        return _json(json.dumps(body, ensure_ascii=False), status)
    index = service().index
    tenant = client().tenant
    deadline = time.monotonic() + WAIT_SECONDS
    pause = POLL_FIRST
    while True:
        reserved = index.reserve_idempotent(tenant, key, fingerprint, stale_after=STALE_AFTER)
        if reserved.token is not None:
            return _produce(tenant, key, reserved.token, produce)
        row = reserved.row
        # Someone else holds the key: wait while it is the same request, in progress.
        while row is not None:
            if row.request_hash != fingerprint:
                raise Conflict("this Idempotency-Key was used with a different request",
                               code="idempotency_conflict")
            if row.status_code != PENDING:
                return _replay(row)
            if time.monotonic() + pause > deadline:
                return _in_progress()
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX)
            row = index.get_idempotent(tenant, key)
        # released (the first caller failed): reserve it again, within the wait
        if time.monotonic() > deadline:
            return _in_progress()


def _produce(tenant: str, key: str, token: str,
             produce: Callable[[], tuple[dict[str, Any], int]]) -> Response:
    """Produce as the holder of the key, then keep the answer (or release the key)."""
    try:
        body, status = produce()
    except BaseException:
        # No error is kept: a 4xx changed nothing, and whether the same request fails
        # again cannot be told from its status (the one-time authorization is not part
        # of the fingerprint; registrations and time change). After a 5xx, signing again
        # resumes what was done. Released, the key serves the retry.
        _release(tenant, key, token)
        raise
    text = json.dumps(body, ensure_ascii=False)
    _keep(tenant, key, token, status, text)
    return _json(text, status)


def _keep(tenant: str, key: str, token: str, status: int, text: str) -> None:
    """Fill in the answer (a success: errors are never kept). The effect has happened:
    a failure to keep it is logged, and the caller still gets its answer (the
    reservation then lapses after STALE_AFTER)."""
    try:
        kept = service().index.complete_idempotent(tenant, key, token, status, text)
    except ArchiveError as e:
        log.warning("idempotency answer not kept (tenant %s): %s", tenant, e.code)
        return
    if not kept:
        log.warning("idempotency reservation taken over before its answer (tenant %s)",
                    tenant)


def _release(tenant: str, key: str, token: str) -> None:
    try:
        service().index.release_idempotent(tenant, key, token)
    except ArchiveError as e:  # the reservation lapses after STALE_AFTER
        log.warning("idempotency reservation not released (tenant %s): %s", tenant, e.code)


def _replay(row: IdempotencyRow) -> Response:
    g.outcome = "replayed"
    resp = _json(row.response_json, row.status_code)
    resp.headers["Idempotent-Replayed"] = "true"
    return resp


def _in_progress() -> Response:
    e = Conflict(f"a request with this Idempotency-Key is still in progress after "
                 f"{WAIT_SECONDS:.0f} s; retry later", code="idempotency_in_progress")
    g.outcome = e.code
    resp = _json(json.dumps(e.problem(), ensure_ascii=False), e.status)
    resp.headers["Retry-After"] = "1"
    return resp


def _json(text: str, status: int) -> Response:
    mimetype = "application/problem+json" if status >= 400 else "application/json"
    return Response(text, status=status, mimetype=mimetype)
