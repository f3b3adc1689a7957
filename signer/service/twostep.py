"""Two-step signing for client-held keys (a school's USB token): the service prepares
the signature and returns the data to sign; the client signs it; the service checks the
value against the certificate, timestamps it and embeds it.

A session is persisted (index row + prepared PDF in the store), so a restart between
the two steps loses nothing. Sessions expire (410); a completed one cannot complete
again (409). Policy rules and order are checked at creation and again at completion.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from asn1crypto import pem, x509

from archive.index import Index
from archive.index.rows import SESSION_COMPLETED, RecordRow, SigningSessionRow
from archive.store import Area
from archive.times import rfc3339
from signer.aio import run
from signer.errors import Conflict, Gone, HocbaError, InvalidInput, NotFound
from signer.pades import twostep
from signer.pades.context import SigningServices
from signer.service.actors import Actor
from signer.service.documents import Documents
from signer.service.keysigning import finishing_later
from signer.service.signing import SigningStep, Target, _as_problem
from signer.settings import Settings


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


def parse_chain(pems: list[str]) -> list[x509.Certificate]:
    """The certificates of PEM texts (the request schema has checked their shape)."""
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
    if not certs:
        raise InvalidInput("certificate_chain holds no certificate",
                           code="certificate_chain_invalid")
    return certs


def _chain_pems(certs: list[x509.Certificate]) -> list[str]:
    return [pem.armor("CERTIFICATE", c.dump()).decode() for c in certs]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class SignatureValues:
    """Producer: the client's signature values, checked and embedded into the PDFs
    prepared in step 1 (record id -> (session item, value))."""

    batched = False
    key_name: str | None = None

    def __init__(self, certificate: x509.Certificate, services: SigningServices,
                 values: dict[str, tuple[dict[str, Any], bytes]]) -> None:
        self.certificate = certificate
        self.services = services
        self.values = values

    def source(self, target: Target) -> tuple[str, Area]:
        return self.values[target.row.id][0]["prepared_sha256"], Area.WORKING

    async def start(self, count: int) -> None:
        return None

    async def produce(self, target: Target, source: BinaryIO, out: BinaryIO) -> None:
        state, value = self.values[target.row.id]
        prepared = twostep.PreparedSignature.from_json(state["prepared"],
                                                       prepared_pdf=source.read())
        out.write(await twostep.complete(prepared, value, self.services))

    async def close(self) -> None:
        return None


class TwoStep:
    def __init__(self, settings: Settings, index: Index, documents: Documents,
                 step: SigningStep, services: SigningServices) -> None:
        self.settings = settings
        self.index = index
        self.documents = documents
        self.step = step
        self.services = services

    # -- step 1 -------------------------------------------------------------------------

    def _prepare_item(self, actor: Actor, record_id: str, role_name: str,
                      certs: list[x509.Certificate]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(stored state, answer) for one record."""
        target = self.step.target(actor.client, record_id, role_name)
        self.step.check_signer(target, certs[0], certs[1:])
        with self.step.open_current(target) as current:
            try:
                prepared = run(twostep.prepare(current, certs[0], certs[1:], target.job,
                                               self.services))
            except Exception as e:  # an unreadable document: a problem, never a 500
                raise _as_problem(e) from e
        obj = self.documents.put(prepared.prepared_pdf, Area.WORKING)
        state = {"record_id": target.row.id, "expected_sha256": target.row.current_sha256,
                 "prepared_sha256": obj.sha256,
                 "prepared": prepared.to_json(include_pdf=False)}
        answer = {"record_id": target.row.id, "digest": _b64(prepared.digest),
                  "data_to_sign": _b64(prepared.data_to_sign)}
        return state, answer

    def start(self, actor: Actor, record_id: str, role: str, chain: list[str]
              ) -> dict[str, Any]:
        certs = parse_chain(chain)
        state, answer = self._prepare_item(actor, record_id, role, certs)
        session = self._create(actor, "single", role, [state], certs)
        return {"session_id": session.id, "digest_algorithm": "sha256",
                "data_to_sign": answer["data_to_sign"], "digest": answer["digest"],
                "expires_at": rfc3339(session.expires_at)}

    def start_batch(self, actor: Actor, role: str, chain: list[str],
                    record_ids: list[str]) -> dict[str, Any]:
        certs = parse_chain(chain)
        states, items, failed = [], [], []
        for rid in record_ids:
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
                "failed": failed, "expires_at": rfc3339(session.expires_at)}

    def _create(self, actor: Actor, kind: str, role: str, items: list[dict[str, Any]],
                certs: list[x509.Certificate]) -> SigningSessionRow:
        return self.index.create_signing_session(
            session_id=str(uuid.uuid4()), tenant=actor.client.tenant, kind=kind, role=role,
            created_by=actor.name, state={"items": items, "chain": _chain_pems(certs)},
            expires_at=datetime.now(UTC) + timedelta(seconds=self.settings.session_ttl_seconds))

    # -- step 2 -------------------------------------------------------------------------

    def _open_session(self, actor: Actor, session_id: str, kind: str) -> SigningSessionRow:
        s = self.index.get_signing_session(session_id)
        if s is None or s.kind != kind or s.tenant != actor.client.tenant:
            raise NotFound(f"no signing session {session_id}", code="session_not_found")
        if s.status == SESSION_COMPLETED:
            raise Conflict("this signing session is already completed",
                           code="session_completed")
        if datetime.now(UTC) > s.expires_at:
            raise Gone("this signing session has expired; start a new one",
                       code="session_expired")
        return s

    def _sign(self, actor: Actor, session: SigningSessionRow,
              values: dict[str, tuple[dict[str, Any], bytes]]
              ) -> dict[str, RecordRow | HocbaError]:
        """Check each item again (order, policy, certificate, unchanged revision) and sign
        those that pass: record id -> outcome."""
        certs = parse_chain(session.state["chain"])
        outcomes: dict[str, RecordRow | HocbaError] = {}
        targets: list[Target] = []
        for rid, (state, _value) in values.items():
            try:
                target = self.step.target(actor.client, rid, session.role,
                                          expect_sha256=state["expected_sha256"])
                self.step.check_signer(target, certs[0], certs[1:])
            except HocbaError as e:
                outcomes[rid] = e
                continue
            targets.append(target)
        producer = SignatureValues(certs[0], self.services, values)
        for target, outcome in zip(targets, self.step.sign(actor, targets, producer),
                                   strict=True):
            outcomes[target.row.id] = outcome
        return outcomes

    def complete(self, actor: Actor, session_id: str, signature_value: str) -> RecordRow:
        session = self._open_session(actor, session_id, "single")
        value = _decode_value(signature_value, "signature_value")
        state = session.state["items"][0]
        outcome = self._sign(actor, session, {state["record_id"]: (state, value)})
        result = outcome[state["record_id"]]
        if isinstance(result, HocbaError):
            if result.status >= 500 and any(
                    s.role == session.role
                    for s in self.step.index.list_signatures(state["record_id"])):
                self._close(actor, session)  # signed; archiving failed: hocba finishes it
                raise finishing_later(result)
            raise result
        self._close(actor, session)
        return result

    def complete_batch(self, actor: Actor, session_id: str,
                       signatures: list[dict[str, str]]) -> dict[str, Any]:
        session = self._open_session(actor, session_id, "batch")
        by_record = {item["record_id"]: item["signature_value"] for item in signatures}
        results: dict[str, ItemResult] = {}
        values: dict[str, tuple[dict[str, Any], bytes]] = {}
        for state in session.state["items"]:
            rid = state["record_id"]
            if rid not in by_record:
                results[rid] = ItemResult(rid, "failed", "signature_missing",
                                          "no signature value sent")
                continue
            try:
                values[rid] = (state, _decode_value(by_record[rid], f"signatures[{rid}]"))
            except HocbaError as e:
                results[rid] = ItemResult(rid, "failed", e.code, e.detail)
        for rid, outcome in self._sign(actor, session, values).items():
            if isinstance(outcome, HocbaError):
                if outcome.status >= 500:
                    raise outcome
                results[rid] = ItemResult(rid, "failed", outcome.code, outcome.detail)
            else:
                results[rid] = ItemResult(rid, "signed")
        self._close(actor, session)
        ordered = [results[s["record_id"]].as_dict() for s in session.state["items"]]
        done = sum(r["status"] == "signed" for r in ordered)
        return {"session_id": session.id, "total": len(ordered), "done": done,
                "results": ordered}

    def _close(self, actor: Actor, session: SigningSessionRow) -> None:
        # The prepared PDFs stay in the working area (short retention on S3).
        self.index.complete_signing_session(session.id, actor.name)


def _decode_value(value: str, field: str) -> bytes:
    if not value:
        raise InvalidInput(f"{field} must be base64", code="signature_invalid")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as e:
        raise InvalidInput(f"{field} is not valid base64", code="signature_invalid") from e
