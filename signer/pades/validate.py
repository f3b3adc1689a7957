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

The report (its records, the ETSI EN 319 102-1 indications it uses, the document's
verdict and level) is signer.pades.report; its public names are importable from here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from io import BytesIO
from typing import Any, BinaryIO

from asn1crypto import cms, crl, ocsp, tsp, x509
from cryptography import x509 as cx509
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESStatus
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY
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
from pyhanko.sign.validation.status import DocumentTimestampStatus, PdfSignatureStatus
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
from signer.algorithms import load_algorithm_policy
from signer.errors import HocbaError, PdfRejected
from signer.fixes.poecache import document_scope
from signer.pades.report import (
    INDETERMINATE,
    TOTAL_FAILED,
    TOTAL_PASSED,
    DocumentTimestampReport,
    SignatureReport,
    SignerIdentity,
    VerificationReport,
    changes_name,
    coverage_name,
    indication_of,
    overall,
    pades_level,
)
from signer.pades.sigcheck import SIGNATURES
from signer.truststore import SIGNING, TIMESTAMPING, TrustInput, TrustStore, as_trust_store

__all__ = [
    "DocumentTimestampReport",
    "SignatureReport",
    "SignerIdentity",
    "VerificationReport",
    "verify_pdf",
    "verify_pdf_sync",
]

log = logging.getLogger(__name__)

FETCH_TIMEOUT_SECONDS = 10
_EOF_WINDOW = 1024  # as readers do (and signer.inputs): %%EOF within the last 1 KiB
_MAX_DETAIL = 200

_REVOKED = frozenset(
    {AdESFailure.REVOKED, AdESIndeterminate.REVOKED_NO_POE, AdESIndeterminate.REVOKED_CA_NO_POE}
)


# ---------------------------------------------------------------------------
# API
# ---------------------------------------------------------------------------


async def verify_pdf(
    data: bytes,
    *,
    trust_roots: TrustInput,
    role_by_field: dict[str, str] | None = None,
    validation_time: datetime | None = None,
    allow_fetching: bool = True,
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

    The rules are pyHanko's ``adesverify`` (ETSI EN 319 102-1) for every
    certificate, time-stamping ones included: the newest document timestamp is
    validated at the validation time, so offline, once the file's revocation data
    for its TSA is no longer fresh, the result is INDETERMINATE; the report then
    says as of when the file proves the record (``valid_as_of``) and why not now.
    ``trust_roots`` is a trust store (anchors with purposes and dates) or a flat
    list of roots; the algorithm policy is policies/crypto/algorithms.toml.

    Raises ``PdfRejected`` (``pdf_not_a_pdf``, ``pdf_encrypted``, ``pdf_malformed``)
    for input that is not a readable, unencrypted PDF; everything else about the
    signatures is in the report.
    """
    data = bytes(data)
    _open(data)  # classify bad input before anything else
    if validation_time is not None and validation_time.tzinfo is None:
        validation_time = validation_time.replace(tzinfo=UTC)
    roles = role_by_field or {}
    trust = as_trust_store(trust_roots)
    try:
        report = await _verify(data, trust, roles, validation_time, fetching=False)
        if (
            report.indication == INDETERMINATE
            and report.signatures
            and allow_fetching
            and validation_time is None
        ):
            log.info("the file's validation data did not suffice; fetching revocation data")
            # the file's data and more, so never less informed than the first
            fetched = await _verify(data, trust, roles, validation_time, fetching=True,
                                    fetched=await _newest_timestamp_revinfo(data, trust))
            if fetched.passed or not report.valid_as_of:
                report = fetched
            else:  # still not provable today: keep what the file proves, and as of when
                report = replace(report, fetched=True)
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
    trust_roots: TrustInput,
    role_by_field: dict[str, str] | None = None,
    validation_time: datetime | None = None,
    allow_fetching: bool = True,
) -> VerificationReport:
    """``verify_pdf`` for callers without an event loop."""
    return run(
        verify_pdf(
            data,
            trust_roots=trust_roots,
            role_by_field=role_by_field,
            validation_time=validation_time,
            allow_fetching=allow_fetching,
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


def _spec(trust: TrustStore, *, fetching: bool) -> PdfSignatureValidationSpec:
    """pyHanko's ``adesverify`` policy, with anchors by purpose and date and the dated
    algorithm policy."""
    revinfo = CertRevTrustPolicy(
        REQUIRE_REVINFO,
        freshness=None,
        freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION,
    )
    algorithms = load_algorithm_policy()
    cert_policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=trust.for_purpose(SIGNING)),
        revinfo_policy=revinfo,
        algorithm_usage_policy=algorithms,
        signature_validator=SIGNATURES,
    )
    ts_policy = replace(
        cert_policy,
        trust_manager=SimpleTrustManager.build(trust_roots=trust.for_purpose(TIMESTAMPING)),
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


def timestamp_spec(trust: TrustStore, knowledge: LocalKnowledge, *,
                   fetching: bool) -> SignatureValidationSpec:
    """The rules document timestamps are validated by (TSA anchors by purpose and date,
    the dated algorithm policy), with `knowledge` as validation data: for timestamps
    outside PDFs (evidence records)."""
    svs = _spec(trust, fetching=fetching).signature_validation_spec
    ts_policy = svs.ts_cert_validation_policy or svs.cert_validation_policy
    return replace(svs, cert_validation_policy=ts_policy, local_knowledge=knowledge)


def timing_at(validation_time: datetime | None) -> ValidationTimingInfo:
    """Validation at `validation_time` (a proof of existence), or now."""
    return _timing(validation_time)


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
    trust: TrustStore,
    role_by_field: Mapping[str, str],
    validation_time: datetime | None,
    *,
    fetching: bool,
    as_of_check: bool = True,
    fetched: LocalKnowledge | None = None,
) -> VerificationReport:
    reader = _open(data)
    # a file with document timestamps needs today's revocation data only for its newest
    # timestamp's TSA (`fetched`): signers' certificates are judged in the past, and
    # fresh data for an expired one would only stop the time slide at today
    spec = _spec(trust, fetching=fetching and fetched is None)
    if fetched is not None:
        svs = spec.signature_validation_spec
        spec = replace(spec, signature_validation_spec=replace(
            svs, local_knowledge=_merged(svs.local_knowledge, fetched)))
    timing = _timing(validation_time)

    dss = _read_dss(reader)
    regular = list(reader.embedded_regular_signatures)
    stamps = sorted(reader.embedded_timestamp_signatures, key=_revision)
    with document_scope():
        signatures = [
            await _verify_signature(sig, spec, timing, role_by_field.get(sig.field_name), dss,
                                    has_doc_timestamps=bool(stamps))
            for sig in regular
        ]
    ts_spec = replace(spec.signature_validation_spec,
                      local_knowledge=_merged(dss, fetched or LocalKnowledge()))
    # the newest at the validation time; each older one as of the next one's time (its
    # proof of existence), with the validation data added before it
    doc_timestamps = []
    for n, ts in enumerate(stamps):
        later = _safe(lambda n=n: _tst_time(stamps[n + 1].signed_data)) \
            if n + 1 < len(stamps) else None
        doc_timestamps.append(await _verify_doc_timestamp(
            ts, ts_spec, _timing(later) if later else timing))

    indication, sub_indication = overall(signatures, doc_timestamps)
    level = pades_level(signatures, doc_timestamps,
                        last_signed_revision=max(map(_revision, regular), default=0),
                        has_revinfo=_has_revinfo(dss))
    newest = stamps[-1] if stamps else None
    report = VerificationReport(
        indication=indication,
        sub_indication=sub_indication,
        signatures=tuple(signatures),
        document_timestamps=tuple(doc_timestamps),
        level=level,
        fetched=fetching,
        timestamp_valid_until=_timestamp_valid_until(newest) if newest else None,
    )
    if report.passed or not signatures or not doc_timestamps:
        return report
    moment = validation_time or timing.validation_time
    return replace(report, **await _not_passed_because(
        data, trust, role_by_field, report, moment, dss,
        as_of_check=as_of_check and not fetching))


async def _not_passed_because(
    data: bytes, trust: TrustStore, role_by_field: Mapping[str, str],
    report: VerificationReport, moment: datetime, dss: LocalKnowledge, *, as_of_check: bool,
) -> dict[str, Any]:
    """Why a record with document timestamps is not TOTAL_PASSED at `moment`, what would
    fix it, and (offline) as of when the file alone proves it."""
    until = report.timestamp_valid_until
    if report.indication == TOTAL_FAILED:
        return {}
    if until is not None and until <= moment:
        return {"explanation": (
            f"the newest document timestamp is no longer valid (its TSA certificate or "
            f"its algorithms were acceptable until {until:%Y-%m-%d}) and no newer "
            f"timestamp covers it: the record needed renewal before then")}
    newest_ts = max(report.document_timestamps, key=lambda t: t.covers_revision)
    if not as_of_check or newest_ts.indication != INDETERMINATE:
        return {}
    # offline: the file's revocation data is no longer fresh. As of the newest
    # validation data in the file (the newest timestamp or revocation data), is it valid?
    newest = max([t.time for t in report.document_timestamps if t.time]
                 + _revinfo_times(dss), default=None)
    if newest is None or newest >= moment:
        return {}
    then = await _verify(data, trust, role_by_field, newest, fetching=False,
                         as_of_check=False)
    if not then.passed:
        return {}
    return {"valid_as_of": newest, "explanation": (
        f"valid as of {newest:%Y-%m-%d %H:%M} UTC, the date of the newest validation "
        "data in the file; its revocation data is too old to prove more: verify online "
        "for today's status")}


async def _newest_timestamp_revinfo(data: bytes, trust: TrustStore) -> LocalKnowledge | None:
    """Today's revocation data for the chain of the newest document timestamp's TSA,
    fetched (never certificates); None when the file has no document timestamp."""
    from pyhanko_certvalidator import CertificateValidator, ValidationContext
    from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

    reader = _open(data)
    stamps = sorted(reader.embedded_timestamp_signatures, key=_revision)
    if not stamps:
        return None
    newest = stamps[-1]
    dss = _read_dss(reader)
    vc = ValidationContext(
        trust_roots=trust.for_purpose(TIMESTAMPING), allow_fetching=True,
        revocation_mode="hard-fail",
        fetcher_backend=RequestsFetcherBackend(per_request_timeout=FETCH_TIMEOUT_SECONDS),
        other_certs=list(dss.known_certs))
    try:
        cert = newest.signer_cert
        others = [c.chosen for c in newest.signed_data["certificates"] or ()
                  if c.name == "certificate"]
        await CertificateValidator(cert, intermediate_certs=others,
                                   validation_context=vc).async_validate_path()
    except Exception as e:  # what could be fetched still counts; the validation judges
        log.info("revocation data for the newest timestamp: %s", _describe(e))
    ocsps: list[OCSPContainer] = []
    for response in vc.ocsps:
        with contextlib.suppress(Exception):
            ocsps += OCSPContainer.load_multi(response)
    return LocalKnowledge(known_ocsps=ocsps,
                          known_crls=[CRLContainer(crl_data=c) for c in vc.crls])


def _merged(a: LocalKnowledge, b: LocalKnowledge) -> LocalKnowledge:
    return replace(a, known_ocsps=list(a.known_ocsps) + list(b.known_ocsps),
                   known_crls=list(a.known_crls) + list(b.known_crls),
                   known_certs=list(a.known_certs) + list(b.known_certs))


def _revinfo_times(dss: LocalKnowledge) -> list[datetime]:
    times: list[datetime] = []
    for o in dss.known_ocsps:
        t = _safe(lambda o=o: o.issuance_date)
        if isinstance(t, datetime):
            times.append(t)
    for c in dss.known_crls:
        t = _safe(lambda c=c: c.issuance_date)
        if isinstance(t, datetime):
            times.append(t)
    return times


def timestamp_valid_until(pdf: BinaryIO) -> datetime | None:
    """Until when the file's newest document timestamp can be validated (None: it has
    none, or it cannot be read)."""
    try:
        pdf.seek(0)
        reader = PdfFileReader(pdf, strict=False)
        stamps = sorted(reader.embedded_timestamp_signatures, key=_revision)
    except Exception:
        return None
    return _timestamp_valid_until(stamps[-1]) if stamps else None


def _timestamp_valid_until(ts: EmbeddedPdfSignature) -> datetime | None:
    """Until when the newest document timestamp can be validated: its TSA certificate's
    expiry, or earlier when its algorithms stop being acceptable."""
    cert = _safe(lambda: ts.signer_cert)
    if cert is None:
        return None
    ends = [cert.not_valid_after]
    weakens = load_algorithm_policy().weakens_before(cert)
    if weakens is not None:
        ends.append(weakens)
    value: datetime = min(ends)
    return value


async def _verify_signature(
    sig: EmbeddedPdfSignature,
    spec: PdfSignatureValidationSpec,
    timing: ValidationTimingInfo,
    role: str | None,
    dss: LocalKnowledge,
    *,
    has_doc_timestamps: bool,
) -> SignatureReport:
    field = str(sig.field_name)
    signer = _signer_identity(sig)
    claimed_time = _safe(lambda: sig.self_reported_timestamp)
    try:
        result: AdESWithTimeValidationResult = await ades_lta_validation(
            sig, spec, timing_info=timing
        )
        if result.ades_subindic.status == AdESStatus.INDETERMINATE and not has_doc_timestamps:
            # pyHanko also runs past signature validation after a PASSED validation
            # with time, which fails without a document timestamp (no proof of
            # existence for the CA certificates: a PAdES-B-T or B-LT signature).
            # ETSI EN 319 102-1 5.6.3.4 does past validation only after an
            # INDETERMINATE one, so a PASSED validation with time stands. With document
            # timestamps, their chain decides (the newest must be valid now).
            with_time = await _with_time_validation(sig, spec, timing, dss)
            if with_time.ades_subindic.status == AdESStatus.PASSED:
                result = with_time
    except Exception as e:
        # pyHanko raises for what it cannot process at all (broken CMS, hybrid xref)
        log.info("signature %s cannot be validated", field, exc_info=True)
        sub = getattr(e, "ades_subindication", None) or AdESFailure.FORMAT_FAILURE
        indication, sub_name = indication_of(sub)
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
            coverage=coverage_name(_safe(lambda: sig.coverage)),
            changes_after="OTHER",
            message=_describe(e),
        )

    status = result.api_status
    indication, sub_name = indication_of(result.ades_subindic)
    message = result.failure_msg if indication != TOTAL_PASSED else None
    intact = bool(status is not None and status.intact and status.valid)
    trusted = bool(status is not None and status.trusted)
    coverage = coverage_name(status.coverage if status is not None else None)
    changes = changes_name(status)

    if indication != TOTAL_FAILED and status is not None:
        # AdES validation judges the CMS signature; the PDF-specific checks are ours
        # (changes not allowed fail a signature whether or not its chain is proven)
        if coverage == "PARTIAL" or status.docmdp_ok is False:
            indication, sub_name = TOTAL_FAILED, AdESFailure.FORMAT_FAILURE.name
            message = (
                "the signature does not cover its whole revision"
                if coverage == "PARTIAL"
                else f"changes after signing ({changes}) are not allowed by the document's"
                " modification permissions"
            )
        elif indication == TOTAL_PASSED and not status.seed_value_ok:
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
        indication, sub_name = indication_of(sub)
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
    indication, sub_name = indication_of(result.ades_subindic)
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
    subject, issuer, name, public_subject = names
    return SignerIdentity(subject=subject, issuer=issuer,
                          serial=format(cert.serial_number, "x"), name=name,
                          public_subject=public_subject)


# What an answer without a key may show of a signer (no UID, serialNumber, e-mail...).
_PUBLIC_ATTRIBUTES = frozenset({
    NameOID.COMMON_NAME, NameOID.TITLE, NameOID.ORGANIZATIONAL_UNIT_NAME,
    NameOID.ORGANIZATION_NAME, NameOID.LOCALITY_NAME, NameOID.STATE_OR_PROVINCE_NAME,
    NameOID.COUNTRY_NAME,
})


def _names(cert: x509.Certificate) -> tuple[str, str, str | None, str]:
    """Subject and issuer as RFC 4514 strings (most specific attribute first), the
    subject's common name, and the subject with only public attributes; asn1crypto's
    human-friendly text when ``cryptography`` will not parse the cert."""
    try:
        parsed = cx509.load_der_x509_certificate(cert.dump())
    except Exception:
        common = cert.subject.native.get("common_name")
        name = common if isinstance(common, str) else None
        return (cert.subject.human_friendly, cert.issuer.human_friendly, name,
                f"Common Name: {name}" if name else "")
    subject = parsed.subject
    cns = subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    public = cx509.Name([
        cx509.RelativeDistinguishedName(kept) for rdn in subject.rdns
        if (kept := [a for a in rdn if a.oid in _PUBLIC_ATTRIBUTES])
    ])
    return (subject.rfc4514_string(), parsed.issuer.rfc4514_string(),
            str(cns[0].value) if cns else None, public.rfc4514_string())


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


def _safe(get: Any) -> Any:
    """Best-effort facts about a possibly broken signature: None when unreadable."""
    try:
        return get()
    except Exception:
        return None


def _describe(e: BaseException) -> str:
    text = "".join(c if " " <= c <= "~" else "?" for c in str(e))[:_MAX_DETAIL]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
