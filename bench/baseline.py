"""The baseline: the straightforward pyHanko pipeline a competent user would write.

Per record: three signatures (teacher certifies and creates the three fields, then
principal, then the seal in the SoftHSM2 token), each PAdES B-LT (signature timestamp +
revocation data embedded), each with a fresh ValidationContext and its key loaded from
its file (PEM) or a new PKCS#11 session (login) per signature; then a document
timestamp. Validation is what `pyhanko sign adesverify` does: `ades_lta_validation`
for every signature with a fresh policy. Nothing is cached across records. The same
visible stamp (same font) as hocba, so both produce the same kind of document.
"""

from __future__ import annotations

import asyncio
import json
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import pem, x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.sign import fields, signers
from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.sign.validation.ades import ades_lta_validation
from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    SignatureValidationSpec,
)
from pyhanko.stamp import TextStampStyle
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import (
    REQUIRE_REVINFO,
    CertRevTrustPolicy,
    FreshnessReqType,
)
from pyhanko_certvalidator.registry import SimpleTrustManager

from bench.common import STATE

FONT = "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf"
FIELDS = {  # as policies/hoc_ba_*.toml
    "teacher": ("Sig_GVCN", (40, 40, 205, 130), "Giáo viên chủ nhiệm"),
    "principal": ("Sig_HieuTruong", (215, 40, 380, 130), "Hiệu trưởng"),
    "seal": ("Sig_ConDau", (390, 40, 555, 130), "Con dấu"),
}
ROLES = ("teacher", "principal", "seal")


def _cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)


def _root() -> x509.Certificate:
    return _cert(STATE / "pki" / "root.pem")


def _fresh_vc() -> ValidationContext:
    return ValidationContext(trust_roots=[_root()], allow_fetching=True)


class CachedKeySigner(signers.SimpleSigner):
    """What a user adds after profiling the tuned pipeline: pyHanko's SimpleSigner parses
    its private key again for every signature (cryptography's RSA key checks, ~40 ms);
    this parses it once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from cryptography.hazmat.primitives import serialization

        self._key = serialization.load_der_private_key(self.signing_key.dump(), password=None)

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        from pyhanko.sign.general import get_pyca_cryptography_hash

        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm)
        if (mechanism["algorithm"].native != f"{digest_algorithm}_rsa"
                or not isinstance(self._key, rsa.RSAPrivateKey)):
            return super().sign_raw(data, digest_algorithm)
        return self._key.sign(data, padding.PKCS1v15(),
                              get_pyca_cryptography_hash(digest_algorithm))

    @classmethod
    def load_cached(cls, key_file: str, cert_file: str,
                    chain: tuple[str, ...]) -> CachedKeySigner:
        loaded = signers.SimpleSigner.load(key_file, cert_file, ca_chain_files=chain)
        assert loaded is not None
        return cls(signing_cert=loaded.signing_cert, signing_key=loaded.signing_key,
                   cert_registry=loaded.cert_registry)


def _style(text: str, font: str = FONT) -> TextStampStyle:
    from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory

    return TextStampStyle(stamp_text=text + "\n%(signer)s\nKý lúc: %(ts)s",
                          text_box_style=TextBoxStyle(
                              font=GlyphAccumulatorFactory(font, font_size=8), font_size=8),
                          timestamp_format="%d/%m/%Y %H:%M:%S %Z", border_width=1)


def _sign_with(pdf: bytes, role: str, signer: signers.Signer, tsa_url: str) -> bytes:
    name, box, title = FIELDS[role]
    w = IncrementalPdfFileWriter(BytesIO(pdf))
    certify = role == "teacher"
    if certify:
        for other, (fname, fbox, _t) in FIELDS.items():
            if other != role:
                fields.append_signature_field(w, fields.SigFieldSpec(fname, on_page=-1,
                                                                     box=fbox))
    meta = signers.PdfSignatureMetadata(
        field_name=name, md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES,
        certify=certify, docmdp_permissions=fields.MDPPerm.FILL_FORMS,
        embed_validation_info=True, validation_context=_fresh_vc(),
        reason=title, location="Trường Tiểu học Nguyễn Du")
    pdf_signer = signers.PdfSigner(
        meta, signer=signer, timestamper=HTTPTimeStamper(tsa_url),
        stamp_style=_style(title),
        new_field_spec=fields.SigFieldSpec(name, on_page=-1, box=box))
    out = pdf_signer.sign_pdf(w)
    assert isinstance(out, BytesIO)
    return out.getvalue()


def _clients() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((STATE / "clients.json").read_text(encoding="utf-8"))
    return doc


def sign_role(pdf: bytes, role: str, tsa_url: str) -> bytes:
    """One signature, its key loaded for it (PEM file, or a PKCS#11 session + login)."""
    pki = STATE / "pki"
    if role != "seal":
        label = f"{role}-1"
        signer = signers.SimpleSigner.load(
            str(pki / "keys" / f"{label}.key.pem"), str(pki / "certs" / f"{label}.pem"),
            ca_chain_files=(str(pki / "certs" / "interm.pem"),))
        assert signer is not None
        return _sign_with(pdf, role, signer, tsa_url)
    from pyhanko.config.pkcs11 import PKCS11SignatureConfig, TokenCriteria
    from pyhanko.sign.pkcs11 import PKCS11SigningContext

    p11 = _clients()["pkcs11"]
    config = PKCS11SignatureConfig(
        module_path=p11["module"], token_criteria=TokenCriteria(label=p11["token_label"]),
        user_pin=(STATE / "hsm-pin").read_text().strip(), cert_label="seal-1",
        key_label="seal-1", other_certs=[_cert(pki / "certs" / "interm.pem")])
    with PKCS11SigningContext(config) as p11_signer:
        return _sign_with(pdf, role, p11_signer, tsa_url)


def document_timestamp(pdf: bytes, tsa_url: str) -> bytes:
    w = IncrementalPdfFileWriter(BytesIO(pdf))
    out = BytesIO()
    signers.PdfTimeStamper(HTTPTimeStamper(tsa_url)).timestamp_pdf(
        w, "sha256", validation_context=_fresh_vc(), output=out)
    return out.getvalue()


def renew(pdf: bytes, timestamper: HTTPTimeStamper, vc: ValidationContext) -> bytes:
    """LTA augmentation as pyHanko documents it: revocation data for the last timestamp
    and a new one (`update_archival_timestamp_chain`), the TSA client and the validation
    context shared across records, as a service would."""
    out = BytesIO()
    signers.PdfTimeStamper(timestamper).update_archival_timestamp_chain(
        PdfFileReader(BytesIO(pdf)), vc, in_place=False, output=out)
    return out.getvalue()


def pipeline(pdf: bytes, tsa_url: str, out_path: Path | None = None) -> bytes:
    """Three signatures + a document timestamp; the file written (the naive 'archive')."""
    for role in ROLES:
        pdf = sign_role(pdf, role, tsa_url)
    pdf = document_timestamp(pdf, tsa_url)
    if out_path is not None:
        with out_path.open("wb") as f:
            f.write(pdf)
            f.flush()
            import os

            os.fsync(f.fileno())
    return pdf


def validate(pdf: bytes) -> bool:
    """As `pyhanko sign adesverify --trust root.pem --trust-replace`: every signature
    through ades_lta_validation, fresh policy objects, revocation fetching allowed."""
    cert_policy = CertValidationPolicySpec(
        trust_manager=SimpleTrustManager.build(trust_roots=[_root()]),
        revinfo_policy=CertRevTrustPolicy(
            REQUIRE_REVINFO, freshness=None,
            freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION))
    spec = PdfSignatureValidationSpec(
        signature_validation_spec=SignatureValidationSpec(cert_validation_policy=cert_policy),
        diff_policy=DEFAULT_DIFF_POLICY)
    reader = PdfFileReader(BytesIO(pdf))
    ok = True
    for sig in reader.embedded_regular_signatures:
        result = asyncio.run(ades_lta_validation(sig, spec,
                                                 timing_info=ValidationTimingInfo.now()))
        ok &= result.ades_subindic.status.name == "PASSED"
    return ok and len(reader.embedded_regular_signatures) == 3
