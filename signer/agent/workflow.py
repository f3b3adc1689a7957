"""The two-step signing flow: hocba sends digests, the token signs them, hocba embeds them.

One batch session for several records (one round trip each way), else one session per
record (see CONTRACT.md, "Client-held keys" and "Batches").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from signer.agent.crypto import DIGEST_SIZE, normalize_algorithm
from signer.agent.errors import AgentError, TokenError
from signer.agent.token import TokenKey
from signer.apiclient import ApiClient, ApiError, BatchSigningResult

USER_AGENT = "hocba-agent/0.1"


@dataclass(frozen=True)
class SignResult:
    record_id: str
    ok: bool
    status: str = ""  # the record's status after signing, when the server says
    code: str = ""
    detail: str = ""

    def line(self) -> str:
        if self.ok:
            return f"{self.record_id}\tsigned" + (f"\t{self.status}" if self.status else "")
        return f"{self.record_id}\tfailed\t{self.code}: {self.detail}"


def _idempotency_key(session_id: str) -> str:
    return f"agent-complete-{session_id}"


def signature_for(token_key: TokenKey, digest: bytes, data_to_sign: bytes, algorithm: str,
                  what: str) -> bytes:
    """Sign what the server sent, after checking the digest is the data's digest."""
    algorithm = normalize_algorithm(algorithm)
    if algorithm not in DIGEST_SIZE or algorithm == "sha1":
        raise AgentError(f"{what}: unsupported digest algorithm {algorithm!r}")
    if hashlib.new(algorithm, data_to_sign).digest() != digest:
        raise AgentError(f"{what}: the digest is not the {algorithm} of data_to_sign; "
                         "refusing to sign")
    signature = token_key.sign_digest(digest, algorithm)
    if not token_key.verify_digest(signature, digest, algorithm):
        raise TokenError(f"{what}: the token's signature does not verify with the "
                         "certificate; the key on the token is not this certificate's key")
    return signature


def _batch_results(record_ids: Sequence[str], done: BatchSigningResult) -> list[SignResult]:
    by_id = {r.record_id: r for r in done.results}
    results = []
    for rid in record_ids:
        r = by_id.get(rid)
        if r is None:
            results.append(SignResult(rid, False, code="not_in_session",
                                      detail="the server gave no result for this record"))
        elif r.ok:
            results.append(SignResult(rid, True, status=r.status))
        else:
            results.append(SignResult(rid, False, code=r.code or "failed",
                                      detail=r.detail or ""))
    return results


def sign_records(client: ApiClient, role: str, record_ids: Sequence[str],
                 token_key: TokenKey, batch: bool = True, *,
                 progress: Callable[[str], None] | None = None) -> list[SignResult]:
    """Sign records with the token: one batch session for several records (batch=True),
    else one session per record. Server errors on single records are reported per record;
    an error starting or completing a batch raises ApiError."""
    record_ids = list(dict.fromkeys(record_ids))
    if not record_ids:
        return []
    chain = token_key.certificate_chain()
    if batch and len(record_ids) > 1:
        started = client.start_batch_signing_session(role, record_ids, chain)
        signatures: dict[str, bytes] = {}
        for item in started.items:
            rid = item.record_id
            if rid not in record_ids:
                raise AgentError(f"batch session {started.session_id}: the server sent "
                                 f"record {rid!r}, which was not asked for; refusing to sign")
            signatures[rid] = signature_for(token_key, item.digest, item.data_to_sign,
                                            started.digest_algorithm, f"record {rid}")
            if progress is not None:
                progress(rid)
        done = client.complete_batch_signing_session(
            started.session_id, signatures,
            idempotency_key=_idempotency_key(started.session_id))
        results = _batch_results(list(signatures), done)
        missing = [rid for rid in record_ids if rid not in signatures]
        return results + [SignResult(rid, False, code="not_in_session",
                                     detail="the server gave no digest for this record")
                          for rid in missing]
    results = []
    for rid in record_ids:
        try:
            session = client.start_signing_session(rid, role, chain)
            signature = signature_for(token_key, session.digest, session.data_to_sign,
                                      session.digest_algorithm, f"record {rid}")
            record = client.complete_signing_session(
                session.session_id, signature,
                idempotency_key=_idempotency_key(session.session_id))
            results.append(SignResult(rid, True, status=record["status"]))
        except ApiError as e:
            results.append(SignResult(rid, False, code=e.code, detail=e.detail))
        if progress is not None:
            progress(rid)
    return results
