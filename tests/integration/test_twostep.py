"""Two-step signing with a client-held key: prepare -> (JSON, restart) -> openssl signs
-> complete; real TSA/OCSP/CRL responder, real openssl, checked by verify_pdf and
pyHanko's CLI. Wrong and garbage signature values are refused before anything is made."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms

from signer.errors import IntegrityError, InvalidInput
from signer.keys.base import load_chain
from signer.pades.context import SigningServices
from signer.pades.sign import RoleSigning, existing_fields, sign_role
from signer.pades.twostep import PreparedSignature, _verified_signature_value, complete, prepare
from signer.pades.validate import verify_pdf
from signer.policy import load_policies
from signer.settings import load_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "fixtures" / "samples" / "hoc-ba-tieu-hoc-fpdf2.pdf"
PYHANKO = str(Path(sys.executable).parent / "pyhanko")
SCHOOL = "Trường Tiểu học Nguyễn Du"
OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def services(test_state: Path, service_env: dict[str, str]) -> SigningServices:
    return SigningServices(
        tsa_url=service_env["HOCBA_TSA_URL"],
        trust_anchors=[test_state / "pki" / "root.pem"],
        font_path=load_settings(service_env).stamp_font,
    )


@pytest.fixture(scope="module")
def policy() -> Any:
    return load_policies(REPO / "policies")["hoc_ba_tieu_hoc"]


@pytest.fixture
def pki(test_state: Path) -> Path:
    return test_state / "pki"


def job(policy: Any, role: str) -> RoleSigning:
    return RoleSigning(policy, policy.role(role), SCHOOL,
                       certify=role == policy.roles[0].name)


def openssl_sign(key: Path, prepared: PreparedSignature, tmp: Path) -> bytes:
    """The client's step: RSA PKCS#1 v1.5 over the SHA-256 digest, by openssl."""
    assert OPENSSL, "openssl is needed for the client side"
    digest = tmp / "digest.bin"
    digest.write_bytes(prepared.digest)
    res = subprocess.run(
        [OPENSSL, "pkeyutl", "-sign", "-inkey", str(key), "-pkeyopt", "digest:sha256",
         "-in", str(digest)], capture_output=True, timeout=30, check=True)
    return res.stdout


def openssl_dgst_sign(key: Path, prepared: PreparedSignature, tmp: Path) -> bytes:
    assert OPENSSL, "openssl is needed for the client side"
    data = tmp / "data_to_sign.bin"
    data.write_bytes(prepared.data_to_sign)
    res = subprocess.run([OPENSSL, "dgst", "-sha256", "-sign", str(key),
                          str(data)], capture_output=True, timeout=30, check=True)
    return res.stdout


@pytest.fixture
def prepared_teacher(services: SigningServices, policy: Any, pki: Path,
                     live_responder: Any) -> Iterator[tuple[bytes, PreparedSignature]]:
    pdf = SAMPLE.read_bytes()
    cert, *chain = load_chain([pki / "certs" / "client-teacher-1.pem",
                               pki / "certs" / "interm.pem"])
    prepared = asyncio.run(prepare(pdf, cert, chain, job(policy, "teacher"), services))
    yield pdf, prepared


def test_prepare_describes_what_the_client_signs(
        prepared_teacher: tuple[bytes, PreparedSignature], policy: Any) -> None:
    pdf, prepared = prepared_teacher
    assert prepared.digest_algorithm == "sha256"
    assert prepared.signature_mechanism == "sha256_rsa"
    assert prepared.field_name == policy.role("teacher").field.name
    assert prepared.data_to_sign == prepared.signed_attrs
    assert prepared.data_to_sign[:1] == b"\x31"  # DER SET OF: the attributes as signed
    assert prepared.digest == hashlib.sha256(prepared.data_to_sign).digest()
    attrs = {a["type"].native: a["values"][0].native
             for a in cms.CMSAttributes.load(prepared.signed_attrs)}
    assert attrs["message_digest"] == prepared.document_digest
    assert "signing_certificate_v2" in attrs
    assert "signing_time" not in attrs  # PAdES: the time comes from the timestamp
    # an incremental update of the upload, with every role's field (certification)
    assert prepared.prepared_pdf.startswith(pdf)
    assert set(existing_fields(prepared.prepared_pdf)) >= {r.field.name for r in policy.roles}
    start, end = prepared.reserved_region_start, prepared.reserved_region_end
    assert prepared.prepared_pdf[start:end].strip(b"<>0") == b""
    body = hashlib.sha256(prepared.prepared_pdf[:start] + prepared.prepared_pdf[end:])
    assert body.digest() == prepared.document_digest
    assert prepared.validation_paths and prepared.ocsps  # revocation data for the DSS


def test_json_round_trip(prepared_teacher: tuple[bytes, PreparedSignature]) -> None:
    _, prepared = prepared_teacher
    assert PreparedSignature.from_json(prepared.to_json()) == prepared
    without_pdf = prepared.to_json(include_pdf=False)
    assert "prepared_pdf\"" not in without_pdf.replace("prepared_pdf_sha256", "")
    assert PreparedSignature.from_json(without_pdf, prepared.prepared_pdf) == prepared
    with pytest.raises(IntegrityError):
        PreparedSignature.from_json(without_pdf, prepared.prepared_pdf + b"\n")


def test_two_step_teacher_then_principal_is_valid(
        prepared_teacher: tuple[bytes, PreparedSignature], services: SigningServices,
        policy: Any, pki: Path, tmp_path: Path, service_env: dict[str, str]) -> None:
    from pyhanko.sign.general import load_private_key_from_pemder_data
    from pyhanko.sign.signers import SimpleSigner
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    _, prepared = prepared_teacher
    # the server restarts: only the JSON survives
    stored = prepared.to_json()
    restored = PreparedSignature.from_json(stored)
    fresh = SigningServices(tsa_url=service_env["HOCBA_TSA_URL"],
                            trust_anchors=[pki / "root.pem"],
                            font_path=load_settings(service_env).stamp_font)
    value = openssl_sign(pki / "keys" / "client-teacher-1.key.pem", restored, tmp_path)
    # PKCS#1 v1.5 is deterministic: both openssl ways give the same value
    assert value == openssl_dgst_sign(pki / "keys" / "client-teacher-1.key.pem", restored,
                                      tmp_path)
    teacher_pdf = asyncio.run(complete(restored, value, fresh))
    assert teacher_pdf.startswith(restored.prepared_pdf[:restored.reserved_region_start])
    assert existing_fields(teacher_pdf)[prepared.field_name] is True
    assert b"/DSS" in teacher_pdf[len(restored.prepared_pdf):]  # revocation data added

    cert, *chain = load_chain([pki / "certs" / "principal-1.pem", pki / "certs" / "interm.pem"])
    principal = SimpleSigner(
        signing_cert=cert,
        signing_key=load_private_key_from_pemder_data(
            (pki / "keys" / "principal-1.key.pem").read_bytes(), passphrase=None),
        cert_registry=SimpleCertificateStore.from_certs([cert, *chain]))
    both = asyncio.run(sign_role(teacher_pdf, principal, job(policy, "principal"), services))

    roots = load_chain([pki / "root.pem"])
    roles = {r.field.name: r.name for r in policy.roles}
    for pdf in (teacher_pdf, both):
        report = asyncio.run(verify_pdf(pdf, trust_roots=roots, role_by_field=roles))
        teacher = next(s for s in report.signatures if s.field == prepared.field_name)
        assert teacher.intact and teacher.trusted, teacher
        assert teacher.indication == "TOTAL_PASSED", teacher
        assert teacher.revocation_checked
        assert teacher.timestamp_time is not None  # signature timestamp from the TSA
        assert "Đỗ Thị Thu Hằng" in (teacher.signer.subject or "")
    report = asyncio.run(verify_pdf(both, trust_roots=roots, role_by_field=roles))
    assert [s.role for s in report.signatures] == ["teacher", "principal"]
    assert all(s.indication == "TOTAL_PASSED" for s in report.signatures), report

    path = tmp_path / "two-step.pdf"
    path.write_bytes(both)
    res = subprocess.run([PYHANKO, "sign", "adesverify", "--trust", str(pki / "root.pem"),
                          "--trust-replace", str(path)],
                         capture_output=True, text=True, timeout=180,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stdout + res.stderr
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith(prepared.field_name))
    assert ":INTACT:TRUSTED" in line, res.stdout


def test_value_from_another_key_is_refused(
        prepared_teacher: tuple[bytes, PreparedSignature], services: SigningServices,
        pki: Path, tmp_path: Path) -> None:
    _, prepared = prepared_teacher
    value = openssl_sign(pki / "keys" / "principal-1.key.pem", prepared, tmp_path)
    assert len(value) == 256
    with pytest.raises(InvalidInput) as err:
        asyncio.run(complete(prepared, value, services))
    assert err.value.code == "signature_invalid"
    assert err.value.status == 422


@pytest.mark.parametrize("value", [os.urandom(256), b"", b"\x00" * 256, os.urandom(255)],
                         ids=["random", "empty", "zeros", "short"])
def test_garbage_value_is_refused(prepared_teacher: tuple[bytes, PreparedSignature],
                                  services: SigningServices, value: bytes) -> None:
    _, prepared = prepared_teacher
    with pytest.raises(InvalidInput) as err:
        asyncio.run(complete(prepared, value, services))
    assert err.value.code == "signature_invalid"


def test_value_over_the_raw_digest_without_digestinfo_is_refused(
        prepared_teacher: tuple[bytes, PreparedSignature], services: SigningServices,
        pki: Path, tmp_path: Path) -> None:
    """Right key, wrong recipe: the bare 32 bytes padded without DigestInfo (`openssl
    pkeyutl -sign` without `-pkeyopt digest:sha256`), or another hash, are refused."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    from cryptography.hazmat.primitives.hashes import SHA256, SHA384

    _, prepared = prepared_teacher
    key_path = pki / "keys" / "client-teacher-1.key.pem"
    digest = tmp_path / "digest.bin"
    digest.write_bytes(prepared.digest)
    bare = subprocess.run([OPENSSL or "openssl", "pkeyutl", "-sign", "-inkey", str(key_path),
                           "-in", str(digest)], capture_output=True, timeout=30,
                          check=True).stdout
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    for wrong in (bare, key.sign(prepared.data_to_sign, PKCS1v15(), SHA384())):
        with pytest.raises(InvalidInput) as err:
            asyncio.run(complete(prepared, wrong, services))
        assert err.value.code == "signature_invalid"
    # right key, right bytes: accepted (the cryptography way a client could do it)
    right = key.sign(prepared.digest, PKCS1v15(), Prehashed(SHA256()))
    out = asyncio.run(complete(prepared, right, services))
    assert existing_fields(out)[prepared.field_name] is True
    assert len(out) > len(prepared.prepared_pdf)


def test_ecdsa_values_der_and_raw(prepared_teacher: tuple[bytes, PreparedSignature]) -> None:
    """A token's ECDSA key: DER values verify; raw r||s (PKCS#11) is turned into DER."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.x509.oid import NameOID

    _, prepared = prepared_teacher
    key = ec.generate_private_key(ec.SECP256R1())
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "ec test")])
    now = datetime.now(UTC)
    cert = (cx509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    ec_prepared = replace(prepared, certificate=cert.public_bytes(serialization.Encoding.DER),
                          signature_mechanism="sha256_ecdsa")
    der = key.sign(prepared.data_to_sign, ec.ECDSA(hashes.SHA256()))
    assert _verified_signature_value(ec_prepared, der) == der
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert _verified_signature_value(ec_prepared, raw) == der
    other = ec.generate_private_key(ec.SECP256R1()).sign(prepared.data_to_sign,
                                                         ec.ECDSA(hashes.SHA256()))
    for bad in (other, bytes(64), b""):
        with pytest.raises(InvalidInput) as err:
            _verified_signature_value(ec_prepared, bad)
        assert err.value.code == "signature_invalid"
