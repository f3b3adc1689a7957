"""The dev/test PKI's timeline 2026 -> 2076 (certs/dev-pki.yml) and its responder under
libfaketime: at each faked date the public TSA and OCSP URLs answer with the certificate
valid then (certs/responder.py), CRLs follow the clock, and trust.toml lists both roots.
The responder runs here on a free port under `faketime`; nothing is mocked."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import secrets
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from asn1crypto import algos, cms, tsp
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtensionOID

from signer.cli import wait_for_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
Y = 365 * 24 * 3600  # seconds, for the overlap rule (a year of 365 days)
TSAS = {  # label -> (issuer, valid-from year, valid-to year)
    "tsa": ("tsa-ca", 2024, 2035),
    "tsa-2033": ("tsa-ca-2033", 2033, 2045),
    "tsa-2043": ("tsa-ca-2043", 2043, 2055),
    "tsa-2053": ("tsa-ca-2053", 2053, 2065),
    "tsa-2063": ("tsa-ca-2063", 2063, 2080),
}
OCSPS = {
    "ocsp": ("interm", 2024, 2034),
    "ocsp-2033": ("interm", 2033, 2045),
    "ocsp-2043": ("interm", 2043, 2055),
    "ocsp-2053": ("interm", 2053, 2060),
    "ocsp-g2-2052": ("interm-g2", 2052, 2066),
    "ocsp-g2-2064": ("interm-g2", 2064, 2080),
}
# faked date -> (TSA label, interm's OCSP responder, interm-g2's OCSP responder); None:
# no responder certificate of that issuer is valid then (not asserted)
ERAS = {
    "2026-12-10": ("tsa", "ocsp", None),
    "2033-06-01": ("tsa-2033", "ocsp-2033", None),
    "2043-06-01": ("tsa-2043", "ocsp-2043", None),
    "2053-06-01": ("tsa-2053", "ocsp-2053", "ocsp-g2-2052"),
    "2063-06-01": ("tsa-2063", None, "ocsp-g2-2052"),
    "2076-06-01": ("tsa-2063", None, "ocsp-g2-2064"),
}
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def cert(state: Path, label: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((state / "pki" / "certs" / f"{label}.pem").read_bytes())


def same(a: x509.Certificate, b: x509.Certificate) -> bool:
    """The same certificate up to its URLs: the responder under test runs on another port
    than the state was provisioned for, and certomancer puts the port in the URLs."""
    return (a.subject, a.serial_number, a.public_key(), a.not_valid_before_utc) == (
        b.subject, b.serial_number, b.public_key(), b.not_valid_before_utc)


def year(y: int) -> datetime:
    return datetime(y, 1, 1, tzinfo=UTC)


def test_timeline(test_state: Path) -> None:
    for label, (issuer, start, end) in (TSAS | OCSPS).items():
        c, iss = cert(test_state, label), cert(test_state, issuer)
        assert (c.not_valid_before_utc, c.not_valid_after_utc) == (year(start), year(end))
        assert c.issuer == iss.subject, label
        c.verify_directly_issued_by(iss)
        eku = c.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE)
        assert eku.critical
        ku = c.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.digital_signature and not ku.key_cert_sign
    # each TSA certificate issued while the previous is valid, overlapping >= 2 years
    tsas = [cert(test_state, label) for label in TSAS]
    for prev, nxt in itertools.pairwise(tsas):
        overlap = prev.not_valid_after_utc - nxt.not_valid_before_utc
        assert overlap >= timedelta(seconds=2 * Y), (prev.subject, nxt.subject)
    keys = {label: cert(test_state, label).public_key() for label in TSAS}
    assert len({k.public_numbers() for k in keys.values()  # type: ignore[union-attr]
                }) == len(TSAS), "each TSA certificate has its own key"

    root, g2, cross = (cert(test_state, lbl) for lbl in ("root", "root-g2", "root-g2-cross"))
    interm_g2 = cert(test_state, "interm-g2")
    assert (root.not_valid_before_utc, root.not_valid_after_utc) == (year(2020), year(2070))
    assert (g2.not_valid_before_utc, g2.not_valid_after_utc) == (year(2052), year(2110))
    assert (cross.not_valid_before_utc, cross.not_valid_after_utc) == (year(2052), year(2070))
    assert (interm_g2.not_valid_before_utc, interm_g2.not_valid_after_utc) == (
        year(2052), year(2100))
    g2.verify_directly_issued_by(g2)
    cross.verify_directly_issued_by(root)  # signed with root's key
    assert cross.public_key() == g2.public_key() and cross.subject == g2.subject
    interm_g2.verify_directly_issued_by(g2)
    bc = interm_g2.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0
    # interm-g2's certificates carry its CRL and OCSP URLs, as interm's carry interm's
    for label, repo in (("teacher-1-g2", "interm-g2"), ("teacher-1", "interm")):
        assert crl_url(cert(test_state, label)).endswith(f"/dev/crls/{repo}/latest.crl")
        assert ocsp_url(cert(test_state, label)).endswith(f"/dev/ocsp/{repo}")


def test_trust_store(test_state: Path) -> None:
    doc = json.loads((test_state / "clients.json").read_text(encoding="utf-8"))
    assert (REPO / doc["trust_store"]).resolve() == test_state / "trust.toml"
    assert doc["trust_anchor"].endswith("pki/root.pem")
    store = tomllib.loads((test_state / "trust.toml").read_text(encoding="utf-8"))
    assert store["description"] == "hocba dev PKI (never for real records)"
    anchors = {a["id"]: a for a in store["anchor"]}
    assert list(anchors) == ["hocba-dev-root", "hocba-dev-root-g2"]
    for anchor_id, label, start, end in (("hocba-dev-root", "root", 2020, 2070),
                                         ("hocba-dev-root-g2", "root-g2", 2052, 2110)):
        a = anchors[anchor_id]
        assert a["certificate"] == f"pki/{label}.pem"
        pem = (test_state / a["certificate"]).read_bytes()
        der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
        assert a["sha256"] == hashlib.sha256(der).hexdigest()
        assert pem == (test_state / "pki" / "certs" / f"{label}.pem").read_bytes()
        c = x509.load_pem_x509_certificate(pem)
        cn = c.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        assert a["name"] == cn
        assert a["purposes"] == ["signing", "timestamping"]
        assert (a["trusted_from"], a["trusted_until"]) == (year(start), year(end))
        assert a["source"] == "generated by certs/provision.py"
    assert "note" not in anchors["hocba-dev-root"]
    assert "root-g2-cross.pem" in anchors["hocba-dev-root-g2"]["note"]


def crl_url(c: x509.Certificate) -> str:
    dps = c.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    name = dps[0].full_name
    assert name is not None
    return str(name[0].value)


def ocsp_url(c: x509.Certificate) -> str:
    aia = c.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return next(str(d.access_location.value) for d in aia
                if d.access_method == x509.AuthorityInformationAccessOID.OCSP)


@pytest.fixture
def faked_responder(request: pytest.FixtureRequest,
                    test_state: Path) -> Iterator[tuple[str, datetime]]:
    """The responder under libfaketime at request.param (a date), on a free port."""
    if not Path(LIBFAKETIME).exists():
        pytest.fail("libfaketime missing: install Debian's faketime (make deps)")
    when = datetime.fromisoformat(request.param).replace(tzinfo=UTC)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LD_PRELOAD": LIBFAKETIME,
           "FAKETIME": f"@{when:%Y-%m-%d %H:%M:%S}", "FAKETIME_DONT_RESET": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "certs.responder", "--state",
                             str(test_state), "--port", str(port)], cwd=REPO, env=env)
    try:
        wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}", when
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def at(base: str, url: str) -> str:
    """A URL from a certificate, on the responder under test."""
    return base + urlsplit(url).path


def timestamp(base: str) -> tuple[x509.Certificate, datetime]:
    digest = hashlib.sha256(b"hocba era test").digest()
    req = tsp.TimeStampReq({
        "version": 1,
        "message_imprint": {"hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                            "hashed_message": digest},
        "nonce": secrets.randbits(63), "cert_req": True,
    })
    r = requests.post(f"{base}/dev/tsa/tsa", data=req.dump(), timeout=30,
                      headers={"Content-Type": "application/timestamp-query"})
    r.raise_for_status()
    resp = tsp.TimeStampResp.load(r.content)
    assert resp["status"]["status"].native == "granted"
    signed: cms.SignedData = resp["time_stamp_token"]["content"]
    tst = signed["encap_content_info"]["content"].parsed
    assert tst["message_imprint"]["hashed_message"].native == digest
    sid = signed["signer_infos"][0]["sid"].chosen
    signer = next(c.chosen for c in signed["certificates"]
                  if c.chosen.issuer == sid["issuer"]
                  and c.chosen.serial_number == sid["serial_number"].native)
    return x509.load_der_x509_certificate(signer.dump()), tst["gen_time"].native


def ocsp_responder(base: str, subject: x509.Certificate,
                   issuer: x509.Certificate) -> tuple[x509.Certificate, datetime]:
    req = ocsp.OCSPRequestBuilder().add_certificate(subject, issuer, hashes.SHA1()).build()  # noqa: S303
    r = requests.post(at(base, ocsp_url(subject)), timeout=30,
                      data=req.public_bytes(Encoding.DER),
                      headers={"Content-Type": "application/ocsp-request"})
    r.raise_for_status()
    # asn1crypto, not cryptography: certomancer's producedAt has fractional seconds
    resp = asn1_ocsp.OCSPResponse.load(r.content)
    assert resp["response_status"].native == "successful"
    basic = resp.basic_ocsp_response
    (single,) = basic["tbs_response_data"]["responses"]
    assert single["cert_status"].name == "good"
    (responder_asn1,) = basic["certs"]
    responder = x509.load_der_x509_certificate(responder_asn1.dump())
    key = responder.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)  # long-lived keys are ECDSA P-256
    algo: hashes.HashAlgorithm = {"sha256": hashes.SHA256(), "sha384": hashes.SHA384(),
                                  "sha512": hashes.SHA512()}[basic["signature_algorithm"].hash_algo]
    key.verify(basic["signature"].native, basic["tbs_response_data"].dump(), ec.ECDSA(algo))
    return responder, single["this_update"].native


def crl_this_update(base: str, holder: x509.Certificate, issuer: x509.Certificate) -> datetime:
    r = requests.get(at(base, crl_url(holder)), timeout=30)
    r.raise_for_status()
    crl = x509.load_der_x509_crl(r.content)
    assert crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    return crl.last_update_utc


@pytest.mark.parametrize("faked_responder", list(ERAS), indirect=True)
def test_responder_serves_the_era(faked_responder: tuple[str, datetime],
                                  test_state: Path) -> None:
    base, when = faked_responder
    tsa_label, interm_ocsp, g2_ocsp = ERAS[f"{when:%Y-%m-%d}"]

    signer, gen_time = timestamp(base)
    assert same(signer, cert(test_state, tsa_label)), signer.subject
    assert gen_time.year == when.year
    assert when <= gen_time < when + timedelta(minutes=10)

    interm, interm_g2 = cert(test_state, "interm"), cert(test_state, "interm-g2")
    if interm_ocsp is not None:
        responder, this_update = ocsp_responder(base, cert(test_state, "teacher-1"), interm)
        assert same(responder, cert(test_state, interm_ocsp)), responder.subject
        assert this_update.year == when.year
    if g2_ocsp is not None:
        responder, this_update = ocsp_responder(base, cert(test_state, "teacher-1-g2"), interm_g2)
        assert same(responder, cert(test_state, g2_ocsp)), responder.subject
        assert this_update.year == when.year
    # CRLs follow the clock (a new one every 7 days from the issuer's valid-from)
    if when < interm.not_valid_after_utc:
        this_update = crl_this_update(base, cert(test_state, "teacher-1"), interm)
        assert when - timedelta(days=7) < this_update <= when
    if when >= interm_g2.not_valid_before_utc:
        this_update = crl_this_update(base, cert(test_state, "teacher-1-g2"), interm_g2)
        assert when - timedelta(days=7) < this_update <= when
        assert this_update.year == when.year
