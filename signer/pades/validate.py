"""Verify a signed record: PAdES signatures, document timestamps, the PAdES level.

``verify_pdf`` validates every signature the way pyHanko's ``adesverify`` does
(ETSI EN 319 102-1 long-term validation, ``ades_lta_validation``): trust only the
given roots, require revocation information for every certificate, and run the
default difference analysis on what was added after each signature.

Offline first: a finished record carries its validation data (the DSS and the
document timestamps), so it is validated first with the file's data only. Only
when that leaves an INDETERMINATE result and ``allow_fetching`` is true is it
validated again with OCSP/CRL fetching allowed. Certificates are never fetched
(AIA ``caIssuers`` URLs come from whoever made the file), only revocation data,
and only for certificates on a path to a trust root.

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
there is none). A document timestamp that is merely INDETERMINATE lowers the
level, not the indication.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

from asn1crypto import cms, crl, ocsp, tsp, x509
from cryptography import x509 as cx509
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import (
    AdESFailure,
    AdESIndeterminate,
    AdESStatus,
    AdESSubIndic,
)
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY, ModificationLevel
from pyhanko.sign.general import find_unique_cms_attribute
from pyhanko.sign.validation import generic_cms
from pyhanko.sign.validation.ades import (
    AdESWithTimeValidationResult,
    ades_lta_validation,
    ades_timestamp_validation,
    ades_with_time_validation,
)
from pyhanko.sign.validation.dss import DocumentSecurityStore, NoDSSFoundError
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.policy_decl import (
    CertificateFetchingRule,
    LocalKnowledge,
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import (
    DocumentTimestampStatus,
    PdfSignatureStatus,
    SignatureCoverageLevel,
)
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import (
    REQUIRE_REVINFO,
    CertRevTrustPolicy,
    FreshnessReqType,
)
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from signer.aio import run
from signer.errors import HocbaError, PdfRejected
from signer.pades.poecache import document_scope

__all__ = [
    "DocumentTimestampReport",
    "SignatureReport",
    "SignerIdentity",
    "VerificationReport",
    "verify_pdf",
    "verify_pdf_sync",
]

log = logging.getLogger(__name__)

TOTAL_PASSED = "TOTAL_PASSED"
TOTAL_FAILED = "TOTAL_FAILED"
INDETERMINATE = "INDETERMINATE"

LEVEL_LTA = "PAdES-B-LTA"
LEVEL_LT = "PAdES-B-LT"
LEVEL_T = "PAdES-B-T"
LEVEL_B = "PAdES-B-B"

FETCH_TIMEOUT_SECONDS = 10
# "However old": longer than any record is kept.
_TS_REVINFO_FRESHNESS = timedelta(days=365 * 200)
_EOF_WINDOW = 1024  # as readers do (and signer.inputs): %%EOF within the last 1 KiB
_MAX_DETAIL = 200

# pyHanko logs every step at INFO, and validation logs expected situations (no
# document timestamp yet, an untrusted chain, a broken signature in a hostile
# upload) at WARNING with tracebacks. Quiet them, leaving loggers an operator
# configured alone; our own log says what went wrong.
_QUIET_LOGGERS = {
    "pyhanko": logging.WARNING,
    "pyhanko.sign.validation": logging.ERROR,
    "pyhanko.sign.diff_analysis": logging.ERROR,
    "pyhanko_certvalidator": logging.ERROR,
}
for _logger_name, _logger_level in _QUIET_LOGGERS.items():
    if logging.getLogger(_logger_name).level == logging.NOTSET:
        logging.getLogger(_logger_name).setLevel(_logger_level)

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
_REVOKED = frozenset(
    {AdESFailure.REVOKED, AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.REVOKED_CA_NO_POE}
)


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SignerIdentity:
    subject: str | None
    issuer: str | None
    serial: str | None
    """Lowercase hexadecimal, no leading zeros."""

    def as_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "issuer": self.issuer, "serial": self.serial}


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "role": self.role,
            "signer": self.signer.as_dict(),
            "signing_time": _rfc3339(self.signing_time),
            "timestamp_time": _rfc3339(self.timestamp_time),
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
            "time": _rfc3339(self.time),
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

    @property
    def passed(self) -> bool:
        return self.indication == TOTAL_PASSED

    def as_dict(self) -> dict[str, Any]:
        """The contract's report; ``archived`` is the caller's to fill in."""
        return {
            "indication": self.indication,
            "sub_indication": self.sub_indication,
            "archived": None,
            "signatures": [s.as_dict() for s in self.signatures],
            "document_timestamps": [t.as_dict() for t in self.document_timestamps],
            "level": self.level,
        }


# ---------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------


async def verify_pdf(
    data: bytes,
    *,
    trust_roots: list[x509.Certificate],
    role_by_field: dict[str, str] | None = None,
    validation_time: datetime | None = None,
    allow_fetching: bool = True,
    strict_timestamps: bool = False,
) -> VerificationReport:
    """Validate every signature and document timestamp in ``data``.

    Only certificates chaining to ``trust_roots`` are trusted. ``role_by_field``
    names each signature field's role (unknown fields get ``None``).

    First validates with the validation data in the file only; if that leaves the
    document INDETERMINATE, ``allow_fetching`` is true and ``validation_time`` is
    not set, validates again fetching OCSP responses and CRLs (never certificates)
    and reports that result.

    ``validation_time`` (default: now) validates as of that moment, from the
    file's data only (pyHanko does not fetch for historical validation).

    ``strict_timestamps``: ETSI EN 319 102-1 validates the newest document
    timestamp at the current time, so its TSA certificate needs revocation data
    that is fresh then; once the OCSP responses and CRLs in the file have expired
    (days after signing), an offline validation is INDETERMINATE (TRY_LATER)
    until fresh data is fetched. By default (false), time-stamping certificates
    are accepted with the revocation data in the file however old it is (it must
    still say "good"), so a record validates offline, from the file and a trust
    anchor, until its newest document timestamp's TSA certificate expires
    (records need a new document timestamp before then). Signers' certificates
    are always held to ETSI's rules, through the proof of existence the document
    timestamps give.

    Raises ``PdfRejected`` (``pdf_not_a_pdf``, ``pdf_encrypted``, ``pdf_malformed``)
    for input that is not a readable, unencrypted PDF; everything else about the
    signatures is in the report.
    """
    data = bytes(data)
    _open(data)  # classify bad input before anything else
    if validation_time is not None and validation_time.tzinfo is None:
        validation_time = validation_time.replace(tzinfo=UTC)
    roles = role_by_field or {}
    try:
        report = await _verify(
            data,
            trust_roots,
            roles,
            validation_time,
            fetching=False,
            strict_timestamps=strict_timestamps,
        )
        if (
            report.indication == INDETERMINATE
            and report.signatures
            and allow_fetching
            and validation_time is None
        ):
            log.info("the file's validation data did not suffice; fetching revocation data")
            # the file's data and more, so never less informed than the first
            report = await _verify(
                data,
                trust_roots,
                roles,
                validation_time,
                fetching=True,
                strict_timestamps=strict_timestamps,
            )
        return report
    except HocbaError:
        raise
    except Exception as e:  # a parser or validator error on hostile input: never a 500
        log.info("verification failed on unreadable signature data", exc_info=True)
        raise PdfRejected(
            f"the PDF's signatures cannot be read: {_describe(e)}", code="pdf_malformed"
        ) from e


def verify_pdf_sync(
    data: bytes,
    *,
    trust_roots: list[x509.Certificate],
    role_by_field: dict[str, str] | None = None,
    validation_time: datetime | None = None,
    allow_fetching: bool = True,
    strict_timestamps: bool = False,
) -> VerificationReport:
    """``verify_pdf`` for callers without an event loop."""
    return run(
        verify_pdf(
            data,
            trust_roots=trust_roots,
            role_by_field=role_by_field,
            validation_time=validation_time,
            allow_fetching=allow_fetching,
            strict_timestamps=strict_timestamps,
        )
    )


# ---------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------


def _open(data: bytes) -> PdfFileReader:
    if not data.startswith(b"%PDF-"):
        raise PdfRejected(
            "the document is not a PDF (it must begin with %PDF-)", code="pdf_not_a_pdf"
        )
    if b"%%EOF" not in data[-_EOF_WINDOW:]:
        raise PdfRejected(
            "the PDF has no %%EOF marker at its end (truncated?)", code="pdf_malformed"
        )
    try:
        reader = PdfFileReader(BytesIO(data), strict=True)
        encrypted = "/Encrypt" in reader.trailer
        if not encrypted:
            reader.root  # noqa: B018 - the catalog must resolve
    except Exception as e:
        raise PdfRejected(f"the PDF cannot be read: {_describe(e)}", code="pdf_malformed") from e
    if encrypted:
        raise PdfRejected("the PDF is encrypted", code="pdf_encrypted")
    return reader


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _spec(
    trust_roots: list[x509.Certificate], *, fetching: bool, strict_timestamps: bool
) -> PdfSignatureValidationSpec:
    trust_manager = SimpleTrustManager.build(trust_roots=trust_roots)
    cert_policy = CertValidationPolicySpec(
        trust_manager=trust_manager,
        revinfo_policy=CertRevTrustPolicy(
            REQUIRE_REVINFO,
            freshness=None,
            freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION,
        ),
    )
    ts_policy = None
    if not strict_timestamps:
        # Time-stamping certificates: the file's revocation data counts however old
        # it is (it still has to say "good"); see verify_pdf.
        ts_policy = replace(
            cert_policy,
            revinfo_policy=CertRevTrustPolicy(
                REQUIRE_REVINFO,
                freshness=_TS_REVINFO_FRESHNESS,
                freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION,
            ),
        )
    if fetching:
        # imported here: `requests` costs ~40 ms of a cold verification that needs no fetch
        from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

        gathering = RevocationInfoGatheringSpec(
            online_fetching_rule=RevinfoOnlineFetchingRule.NO_HISTORICAL_FETCH,
            fetcher_backend=RequestsFetcherBackend(per_request_timeout=FETCH_TIMEOUT_SECONDS),
            certificate_fetching_rule=CertificateFetchingRule.NEVER_FETCH,
        )
    else:
        gathering = RevocationInfoGatheringSpec(
            online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY,
            certificate_fetching_rule=CertificateFetchingRule.NEVER_FETCH,
        )
    return PdfSignatureValidationSpec(
        signature_validation_spec=SignatureValidationSpec(
            cert_validation_policy=cert_policy,
            ts_cert_validation_policy=ts_policy,
            revinfo_gathering_policy=gathering,
            key_usage_settings=KeyUsageConstraints(
                key_usage={"digital_signature", "non_repudiation"},
                match_all_key_usages=False,
            ),
        ),
        diff_policy=DEFAULT_DIFF_POLICY,
    )


def _timing(validation_time: datetime | None) -> ValidationTimingInfo:
    if validation_time is None:
        return ValidationTimingInfo.now(tz=UTC)
    return ValidationTimingInfo(
        validation_time=validation_time,
        best_signature_time=validation_time,
        point_in_time_validation=True,
    )


async def _verify(
    data: bytes,
    trust_roots: list[x509.Certificate],
    role_by_field: Mapping[str, str],
    validation_time: datetime | None,
    *,
    fetching: bool,
    strict_timestamps: bool,
) -> VerificationReport:
    reader = _open(data)
    spec = _spec(trust_roots, fetching=fetching, strict_timestamps=strict_timestamps)
    timing = _timing(validation_time)

    dss = _read_dss(reader)
    regular = list(reader.embedded_regular_signatures)
    with document_scope():
        signatures = [
            await _verify_signature(sig, spec, timing, role_by_field.get(sig.field_name), dss)
            for sig in regular
        ]
    ts_spec = replace(spec.signature_validation_spec, local_knowledge=dss)
    doc_timestamps = [
        await _verify_doc_timestamp(ts, ts_spec, timing)
        for ts in reader.embedded_timestamp_signatures
    ]

    indication, sub_indication = _overall(signatures, doc_timestamps)
    level = _level(regular, signatures, doc_timestamps, has_revinfo=_has_revinfo(dss))
    return VerificationReport(
        indication=indication,
        sub_indication=sub_indication,
        signatures=tuple(signatures),
        document_timestamps=tuple(doc_timestamps),
        level=level,
        fetched=fetching,
    )


def _indication(sub: AdESSubIndic) -> tuple[str, str | None]:
    status = sub.status
    if status == AdESStatus.PASSED:
        return TOTAL_PASSED, None
    name = str(sub.standard_name)
    return (TOTAL_FAILED if status == AdESStatus.FAILED else INDETERMINATE), name


async def _verify_signature(
    sig: EmbeddedPdfSignature,
    spec: PdfSignatureValidationSpec,
    timing: ValidationTimingInfo,
    role: str | None,
    dss: LocalKnowledge,
) -> SignatureReport:
    field = str(sig.field_name)
    signer = _signer_identity(sig)
    claimed_time = _safe(lambda: sig.self_reported_timestamp)
    try:
        result: AdESWithTimeValidationResult = await ades_lta_validation(
            sig, spec, timing_info=timing
        )
        if result.ades_subindic.status == AdESStatus.INDETERMINATE:
            # pyHanko also runs past signature validation after a PASSED validation
            # with time, which fails without a document timestamp (no proof of
            # existence for the CA certificates: a PAdES-B-T or B-LT signature).
            # ETSI EN 319 102-1 5.6.3.4 does past validation only after an
            # INDETERMINATE one, so a PASSED validation with time stands.
            with_time = await _with_time_validation(sig, spec, timing, dss)
            if with_time.ades_subindic.status == AdESStatus.PASSED:
                result = with_time
    except Exception as e:
        # pyHanko raises for what it cannot process at all (broken CMS, hybrid xref)
        log.info("signature %s cannot be validated", field, exc_info=True)
        sub = getattr(e, "ades_subindication", None) or AdESFailure.FORMAT_FAILURE
        indication, sub_name = _indication(sub)
        return SignatureReport(
            field=field,
            role=role,
            signer=signer,
            signing_time=claimed_time,
            timestamp_time=_claimed_signature_ts_time(sig),
            indication=indication,
            sub_indication=sub_name,
            intact=False,
            trusted=False,
            revocation_checked=False,
            coverage=_coverage(_safe(lambda: sig.coverage)),
            changes_after="OTHER",
            message=_describe(e),
        )

    status = result.api_status
    indication, sub_name = _indication(result.ades_subindic)
    message = result.failure_msg if indication != TOTAL_PASSED else None
    intact = bool(status is not None and status.intact and status.valid)
    trusted = bool(status is not None and status.trusted)
    coverage = _coverage(status.coverage if status is not None else None)
    changes = _changes(status)

    if indication == TOTAL_PASSED and status is not None:
        # AdES validation judges the CMS signature; the PDF-specific checks are ours
        if coverage == "PARTIAL" or status.docmdp_ok is False:
            indication, sub_name = TOTAL_FAILED, AdESFailure.FORMAT_FAILURE.name
            message = (
                "the signature does not cover its whole revision"
                if coverage == "PARTIAL"
                else f"changes after signing ({changes}) are not allowed by the document's"
                " modification permissions"
            )
        elif not status.seed_value_ok:
            indication = INDETERMINATE
            sub_name = AdESIndeterminate.SIG_CONSTRAINTS_FAILURE.name
            message = "the signature does not meet its field's seed value constraints"

    revocation_checked = trusted or result.ades_subindic in _REVOKED
    ts_status = status.timestamp_validity if status is not None else None
    ts_result = getattr(result, "signature_timestamp_status", None)
    if ts_status is None and ts_result is not None:
        ts_status = ts_result.api_status
    timestamp_time = ts_status.timestamp if ts_status is not None else None
    return SignatureReport(
        field=field,
        role=role,
        signer=signer,
        signing_time=(status.signer_reported_dt if status is not None else None) or claimed_time,
        timestamp_time=timestamp_time or _claimed_signature_ts_time(sig),
        indication=indication,
        sub_indication=sub_name,
        intact=intact,
        trusted=trusted,
        revocation_checked=revocation_checked,
        coverage=coverage,
        changes_after=changes,
        message=message,
    )


async def _with_time_validation(
    sig: EmbeddedPdfSignature,
    spec: PdfSignatureValidationSpec,
    timing: ValidationTimingInfo,
    dss: LocalKnowledge,
) -> AdESWithTimeValidationResult:
    """ETSI EN 319 102-1 5.5 at the current time, with the validation data in the
    file (DSS, Adobe revocation archival attribute) as ``ades_lta_validation`` uses."""
    sig_spec = spec.signature_validation_spec
    archived = _adobe_archival(sig)
    known = sig_spec.local_knowledge
    knowledge = replace(
        known,
        known_ocsps=known.known_ocsps + dss.known_ocsps + archived.known_ocsps,
        known_crls=known.known_crls + dss.known_crls + archived.known_crls,
        known_certs=known.known_certs + dss.known_certs,
    )
    sig.compute_integrity_info(diff_policy=spec.diff_policy, skip_diff=spec.diff_policy is None)
    return await ades_with_time_validation(
        signed_data=sig.signed_data,
        validation_spec=replace(sig_spec, local_knowledge=knowledge),
        timing_info=timing,
        raw_digest=sig.compute_digest(),
        extra_status_kwargs=sig.summarise_integrity_info(),
        status_cls=PdfSignatureStatus,
    )


def _adobe_archival(sig: EmbeddedPdfSignature) -> LocalKnowledge:
    """Revocation data in the signature's adbe-revocationInfoArchival attribute."""
    try:
        archival = find_unique_cms_attribute(
            sig.signer_info["signed_attrs"], "adobe_revocation_info_archival"
        )
        return LocalKnowledge(
            known_ocsps=[OCSPContainer(o) for o in archival["ocsp"] or ()],
            known_crls=[CRLContainer(c) for c in archival["crl"] or ()],
        )
    except Exception:  # absent (the usual case for PAdES) or unreadable
        return LocalKnowledge()


async def _verify_doc_timestamp(
    ts: EmbeddedPdfSignature,
    spec: SignatureValidationSpec,
    timing: ValidationTimingInfo,
) -> DocumentTimestampReport:
    field = str(ts.field_name)
    tsa = _safe(lambda: _names(ts.signer_cert)[0])
    claimed = _safe(lambda: _tst_time(ts.signed_data))
    revision = _revision(ts)
    try:
        ts.compute_integrity_info(diff_policy=DEFAULT_DIFF_POLICY)

        def imprint(algorithm: str) -> bytes:
            return ts.compute_digest(algorithm)

        result = await ades_timestamp_validation(
            tst_signed_data=ts.signed_data,
            validation_spec=spec,
            expected_tst_imprint=imprint,
            timing_info=timing,
            extra_status_kwargs=ts.summarise_integrity_info(),
            status_cls=DocumentTimestampStatus,
        )
    except Exception as e:
        log.info("document timestamp %s cannot be validated", field, exc_info=True)
        sub = getattr(e, "ades_subindication", None) or AdESFailure.FORMAT_FAILURE
        indication, sub_name = _indication(sub)
        return DocumentTimestampReport(
            time=claimed,
            tsa=tsa,
            intact=False,
            trusted=False,
            field=field,
            indication=indication,
            sub_indication=sub_name,
            covers_revision=revision,
        )
    status = result.api_status
    indication, sub_name = _indication(result.ades_subindic)
    return DocumentTimestampReport(
        time=(status.timestamp if status is not None else None) or claimed,
        tsa=tsa,
        intact=bool(status is not None and status.intact and status.valid),
        trusted=bool(status is not None and status.trusted),
        field=field,
        indication=indication,
        sub_indication=sub_name,
        covers_revision=revision,
    )


def _overall(
    signatures: list[SignatureReport], doc_timestamps: list[DocumentTimestampReport]
) -> tuple[str, str | None]:
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
    return TOTAL_PASSED, None


def _level(
    regular: list[EmbeddedPdfSignature],
    signatures: list[SignatureReport],
    doc_timestamps: list[DocumentTimestampReport],
    *,
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
    last_revision = max(_revision(sig) for sig in regular)
    covered = any(
        t.covers_revision > last_revision and t.intact and t.trusted for t in doc_timestamps
    )
    if covered and all(s.indication == TOTAL_PASSED for s in signatures):
        return LEVEL_LTA
    return LEVEL_LT


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _read_dss(reader: PdfFileReader) -> LocalKnowledge:
    """The DSS's certificates, OCSP responses and CRLs, for validating document
    timestamps (``ades_lta_validation`` reads them itself for signatures)."""
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        return LocalKnowledge()
    ocsps: list[OCSPContainer] = []
    for ref in dss.ocsps:
        with contextlib.suppress(Exception):  # an unreadable entry is just not used
            data = ref.get_object().read_data(DecodePurpose.OCSP_RESPONSE)
            ocsps += OCSPContainer.load_multi(ocsp.OCSPResponse.load(data))
    crls: list[CRLContainer] = []
    for ref in dss.crls:
        with contextlib.suppress(Exception):
            data = ref.get_object().read_data(DecodePurpose.CRL)
            crls.append(CRLContainer(crl_data=crl.CertificateList.load(data)))
    certs = _safe(lambda: list(dss.load_certs())) or []
    return LocalKnowledge(known_ocsps=ocsps, known_crls=crls, known_certs=certs)


def _revision(sig: EmbeddedPdfSignature) -> int:
    """The PDF revision a signature or timestamp covers (0 when unreadable)."""
    revision = _safe(lambda: int(sig.signed_revision))
    return revision if isinstance(revision, int) else 0


def _has_revinfo(dss: LocalKnowledge) -> bool:
    return bool(dss.known_ocsps or dss.known_crls)


def _signer_identity(sig: EmbeddedPdfSignature) -> SignerIdentity:
    cert = _safe(lambda: sig.signer_cert)
    names = _safe(lambda: _names(cert)) if cert is not None else None
    if cert is None or names is None:
        return SignerIdentity(subject=None, issuer=None, serial=None)
    return SignerIdentity(subject=names[0], issuer=names[1], serial=format(cert.serial_number, "x"))


def _names(cert: x509.Certificate) -> tuple[str, str]:
    """Subject and issuer as RFC 4514 strings (most specific attribute first), or
    asn1crypto's human-friendly text when ``cryptography`` will not parse the cert."""
    try:
        parsed = cx509.load_der_x509_certificate(cert.dump())
        return parsed.subject.rfc4514_string(), parsed.issuer.rfc4514_string()
    except Exception:
        return cert.subject.human_friendly, cert.issuer.human_friendly


def _coverage(level: SignatureCoverageLevel | None) -> str:
    return _COVERAGE.get(level, "PARTIAL") if level is not None else "PARTIAL"


def _changes(status: PdfSignatureStatus | None) -> str:
    level = status.modification_level if status is not None else None
    return _CHANGES.get(level, "OTHER") if level is not None else "OTHER"


def _claimed_signature_ts_time(sig: EmbeddedPdfSignature) -> datetime | None:
    def first() -> datetime | None:
        for sd in generic_cms.extract_tst_data_iter(sig.signer_info, signed=False):
            return _tst_time(sd)
        return None

    return _safe(first)


def _tst_time(signed_data: cms.SignedData) -> datetime:
    info: tsp.TSTInfo = signed_data["encap_content_info"]["content"].parsed
    value: datetime = info["gen_time"].native
    return value


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _safe(get: Any) -> Any:
    """Best-effort facts about a possibly broken signature: None when unreadable."""
    try:
        return get()
    except Exception:
        return None


def _describe(e: BaseException) -> str:
    text = "".join(c if " " <= c <= "~" else "?" for c in str(e))[:_MAX_DETAIL]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
