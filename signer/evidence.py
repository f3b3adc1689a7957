"""Checking an evidence record (RFC 4998) against a file: the hash side
(archive.evidence), then every archive timestamp with pyHanko's timestamp validation —
the newest at the validation time, each older one as of the next one's time (its proof
of existence), with the validation data the record carries (each token's certificates
and revocation data, added at renewal) — as PAdES document timestamps are checked.

A valid record proves that the file existed at the first archive timestamp's time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from asn1crypto import cms, x509
from pyhanko.sign.ades.report import AdESFailure
from pyhanko.sign.validation.ades import ades_timestamp_validation
from pyhanko.sign.validation.policy_decl import LocalKnowledge
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from archive.evidence import EvidenceError, ProvenTimestamp, check_hashes, parse
from signer.pades.report import VerificationReport, indication_of
from signer.pades.validate import timestamp_spec, timing_at, verify_pdf
from signer.truststore import TrustInput, as_trust_store

log = logging.getLogger("hocba.evidence")


@dataclass(frozen=True)
class ArchiveTimestampReport:
    chain: int
    position: int
    time: datetime
    algorithm: str
    tsa: str | None
    validated_at: datetime | None  # None: at the validation time
    indication: str
    sub_indication: str | None

    @property
    def passed(self) -> bool:
        return self.indication == "TOTAL_PASSED"

    def as_dict(self) -> dict[str, Any]:
        return {"chain": self.chain, "position": self.position,
                "time": self.time.isoformat(), "algorithm": self.algorithm,
                "tsa": self.tsa,
                "validated_at": self.validated_at.isoformat() if self.validated_at else None,
                "indication": self.indication, "sub_indication": self.sub_indication}


@dataclass(frozen=True)
class EvidenceReport:
    """`existed_at`: the time the record proves the file existed (None: not proven)."""

    valid: bool
    existed_at: datetime | None
    covers: bool  # the hash trees cover the file
    timestamps: tuple[ArchiveTimestampReport, ...] = ()
    problem: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"valid": self.valid,
                "existed_at": self.existed_at.isoformat() if self.existed_at else None,
                "covers_file": self.covers,
                "archive_timestamps": [t.as_dict() for t in self.timestamps],
                "problem": self.problem}


def knowledge_of(tokens: list[cms.ContentInfo]) -> LocalKnowledge:
    """The certificates and revocation data the tokens carry."""
    certs: dict[bytes, x509.Certificate] = {}
    ocsps: list[OCSPContainer] = []
    crls: list[CRLContainer] = []
    for token in tokens:
        signed = token["content"]
        for choice in signed["certificates"] or ():
            if choice.name == "certificate":
                certs.setdefault(choice.chosen.dump(), choice.chosen)
        for rev in signed["crls"] or ():
            if rev.name == "crl":
                crls.append(CRLContainer(crl_data=rev.chosen))
            elif rev.name == "other" and rev.chosen["other_rev_info_format"].native \
                    == "ocsp_response":
                ocsps.extend(OCSPContainer.load_multi(rev.chosen["other_rev_info"]))
    return LocalKnowledge(known_certs=list(certs.values()), known_ocsps=ocsps,
                          known_crls=crls)


def _tsa_name(token: cms.ContentInfo) -> str | None:
    try:
        signed = token["content"]
        sid = signed["signer_infos"][0]["sid"]
        for choice in signed["certificates"] or ():
            cert = choice.chosen
            if choice.name == "certificate" and sid.name == "issuer_and_serial_number" \
                    and cert.serial_number == sid.chosen["serial_number"].native:
                return str(cert.subject.human_friendly)
    except (KeyError, ValueError, TypeError):
        pass
    return None


async def verify_evidence(data: bytes, evidence: bytes, trust: TrustInput, *,
                          online: bool = True,
                          validation_time: datetime | None = None) -> EvidenceReport:
    """Check `evidence` (a DER EvidenceRecord) against `data`."""
    store = as_trust_store(trust)
    try:
        record = parse(evidence)
        proven = check_hashes(record, data)
    except EvidenceError as e:
        return EvidenceReport(valid=False, existed_at=None, covers=False, problem=str(e))
    knowledge = knowledge_of([p.token for p in proven])
    reports = []
    for n, p in enumerate(proven):
        newest = n + 1 == len(proven)
        at = validation_time if newest else proven[n + 1].gen_time
        reports.append(await _validate(p, knowledge, store, at,
                                       fetching=online and newest))
    failed = [r for r in reports if not r.passed]
    problem = None
    if failed:
        first = failed[0]
        problem = (f"archive timestamp {first.chain}.{first.position} of "
                   f"{first.time:%Y-%m-%d}: {first.indication}"
                   + (f"/{first.sub_indication}" if first.sub_indication else ""))
    return EvidenceReport(valid=not failed, existed_at=None if failed else proven[0].gen_time,
                          covers=True, timestamps=tuple(reports), problem=problem)


async def _validate(p: ProvenTimestamp, knowledge: LocalKnowledge, trust: Any,
                    at: datetime | None, *, fetching: bool) -> ArchiveTimestampReport:
    spec = timestamp_spec(trust, knowledge, fetching=fetching)
    imprint = p.token["content"]["encap_content_info"]["content"].parsed[
        "message_imprint"]["hashed_message"].native
    try:
        result = await ades_timestamp_validation(
            tst_signed_data=p.token["content"], validation_spec=spec,
            expected_tst_imprint=lambda _algorithm: imprint, timing_info=timing_at(at))
        indication, sub = indication_of(result.ades_subindic)
    except Exception as e:
        log.info("archive timestamp %d.%d cannot be validated", p.chain, p.position,
                 exc_info=True)
        indication, sub = indication_of(
            getattr(e, "ades_subindication", None) or AdESFailure.FORMAT_FAILURE)
    return ArchiveTimestampReport(p.chain, p.position, p.gen_time, p.algorithm,
                                  _tsa_name(p.token), at, indication, sub)


async def verify_pdf_with_evidence(data: bytes, evidence: bytes, *, trust_roots: TrustInput,
                                   role_by_field: dict[str, str] | None = None,
                                   allow_fetching: bool = True,
                                   when_needed: bool = False) -> VerificationReport:
    """`verify_pdf`, with an evidence record of the file as proof of existence: when the
    file is not TOTAL_PASSED today (say its newest document timestamp lapsed) but the
    evidence record is valid today and proves the file existed at T, the file is
    validated as of T from its own validation data; if that passes, so does the report,
    with `proven_by` "evidence_record" (ETSI EN 319 102-1 accepts evidence records as
    proof of existence; pyHanko cannot read them, so this is hocba's step)."""
    trust = as_trust_store(trust_roots)
    report = await verify_pdf(data, trust_roots=trust, role_by_field=role_by_field,
                              allow_fetching=allow_fetching)
    if when_needed and report.passed:
        return report
    proof = await verify_evidence(data, evidence, trust, online=allow_fetching)
    summary = proof.as_dict()
    if report.passed or not proof.valid or proof.existed_at is None:
        return replace(report, evidence=summary)
    then = await verify_pdf(data, trust_roots=trust, role_by_field=role_by_field,
                            validation_time=proof.existed_at, allow_fetching=False)
    if not then.passed:
        return replace(report, evidence=summary)
    return replace(
        then, fetched=report.fetched, valid_as_of=None, proven_by="evidence_record",
        evidence=summary, timestamp_valid_until=report.timestamp_valid_until,
        explanation=(f"proven through its evidence record: the file existed at "
                     f"{proof.existed_at:%Y-%m-%d %H:%M} UTC, when its signatures and "
                     "timestamps were valid; the evidence record's archive timestamps are "
                     "valid today" + (f" (the file alone: {report.indication})")))
