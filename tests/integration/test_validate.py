"""signer.pades.validate against real records signed with the test PKI (var/test) and the
test TSA/OCSP/CRL responder on 127.0.0.1:9781 (started by tests/conftest.py); nothing is
mocked."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import pytest

from signer.errors import PdfRejected
from signer.pades.validate import VerificationReport, verify_pdf, verify_pdf_sync
from tests.fixtures import make_bad_pdfs
from tests.unit import validate_fixtures as fx

pytestmark = pytest.mark.integration

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
FIELDS = ["Sig_GVCN", "Sig_HieuTruong", "Sig_ConDau"]
ROLES = ["teacher", "principal", "seal"]


@pytest.fixture
def dev_responder(live_responder: Any) -> str:
    """The real responder, (re)started by the shared fixture if it is not running."""
    return fx.RESPONDER_URL


@pytest.fixture(scope="module")
def record(responder: Any) -> bytes:
    """A three-signature PAdES-B-LTA record, as the service produces one."""
    return fx.lta_record()


@pytest.fixture(scope="module")
def roles() -> dict[str, str]:
    return fx.role_by_field()


def verify(pdf: bytes, **kwargs: Any) -> VerificationReport:
    kwargs.setdefault("trust_roots", [fx.dev_root()])
    return verify_pdf_sync(pdf, **kwargs)


def test_b_lta_record_passes(record: bytes, roles: dict[str, str]) -> None:
    report = verify(record, role_by_field=roles)
    d = report.as_dict()

    assert d["indication"] == "TOTAL_PASSED", d
    assert d["sub_indication"] is None
    assert d["level"] == "PAdES-B-LTA"
    assert d["archived"] is None
    assert not report.fetched, "the file's own validation data should have sufficed"

    sigs = d["signatures"]
    assert [s["field"] for s in sigs] == FIELDS
    assert [s["role"] for s in sigs] == ROLES
    for s in sigs:
        assert s["indication"] == "TOTAL_PASSED", s
        assert s["sub_indication"] is None
        assert s["intact"] is True
        assert s["trusted"] is True
        assert s["revocation_checked"] is True
        assert s["coverage"] == "ENTIRE_REVISION"  # later signatures and the DSS follow
        assert RFC3339_UTC.fullmatch(s["signing_time"])
        assert RFC3339_UTC.fullmatch(s["timestamp_time"])
        assert s["signer"]["issuer"] == "CN=hocba Dev Issuing CA,O=hocba dev PKI,C=VN"
        assert re.fullmatch(r"[0-9a-f]+", s["signer"]["serial"])
    # the teacher's and principal's are followed by signing (form filling), the
    # seal's only by revocation data and the document timestamp
    assert [s["changes_after"] for s in sigs] == ["FORM_FILLING", "FORM_FILLING", "NONE"]
    assert "CN=Nguyễn Thị Hoa" in sigs[0]["signer"]["subject"]
    assert "UID=DEMO-SCHOOL-1" in sigs[2]["signer"]["subject"]

    (ts,) = d["document_timestamps"]
    assert ts["intact"] is True
    assert ts["trusted"] is True
    assert ts["tsa"] == "CN=hocba Dev TSA,O=hocba dev PKI,C=VN"
    assert RFC3339_UTC.fullmatch(ts["time"])
    assert ts["time"] >= sigs[-1]["timestamp_time"]


def test_report_has_exactly_the_contract_shape(record: bytes, roles: dict[str, str]) -> None:
    d = verify(record, role_by_field=roles, allow_fetching=False).as_dict()
    assert set(d) == {
        "indication",
        "sub_indication",
        "archived",
        "signatures",
        "document_timestamps",
        "level",
        "timestamp_valid_until",
        "valid_as_of",
        "explanation",
        "proven_by",
        "evidence",
    }
    assert set(d["signatures"][0]) == {
        "field",
        "role",
        "signer",
        "signing_time",
        "timestamp_time",
        "indication",
        "sub_indication",
        "intact",
        "trusted",
        "revocation_checked",
        "coverage",
        "changes_after",
    }
    assert set(d["signatures"][0]["signer"]) == {"name", "subject", "issuer", "serial"}
    assert set(d["document_timestamps"][0]) == {"time", "tsa", "intact", "trusted"}


def test_offline_the_file_alone_suffices(record: bytes, roles: dict[str, str]) -> None:
    report = verify(record, role_by_field=roles, allow_fetching=False)
    assert report.indication == "TOTAL_PASSED", report
    assert report.level == "PAdES-B-LTA"
    assert not report.fetched


def test_fetches_revocation_data_only_when_the_file_lacks_it(
    dev_responder: str, roles: dict[str, str]
) -> None:
    pdf = fx.signed_without_revocation_data(fx.SAMPLE.read_bytes())

    offline = verify(pdf, role_by_field=roles, allow_fetching=False)
    assert offline.indication == "INDETERMINATE", offline
    assert offline.signatures[0].trusted is False
    assert offline.signatures[0].revocation_checked is False

    online = verify(pdf, role_by_field=roles)
    assert online.fetched
    assert online.indication == "TOTAL_PASSED", online
    (s,) = online.signatures
    assert (s.field, s.role, s.trusted, s.revocation_checked) == ("Sig_GVCN", "teacher", True, True)
    assert s.coverage == "ENTIRE_FILE"
    assert s.changes_after == "NONE"
    assert online.level == "PAdES-B-T"  # no DSS, no document timestamp


def test_years_later_offline(record: bytes, roles: dict[str, str]) -> None:
    """Long after every OCSP response in the file expired (and after the signers'
    certificates did, in 2031): as pyHanko's adesverify, offline is not a pass (the
    newest document timestamp's TSA needs revocation data fresh at validation time),
    but the report says as of when the file proves the record, and why not now."""
    first = verify(record, allow_fetching=False)
    signed = first.document_timestamps[0].time
    assert signed is not None and first.passed
    assert first.timestamp_valid_until is not None and first.timestamp_valid_until > signed
    later = signed + timedelta(days=5 * 365)
    report = verify(record, role_by_field=roles, validation_time=later, allow_fetching=False)
    assert report.indication == "INDETERMINATE", report
    assert report.document_timestamps[0].trusted is False
    assert report.valid_as_of is not None
    assert signed <= report.valid_as_of < signed + timedelta(hours=1)
    assert report.explanation and "verify online" in report.explanation
    d = report.as_dict()
    assert d["valid_as_of"] == report.valid_as_of.strftime("%Y-%m-%dT%H:%M:%SZ")

    # after the TSA certificate expired, nothing is proven without a newer timestamp
    gone = verify(record, validation_time=first.timestamp_valid_until + timedelta(days=1),
                  allow_fetching=False)
    assert gone.indication != "TOTAL_PASSED"
    assert gone.valid_as_of is None
    assert gone.explanation and "renewal" in gone.explanation


def test_async_api_and_unknown_roles(record: bytes) -> None:
    report = asyncio.run(verify_pdf(record, trust_roots=[fx.dev_root()], allow_fetching=False))
    assert report.indication == "TOTAL_PASSED"
    assert [s.role for s in report.signatures] == [None, None, None]


def test_one_flipped_byte_in_a_signed_range_fails(record: bytes, roles: dict[str, str]) -> None:
    tampered, offset = fx.flip_signed_byte(record)
    start, end = fx.first_signed_range(record)
    assert start <= offset < end
    d = verify(tampered, role_by_field=roles).as_dict()
    assert d["indication"] == "TOTAL_FAILED", d
    assert d["sub_indication"] == "HASH_FAILURE"
    first = d["signatures"][0]
    assert first["indication"] == "TOTAL_FAILED"
    assert first["sub_indication"] == "HASH_FAILURE"
    assert first["intact"] is False
    assert first["trusted"] is False
    assert d["level"] != "PAdES-B-LTA"


def test_drawing_on_the_page_after_signing_fails(record: bytes, roles: dict[str, str]) -> None:
    d = verify(fx.with_text_added_after_signing(record), role_by_field=roles).as_dict()
    assert d["indication"] == "TOTAL_FAILED", d
    assert d["sub_indication"] == "FORMAT_FAILURE"
    for s in d["signatures"]:
        assert s["intact"] is True  # the signed bytes are untouched...
        assert s["changes_after"] == "OTHER"  # ...but what came after is not allowed
        assert s["indication"] == "TOTAL_FAILED"


def test_foreign_ca_is_not_trusted(dev_responder: str) -> None:
    pdf = fx.foreign_signed(fx.SAMPLE.read_bytes())
    d = verify(pdf, role_by_field=fx.role_by_field()).as_dict()
    assert d["indication"] != "TOTAL_PASSED"
    assert d["indication"] == "INDETERMINATE"
    assert d["sub_indication"] == "NO_CERTIFICATE_CHAIN_FOUND"
    (s,) = d["signatures"]
    assert s["field"] == "Sig_Foreign"
    assert s["role"] is None
    assert s["intact"] is True
    assert s["trusted"] is False
    assert s["revocation_checked"] is False
    assert s["signer"]["issuer"] == "CN=Foreign Test CA,C=VN"
    assert s["timestamp_time"] is None
    assert d["document_timestamps"] == []
    assert d["level"] == "PAdES-B-B"


def test_wrong_key_usage_is_not_accepted(dev_responder: str) -> None:
    pdf = fx.signed_with_wrong_key_usage(fx.SAMPLE.read_bytes())
    report = verify(pdf)
    assert report.indication == "INDETERMINATE", report
    assert report.sub_indication == "CHAIN_CONSTRAINTS_FAILURE"
    assert report.signatures[0].intact is True
    assert report.signatures[0].trusted is False


def test_our_record_under_another_trust_anchor(record: bytes) -> None:
    foreign_root = fx.load_cert(fx.PKI / "certs" / "foreign-root.pem")
    report = verify(record, trust_roots=[foreign_root], allow_fetching=False)
    assert report.indication == "INDETERMINATE"
    assert all(not s.trusted for s in report.signatures)
    assert all(not t.trusted for t in report.document_timestamps)


def test_unsigned_pdf() -> None:
    d = verify(fx.SAMPLE.read_bytes()).as_dict()
    assert d == {
        "indication": "INDETERMINATE",
        "sub_indication": "SIGNED_DATA_NOT_FOUND",
        "archived": None,
        "signatures": [],
        "document_timestamps": [],
        "level": None,
        "timestamp_valid_until": None,
        "valid_as_of": None,
        "explanation": None,
        "proven_by": None,
        "evidence": None,
    }


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"hello, not a PDF", "pdf_not_a_pdf"),
        (b"", "pdf_not_a_pdf"),
        (make_bad_pdfs.png_not_pdf(), "pdf_not_a_pdf"),
        (make_bad_pdfs.encrypted_pdf(), "pdf_encrypted"),
        (make_bad_pdfs.truncated_sample_pdf(), "pdf_malformed"),
        (make_bad_pdfs.garbage_after_header_pdf(), "pdf_malformed"),
        (make_bad_pdfs.bad_startxref_pdf(), "pdf_malformed"),
    ],
    ids=["text", "empty", "png", "encrypted", "truncated", "garbage", "bad-startxref"],
)
def test_bad_input_is_rejected(data: bytes, code: str) -> None:
    with pytest.raises(PdfRejected) as e:
        verify(data)
    assert e.value.code == code
    assert e.value.status == 400


def test_broken_signed_records_never_raise_anything_else(record: bytes) -> None:
    """Cuts and overwrites all over a signed record: a report or PdfRejected."""
    first_range_end = fx.first_signed_range(record)[1]
    step = max(len(record) // 20, 1)
    for at in range(0, len(record), step):
        for damaged in (
            record[:at] + record[at + 97 :],
            record[:at] + b"\x00" * 7 + record[at + 7 :],
        ):
            try:
                report = verify(damaged, allow_fetching=False)
            except PdfRejected:
                continue
            if at < first_range_end:
                assert report.indication != "TOTAL_PASSED", at
