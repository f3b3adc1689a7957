"""Two-step signing for client-held keys (a school's USB token): the service prepares
the signature and returns the data to sign; the client signs it; the service checks the
value against the certificate, timestamps it and embeds it.

A session is persisted (index row + prepared PDF in the store), so a restart between
the two steps loses nothing. Sessions expire (410); a completed one cannot complete
again (409). Policy rules and order are checked at creation and again at completion.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from asn1crypto import pem, x509

from archive.index.rows import SESSION_COMPLETED, RecordRow, SigningSessionRow
from archive.store import Area
from signer.aio import run
from signer.errors import Conflict, Gone, HocbaError, InvalidInput, NotFound
from signer.pades import twostep
from signer.pades.sign import RoleSigning
from signer.workflow import Actor, Hocba

MAX_BATCH = 500


@dataclass(frozen=True)
class ItemResult:
    record_id: str
    status: str  # "signed" | "failed"
    code: str | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"record_id": self.record_id, "status": self.status}
        if self.code:
            out["code"], out["detail"] = self.code, self.detail
        return out


def parse_chain(pems: Any) -> list[x509.Certificate]:
    if not isinstance(pems, list) or not pems or not all(isinstance(p, str) for p in pems):
        raise InvalidInput("certificate_chain must be a non-empty list of PEM strings",
                           code="certificate_chain_invalid")
    certs: list[x509.Certificate] = []
    try:
        for text in pems:
            data = text.encode()
            if not pem.detect(data):
                raise ValueError("not PEM")
            certs += [x509.Certificate.load(der)
                      for _, _, der in pem.unarmor(data, multiple=True)]
        for cert in certs:
            _ = cert.subject.human_friendly, cert.public_key.algorithm
    except (ValueError, TypeError) as e:
        raise InvalidInput(f"certificate_chain: unreadable certificate ({e})",
                           code="certificate_chain_invalid") from e
    return certs


def _chain_pems(certs: list[x509.Certificate]) -> list[str]:
    return [pem.armor("CERTIFICATE", c.dump()).decode() for c in certs]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Sessions:
    def __init__(self, hocba: Hocba) -> None:
        self.hocba = hocba

    # -- step 1 -------------------------------------------------------------------------

    def _prepare_item(self, actor: Actor, record_id: str, role_name: str,
                      certs: list[x509.Certificate]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(stored state, answer) for one record."""
        h = self.hocba
        row = h.record_row(actor.client, record_id)
        policy, role = h.next_role_check(row, role_name)
        h.check_certificate(certs[0], certs[1:], role, row.school_code)
        current = h.document(row)
        certify = role.name == policy.roles[0].name
        prepared = run(twostep.prepare(current, certs[0], certs[1:], RoleSigning(
            policy, role, row.school_name, certify), h.services))
        obj = h._put(prepared.prepared_pdf, Area.WORKING)
        state = {"record_id": row.id, "expected_sha256": row.current_sha256,
                 "prepared_sha256": obj.sha256,
                 "prepared": prepared.to_json(include_pdf=False)}
        answer = {"record_id": row.id, "digest": _b64(prepared.digest),
                  "data_to_sign": _b64(prepared.data_to_sign)}
        return state, answer

    def start(self, actor: Actor, record_id: str, role: str, chain: Any) -> dict[str, Any]:
        certs = parse_chain(chain)
        state, answer = self._prepare_item(actor, record_id, role, certs)
        session = self._create(actor, "single", role, [state], certs)
        return {"session_id": session.id, "digest_algorithm": "sha256",
                "data_to_sign": answer["data_to_sign"], "digest": answer["digest"],
                "expires_at": session.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def start_batch(self, actor: Actor, role: str, chain: Any,
                    record_ids: Any) -> dict[str, Any]:
        certs = parse_chain(chain)
        ids = _record_ids(record_ids)
        states, items, failed = [], [], []
        for rid in ids:
            try:
                state, answer = self._prepare_item(actor, rid, role, certs)
            except HocbaError as e:
                if e.status >= 500:
                    raise
                failed.append(ItemResult(rid, "failed", e.code, e.detail).as_dict())
                continue
            states.append(state)
            items.append(answer)
        if not states:
            raise InvalidInput("no record of the batch can be signed", code="batch_empty",
                               errors=[])
        session = self._create(actor, "batch", role, states, certs)
        return {"session_id": session.id, "digest_algorithm": "sha256", "items": items,
                "failed": failed,
                "expires_at": session.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def _create(self, actor: Actor, kind: str, role: str, items: list[dict[str, Any]],
                certs: list[x509.Certificate]) -> SigningSessionRow:
        return self.hocba.index.create_signing_session(
            session_id=str(uuid.uuid4()), tenant=actor.client.tenant, kind=kind, role=role,
            created_by=actor.name, state={"items": items, "chain": _chain_pems(certs)},
            expires_at=datetime.now(UTC)
            + timedelta(seconds=self.hocba.settings.session_ttl_seconds))

    # -- step 2 -------------------------------------------------------------------------

    def _open_session(self, actor: Actor, session_id: str, kind: str) -> SigningSessionRow:
        s = self.hocba.index.get_signing_session(session_id)
        if s is None or s.kind != kind or s.tenant != actor.client.tenant:
            raise NotFound(f"no signing session {session_id}", code="session_not_found")
        if s.status == SESSION_COMPLETED:
            raise Conflict("this signing session is already completed",
                           code="session_completed")
        if datetime.now(UTC) > s.expires_at:
            raise Gone("this signing session has expired; start a new one",
                       code="session_expired")
        return s

    def _complete_item(self, actor: Actor, session: SigningSessionRow,
                       state: dict[str, Any], value: bytes) -> RecordRow:
        h = self.hocba
        row = h.record_row(actor.client, state["record_id"])
        if row.current_sha256 != state["expected_sha256"]:
            raise Conflict("the record changed since the session started",
                           code="stale_revision")
        policy, role = h.next_role_check(row, session.role)
        certs = parse_chain(session.state["chain"])
        h.check_certificate(certs[0], certs[1:], role, row.school_code)
        prepared = twostep.PreparedSignature.from_json(
            state["prepared"], prepared_pdf=h._get(state["prepared_sha256"], Area.WORKING))
        signed = run(twostep.complete(prepared, value, h.services))
        return h.commit_signature(actor, row, policy, role, signed, certs[0], None)

    def complete(self, actor: Actor, session_id: str, signature_value: Any) -> RecordRow:
        session = self._open_session(actor, session_id, "single")
        value = _decode_value(signature_value, "signature_value")
        row = self._complete_item(actor, session, session.state["items"][0], value)
        self._close(actor, session)
        return row

    def complete_batch(self, actor: Actor, session_id: str,
                       signatures: Any) -> dict[str, Any]:
        session = self._open_session(actor, session_id, "batch")
        if not isinstance(signatures, list):
            raise InvalidInput("signatures must be a list of {record_id, signature_value}",
                               code="body_invalid")
        by_record: dict[str, Any] = {}
        for item in signatures:
            if not isinstance(item, dict) or not isinstance(item.get("record_id"), str):
                raise InvalidInput("each signature needs record_id and signature_value",
                                   code="body_invalid")
            by_record[item["record_id"]] = item.get("signature_value")
        results: list[dict[str, Any]] = []
        for state in session.state["items"]:
            rid = state["record_id"]
            if rid not in by_record:
                results.append(ItemResult(rid, "failed", "signature_missing",
                                          "no signature value sent").as_dict())
                continue
            try:
                value = _decode_value(by_record[rid], f"signatures[{rid}]")
                self._complete_item(actor, session, state, value)
                results.append(ItemResult(rid, "signed").as_dict())
            except HocbaError as e:
                if e.status >= 500:
                    raise
                results.append(ItemResult(rid, "failed", e.code, e.detail).as_dict())
        self._close(actor, session)
        done = sum(r["status"] == "signed" for r in results)
        return {"session_id": session.id, "total": len(results), "done": done,
                "results": results}

    def _close(self, actor: Actor, session: SigningSessionRow) -> None:
        # The prepared PDFs stay in the working area (short retention on S3).
        self.hocba.index.complete_signing_session(session.id, actor.name)


def _decode_value(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{field} must be base64", code="signature_invalid")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise InvalidInput(f"{field} is not valid base64", code="signature_invalid") from e


def _record_ids(value: Any) -> list[str]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v for v in value)):
        raise InvalidInput("record_ids must be a non-empty list of record ids",
                           code="body_invalid")
    if len(value) > MAX_BATCH:
        raise InvalidInput(f"at most {MAX_BATCH} records per batch", code="batch_too_large")
    if len(set(value)) != len(value):
        raise InvalidInput("record_ids has duplicates", code="body_invalid")
    return list(value)
