"""The verification report (docs/CONTRACT.md): its records, the ETSI EN 319 102-1 names
they use and the document's verdict (indication, PAdES level) drawn from them.
signer.pades.validate fills it in from pyHanko's results; its public names are
importable from there too.

Indications and sub-indications are ETSI EN 319 102-1 names:

``TOTAL_PASSED``
    the signature is intact, its chain leads to a trust root, revocation was
    checked, and everything added after it is allowed by the DocMDP permissions.
``TOTAL_FAILED``
    e.g. ``HASH_FAILURE`` (signed bytes changed), ``SIG_CRYPTO_FAILURE``,
    ``REVOKED``, ``FORMAT_FAILURE`` (also, our choice as ETSI names nothing
    closer, when changes after a signature are not allowed by the document's
    DocMDP permissions or its byte range does not cover its revision).
``INDETERMINATE``
    e.g. ``NO_CERTIFICATE_CHAIN_FOUND`` (not our PKI), ``TRY_LATER`` /
    ``REVOCATION_OUT_OF_BOUNDS_NO_POE`` (no usable revocation data),
    ``SIG_CONSTRAINTS_FAILURE`` (seed value constraints of the field violated).

The document's indication: ``TOTAL_FAILED`` if any signature or document
timestamp failed (e.g. bytes it covers were changed); ``TOTAL_PASSED`` if there
is at least one signature and all passed; else ``INDETERMINATE`` with the first
signature's sub-indication that did not pass (``SIGNED_DATA_NOT_FOUND`` when
there is none). The newest document timestamp must pass too (it proves everything
before it today); an older one that is merely INDETERMINATE lowers the level, not the
indication.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyhanko.sign.ades.report import AdESIndeterminate, AdESStatus, AdESSubIndic
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation.status import PdfSignatureStatus, SignatureCoverageLevel

from archive.times import rfc3339_or_none

TOTAL_PASSED = "TOTAL_PASSED"
TOTAL_FAILED = "TOTAL_FAILED"
INDETERMINATE = "INDETERMINATE"

LEVEL_LTA = "PAdES-B-LTA"
LEVEL_LT = "PAdES-B-LT"
LEVEL_T = "PAdES-B-T"
LEVEL_B = "PAdES-B-B"

_CHANGES: Mapping[ModificationLevel, str] = {
    ModificationLevel.NONE: "NONE",
    ModificationLevel.LTA_UPDATES: "NONE",  # DSS and document timestamps only
    ModificationLevel.FORM_FILLING: "FORM_FILLING",
    ModificationLevel.ANNOTATIONS: "ANNOTATIONS",
    ModificationLevel.OTHER: "OTHER",
}
_COVERAGE: Mapping[SignatureCoverageLevel, str] = {
    SignatureCoverageLevel.ENTIRE_FILE: "ENTIRE_FILE",
    SignatureCoverageLevel.ENTIRE_REVISION: "ENTIRE_REVISION",
}


@dataclass(frozen=True)
class SignerIdentity:
    subject: str | None
    issuer: str | None
    serial: str | None
    """Lowercase hexadecimal, no leading zeros."""
    name: str | None = None
    """The subject's common name: how a person is shown."""
    public_subject: str | None = None
    """The subject without identifying attributes (UID, serialNumber, e-mail...): only
    CN, title, OU, O, L, ST, C. What an answer without a key may show."""

    def as_dict(self, *, public: bool = False) -> dict[str, Any]:
        subject = self.public_subject if public else self.subject
        return {"name": self.name, "subject": subject, "issuer": self.issuer,
                "serial": self.serial}


@dataclass(frozen=True)
class SignatureReport:
    field: str
    role: str | None
    signer: SignerIdentity
    signing_time: datetime | None
    """The time the signer claims (signingTime attribute or /M)."""
    timestamp_time: datetime | None
    """The signature timestamp's time."""
    indication: str
    sub_indication: str | None
    intact: bool
    trusted: bool
    revocation_checked: bool
    coverage: str
    changes_after: str
    message: str | None = None
    """pyHanko's reason when not passed; for logs, not part of ``as_dict``."""

    def as_dict(self, *, public: bool = False) -> dict[str, Any]:
        return {
            "field": self.field,
            "role": self.role,
            "signer": self.signer.as_dict(public=public),
            "signing_time": rfc3339_or_none(self.signing_time),
            "timestamp_time": rfc3339_or_none(self.timestamp_time),
            "indication": self.indication,
            "sub_indication": self.sub_indication,
            "intact": self.intact,
            "trusted": self.trusted,
            "revocation_checked": self.revocation_checked,
            "coverage": self.coverage,
            "changes_after": self.changes_after,
        }


@dataclass(frozen=True)
class DocumentTimestampReport:
    time: datetime | None
    tsa: str | None
    """The TSA certificate's subject."""
    intact: bool
    trusted: bool
    field: str = ""
    indication: str = INDETERMINATE
    sub_indication: str | None = None
    covers_revision: int = 0
    """The PDF revision it covers (not part of ``as_dict``)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "time": rfc3339_or_none(self.time),
            "tsa": self.tsa,
            "intact": self.intact,
            "trusted": self.trusted,
        }


@dataclass(frozen=True)
class VerificationReport:
    indication: str
    sub_indication: str | None
    signatures: tuple[SignatureReport, ...]
    document_timestamps: tuple[DocumentTimestampReport, ...]
    level: str | None
    fetched: bool = False
    """Whether this comes from the second validation, with online fetching allowed
    (the file's own validation data did not suffice)."""
    timestamp_valid_until: datetime | None = None
    """Until when the newest document timestamp can be validated (its TSA certificate's
    expiry, or when its algorithms stop being acceptable): renew before then."""
    valid_as_of: datetime | None = None
    """Not passed now, but the file alone proves the record as of this time."""
    explanation: str | None = None
    """Why the record is not TOTAL_PASSED, and what would fix it."""
    proven_by: str | None = None
    """"evidence_record" when the verdict rests on an evidence record (RFC 4998) as
    proof of existence: the file validated as of the time it proves."""
    evidence: dict[str, Any] | None = None
    """The evidence record's own report, when one was given."""

    @property
    def passed(self) -> bool:
        return self.indication == TOTAL_PASSED

    def as_dict(self, *, public: bool = False) -> dict[str, Any]:
        """The contract's report; ``archived`` is the caller's to fill in. `public`:
        signers' subjects without identifying attributes (docs/CONTRACT.md, "What an
        answer without a key reveals")."""
        return {
            "indication": self.indication,
            "sub_indication": self.sub_indication,
            "archived": None,
            "signatures": [s.as_dict(public=public) for s in self.signatures],
            "document_timestamps": [t.as_dict() for t in self.document_timestamps],
            "level": self.level,
            "timestamp_valid_until": rfc3339_or_none(self.timestamp_valid_until),
            "valid_as_of": rfc3339_or_none(self.valid_as_of),
            "explanation": self.explanation,
            "proven_by": self.proven_by,
            "evidence": self.evidence,
        }


def indication_of(sub: AdESSubIndic) -> tuple[str, str | None]:
    """pyHanko's AdES result as (indication, sub-indication)."""
    status = sub.status
    if status == AdESStatus.PASSED:
        return TOTAL_PASSED, None
    name = str(sub.standard_name)
    return (TOTAL_FAILED if status == AdESStatus.FAILED else INDETERMINATE), name


def coverage_name(level: SignatureCoverageLevel | None) -> str:
    return _COVERAGE.get(level, "PARTIAL") if level is not None else "PARTIAL"


def changes_name(status: PdfSignatureStatus | None) -> str:
    level = status.modification_level if status is not None else None
    return _CHANGES.get(level, "OTHER") if level is not None else "OTHER"


def overall(
    signatures: list[SignatureReport], doc_timestamps: list[DocumentTimestampReport]
) -> tuple[str, str | None]:
    """The document's indication and sub-indication (see signer.pades.validate)."""
    for s in signatures:
        if s.indication == TOTAL_FAILED:
            return TOTAL_FAILED, s.sub_indication
    for t in doc_timestamps:
        if t.indication == TOTAL_FAILED:  # e.g. bytes it covers were changed
            return TOTAL_FAILED, t.sub_indication
    if not signatures:
        return INDETERMINATE, AdESIndeterminate.SIGNED_DATA_NOT_FOUND.name
    for s in signatures:
        if s.indication != TOTAL_PASSED:
            return INDETERMINATE, s.sub_indication
    newest = max(doc_timestamps, key=lambda t: t.covers_revision, default=None)
    if newest is not None and newest.indication != TOTAL_PASSED:
        # the newest document timestamp is what proves everything before it today
        return INDETERMINATE, newest.sub_indication
    return TOTAL_PASSED, None


def pades_level(
    signatures: list[SignatureReport],
    doc_timestamps: list[DocumentTimestampReport],
    *,
    last_signed_revision: int,
    has_revinfo: bool,
) -> str | None:
    """The PAdES baseline level the document reaches (ETSI EN 319 142-1), simply:

    * ``PAdES-B-LTA``: B-LT, all signatures TOTAL_PASSED, and a trusted, intact
      document timestamp covers the revision of the last signature;
    * ``PAdES-B-LT``: B-T, and the DSS holds revocation data (OCSP responses or CRLs);
    * ``PAdES-B-T``: every signature carries a signature timestamp;
    * ``PAdES-B-B``: otherwise; ``None`` without signatures.
    """
    if not signatures:
        return None
    if not all(s.timestamp_time is not None for s in signatures):
        return LEVEL_B
    if not has_revinfo:
        return LEVEL_T
    covered = any(
        t.covers_revision > last_signed_revision and t.intact and t.trusted
        for t in doc_timestamps
    )
    if covered and all(s.indication == TOTAL_PASSED for s in signatures):
        return LEVEL_LTA
    return LEVEL_LT
