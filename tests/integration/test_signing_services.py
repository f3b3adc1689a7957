"""What SigningServices keeps across documents, against the real TSA/OCSP/CRL responder:
one TLS context for timestamp requests, validated paths reused while their revocation
data is, and one DSS update per record, written by finish_lta."""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import ssl
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import crl, ocsp, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.general import load_private_key_from_pemder_data
from pyhanko.sign.signers import PdfTimeStamper, SimpleSigner
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signer.keys.base import load_chain
from signer.pades import context
from signer.pades.context import SigningServices
from signer.pades.sign import RoleSigning, finish_lta, sign_role
from signer.pades.validate import verify_pdf
from signer.policy import load_policies
from signer.settings import load_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "fixtures" / "samples" / "hoc-ba-tieu-hoc-fpdf2.pdf"
SCHOOL = "Trường Tiểu học Nguyễn Du"


def make_services(env: dict[str, str], pki: Path, cache_seconds: int = 600) -> SigningServices:
    return SigningServices(tsa_url=env["HOCBA_TSA_URL"], trust_anchors=[pki / "root.pem"],
                           font_path=load_settings(env).stamp_font,
                           revocation_cache_seconds=cache_seconds)


@pytest.fixture
def pki(test_state: Path) -> Path:
    return test_state / "pki"


def local_signer(pki: Path, name: str) -> SimpleSigner:
    cert, *chain = load_chain([pki / "certs" / f"{name}.pem", pki / "certs" / "interm.pem"])
    key = load_private_key_from_pemder_data((pki / "keys" / f"{name}.key.pem").read_bytes(),
                                            passphrase=None)
    return SimpleSigner(signing_cert=cert, signing_key=key,
                        cert_registry=SimpleCertificateStore.from_certs([cert, *chain]))


def count_tls_contexts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    return made


def three_timestamps(timestamper: HTTPTimeStamper) -> list[Any]:
    digest = hashlib.sha256(b"hocba").digest()
    return [asyncio.run(timestamper.async_timestamp(digest, "sha256")) for _ in range(3)]


def test_one_tls_context_for_every_timestamp_request(
        live_responder: Any, service_env: dict[str, str], pki: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    context._tls_context.cache_clear()
    made = count_tls_contexts(monkeypatch)
    tokens = three_timestamps(make_services(service_env, pki).timestamper)
    assert len(tokens) == 3 and all(t["content_type"].native == "signed_data" for t in tokens)
    assert len(made) == 1
    made.clear()  # pyHanko's own client makes one per request: what this saves
    three_timestamps(HTTPTimeStamper(service_env["HOCBA_TSA_URL"]))
    assert len(made) == 3


def test_validated_paths_are_kept_as_long_as_their_revocation_data(
        live_responder: Any, service_env: dict[str, str], pki: Path) -> None:
    cert, *chain = load_chain([pki / "certs" / "teacher-1.pem", pki / "certs" / "interm.pem"])
    kept = make_services(service_env, pki)
    first = asyncio.run(kept.validated_path(cert, chain))
    assert asyncio.run(kept.validated_path(cert, chain)) is first
    assert first.leaf.sha256 == cert.sha256 and len(first) == 3
    assert kept.revinfo_context([context.cache_key(cert)]).ocsps  # what it was checked with

    expiring = make_services(service_env, pki, cache_seconds=0)
    again = asyncio.run(expiring.validated_path(cert, chain))
    assert asyncio.run(expiring.validated_path(cert, chain)) is not again


def test_role_signatures_leave_the_dss_to_finish_lta(
        live_responder: Any, service_env: dict[str, str], pki: Path) -> None:
    services = make_services(service_env, pki)
    policy = load_policies(REPO / "policies")["hoc_ba_tieu_hoc"]
    pdf = SAMPLE.read_bytes()
    for role, name in (("teacher", "teacher-1"), ("principal", "principal-1")):
        job = RoleSigning(policy, policy.role(role), SCHOOL, certify=role == "teacher")
        signer = local_signer(pki, name)
        cert = signer.signing_cert
        assert cert is not None
        asyncio.run(services.validated_path(cert, list(signer.cert_registry)))
        pdf = asyncio.run(sign_role(pdf, signer, job, services))
    assert b"/DSS" not in pdf

    final = asyncio.run(finish_lta(pdf, policy, services))
    update, after = final[len(pdf):].split(b"%%EOF")  # one revision: DSS + timestamp
    assert b"/DSS" in update and b"/OCSPs" in update and b"/ETSI.RFC3161" in update
    assert after.strip() == b""
    dss = PdfFileReader(io.BytesIO(final)).root["/DSS"]
    certs = [ref.get_object() for ref in dss["/Certs"]]
    ocsps = [ref.get_object() for ref in dss["/OCSPs"]]
    assert all(s["/Filter"] == "/FlateDecode" for s in certs + ocsps)  # stored deflated
    assert {x509.Certificate.load(s.data).subject.human_friendly for s in certs} >= {
        load_chain([pki / "certs" / "teacher-1.pem"])[0].subject.human_friendly}
    assert all(ocsp.OCSPResponse.load(s.data)["response_status"].native == "successful"
               for s in ocsps)
    # each signer's path fetched its own copy of the CAs' CRLs: the newest per issuer only
    crls = [crl.CertificateList.load(ref.get_object().data) for ref in dss["/CRLs"]]
    issuers = [c.issuer.dump() for c in crls]
    assert crls and len(issuers) == len(set(issuers)), [c.issuer.human_friendly for c in crls]

    live_responder.stop()  # everything needed is in the file now (the fixture restarts it)
    roots = load_chain([pki / "root.pem"])
    report = asyncio.run(verify_pdf(final, trust_roots=roots, allow_fetching=False,
                                    role_by_field={r.field.name: r.name for r in policy.roles}))
    assert [s.role for s in report.signatures] == ["teacher", "principal"]
    assert all(s.indication == "TOTAL_PASSED" and s.revocation_checked
               for s in report.signatures), report
    assert report.level == "PAdES-B-LTA", report


def test_space_reserved_from_the_last_signature_is_tight_and_refits(
        live_responder: Any, service_env: dict[str, str], pki: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """/Contents is sized from the signer's previous signature plus a small margin;
    a token that outgrows it (here: space made too small) is signed again with
    pyHanko's estimate, and a timestamp likewise."""
    services = make_services(service_env, pki)
    policy = load_policies(REPO / "policies")["hoc_ba_tieu_hoc"]
    teacher = local_signer(pki, "teacher-1")
    job = RoleSigning(policy, policy.role("teacher"), SCHOOL, certify=True)
    first = asyncio.run(sign_role(SAMPLE.read_bytes(), teacher, job, services))
    assert teacher.signing_cert is not None
    key = context.cache_key(teacher.signing_cert)
    der = services._reserved[key]
    second = asyncio.run(sign_role(SAMPLE.read_bytes(), teacher, job, services))
    contents = re.search(rb"/Contents\s*<([0-9a-fA-F]+)>", second[len(SAMPLE.read_bytes()):])
    assert contents is not None
    assert len(contents.group(1)) == 2 * (der + services.RESERVE_MARGIN)  # tight

    services._reserved[key] = 100  # far too small: refitted, then remembered again
    refit = asyncio.run(sign_role(SAMPLE.read_bytes(), teacher, job, services))
    assert abs(services._reserved[key] - der) < 64  # tokens differ by a byte or two
    services.RESERVE_MARGIN = -4000  # type: ignore[misc]  # the timestamp cannot fit
    reserved: list[int | None] = []
    real = PdfTimeStamper.async_timestamp_pdf

    async def recording(self: Any, *args: Any, **kwargs: Any) -> Any:
        reserved.append(kwargs.get("bytes_reserved"))
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(PdfTimeStamper, "async_timestamp_pdf", recording)
    for pdf in (first, refit):
        reserved.clear()
        final = asyncio.run(finish_lta(pdf, policy, services))
        assert len(reserved) == 2 and reserved[0] is not None and reserved[1] is None
        roots = load_chain([pki / "root.pem"])
        report = asyncio.run(verify_pdf(final, trust_roots=roots))
        assert report.signatures[0].indication == "TOTAL_PASSED", report
        assert report.level == "PAdES-B-LTA", report
