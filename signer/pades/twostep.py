"""Two-step signing for keys the server never holds (a USB token at the school).

pyHanko's interrupted signing (``PdfSigner`` with an ``ExternalSigner``):

``prepare``
    builds exactly the signature ``sign_role`` builds (same field, stamp, DocMDP,
    PAdES sub-filter, metadata, pre-sign certificate and revocation checks), writes
    the PDF with an empty ``/Contents`` placeholder, computes the ``/ByteRange``
    digest and the CMS signed attributes. The client signs ``data_to_sign`` (the DER
    of the signed attributes) with its key: RSA PKCS#1 v1.5 (or ECDSA) over its
    ``digest_algorithm`` hash, e.g.
    ``openssl pkeyutl -sign -inkey KEY -pkeyopt digest:sha256 -in digest.bin``
    with ``digest.bin`` = ``digest`` (the 32 raw bytes), or
    ``openssl dgst -sha256 -sign KEY data_to_sign.bin``.

``complete``
    checks the signature value against the certificate first, then lets pyHanko
    build the CMS with those signed attributes, add the signature timestamp
    (unsigned attribute), fill the placeholder and add the revocation data (DSS)
    collected while preparing, as ``sign_role`` does.

Everything needed in between is a :class:`PreparedSignature` made of bytes, strings
and integers (``to_json``/``from_json``), so ``complete`` may run in another process
after a restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, fields
from io import BytesIO
from typing import Any, BinaryIO

from asn1crypto import algos, cms, crl, ocsp, x509
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pyhanko.sign.general import find_unique_cms_attribute
from pyhanko.sign.signers import ExternalSigner
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import (
    DSSContentSettings,
    PdfTBSDocument,
    PostSignInstructions,
    PreSignValidationStatus,
    SigDSSPlacementPreference,
)
from pyhanko_certvalidator.authority import CertTrustAnchor
from pyhanko_certvalidator.path import ValidationPath

from signer.errors import HocbaError, IntegrityError, InvalidInput
from signer.fixes.attrcache import CachedSigningCertificateSigner
from signer.keys.base import cms_certificates
from signer.pades.context import SigningServices
from signer.pades.sign import RoleSigning, appearance_params, build_pdf_signer, cache_key

__all__ = ["FORMAT", "PreparedSignature", "complete", "prepare"]

FORMAT = "hocba-twostep/1"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class PreparedSignature:
    """A signature waiting for the client's signature value. Plain data only."""

    field_name: str
    prepared_pdf: bytes
    """The PDF with the signature dictionary and an empty /Contents placeholder."""
    document_digest: bytes
    """Digest of the /ByteRange (the messageDigest signed attribute)."""
    reserved_region_start: int
    reserved_region_end: int
    signed_attrs: bytes
    """DER (SET OF, tag 0x31) of the CMS signed attributes: what the client signs."""
    digest_algorithm: str
    signature_mechanism: str
    """asn1crypto SignedDigestAlgorithm name, e.g. ``sha256_rsa``, ``sha256_ecdsa``."""
    certificate: bytes
    chain: tuple[bytes, ...]
    # -- post-signing instructions (DSS), as pyHanko collected them before signing
    validation_paths: tuple[tuple[bytes, ...], ...]
    """Each path's certificates, trust root first (the first path is the signer's)."""
    ocsps: tuple[bytes, ...]
    crls: tuple[bytes, ...]
    dss_placement: str
    dss_include_vri: bool
    dss_skip_if_unneeded: bool
    embed_roots: bool
    strict: bool

    @property
    def data_to_sign(self) -> bytes:
        """What the client signs (its hash is `digest`): the DER signed attributes."""
        return self.signed_attrs

    @property
    def digest(self) -> bytes:
        return hashlib.new(self.digest_algorithm, self.signed_attrs).digest()

    @property
    def prepared_pdf_sha256(self) -> str:
        return hashlib.sha256(self.prepared_pdf).hexdigest()

    def to_json(self, *, include_pdf: bool = True) -> str:
        """JSON (bytes as base64). With ``include_pdf=False`` the PDF is left out (keep
        it as a blob elsewhere and hand it to ``from_json``); its SHA-256 stays in."""
        doc: dict[str, Any] = {"format": FORMAT, "prepared_pdf_sha256": self.prepared_pdf_sha256}
        for f in fields(self):
            if f.name == "prepared_pdf" and not include_pdf:
                continue
            doc[f.name] = _encode(getattr(self, f.name))
        doc["digest"] = _b64(self.digest)
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes, prepared_pdf: bytes | None = None) -> PreparedSignature:
        """The inverse of ``to_json``; ``prepared_pdf`` when the JSON has none.
        Raises IntegrityError when the stored session is damaged or inconsistent."""
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} document")
            pdf = prepared_pdf if prepared_pdf is not None else _unb64(doc["prepared_pdf"])
            values: dict[str, Any] = {"prepared_pdf": pdf}
            for f in fields(cls):
                if f.name != "prepared_pdf":
                    values[f.name] = _decode(f.name, doc[f.name])
            prepared = cls(**values)
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise IntegrityError(f"signing session data unreadable: {e}",
                                 code="session_corrupt") from e
        if prepared.prepared_pdf_sha256 != doc.get("prepared_pdf_sha256"):
            raise IntegrityError("signing session: prepared PDF does not match its SHA-256",
                                 code="session_corrupt")
        if "digest" in doc and _unb64(doc["digest"]) != prepared.digest:
            raise IntegrityError("signing session: digest does not match the signed "
                                 "attributes", code="session_corrupt")
        return prepared


_BYTES_FIELDS = {"prepared_pdf", "document_digest", "signed_attrs", "certificate"}
_BYTES_LIST_FIELDS = {"chain", "ocsps", "crls"}
_INT_FIELDS = {"reserved_region_start", "reserved_region_end"}
_BOOL_FIELDS = {"dss_include_vri", "dss_skip_if_unneeded", "embed_roots", "strict"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("expected a base64 string")
    return base64.b64decode(text, validate=True)


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return _b64(value)
    if isinstance(value, tuple):
        return [_encode(v) for v in value]
    return value


def _decode(name: str, value: Any) -> Any:
    if name in _BYTES_FIELDS:
        return _unb64(value)
    if name in _BYTES_LIST_FIELDS:
        return tuple(_unb64(v) for v in value)
    if name == "validation_paths":
        return tuple(tuple(_unb64(c) for c in path) for path in value)
    if name in _INT_FIELDS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name}: expected an integer")
        return value
    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise TypeError(f"{name}: expected a boolean")
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string")
    return value


def _placeholder_size(cert: x509.Certificate) -> int:
    """Bytes the signature value may take, for pyHanko's size estimate."""
    key = cert.public_key
    bits = int(key.bit_size)
    if key.algorithm == "ec":
        return 2 * ((bits + 7) // 8) + 9  # DER SEQUENCE of two INTEGERs, worst case
    return (bits + 7) // 8


def _path_certs(path: ValidationPath) -> tuple[bytes, ...]:
    if not isinstance(path.trust_anchor, CertTrustAnchor):
        raise HocbaError("a trust anchor without a certificate cannot be persisted")
    return tuple(c.dump() for c in path)


def _path(certs: tuple[bytes, ...]) -> ValidationPath:
    loaded = [x509.Certificate.load(c) for c in certs]
    root, rest = loaded[0], loaded[1:]
    return ValidationPath(CertTrustAnchor(root), rest[:-1], rest[-1] if rest else None)


class _ExternalSigner(CachedSigningCertificateSigner, ExternalSigner):
    pass


async def prepare(pdf: bytes | BinaryIO, certificate: x509.Certificate,
                  chain: list[x509.Certificate], job: RoleSigning, services: SigningServices
                  ) -> PreparedSignature:
    """Everything of `sign_role` up to the signature value; see the module docstring."""
    ext = _ExternalSigner(
        signing_cert=certificate,
        cert_registry=cms_certificates(certificate, chain),
        signature_value=_placeholder_size(certificate),
    )
    writer, pdf_signer = build_pdf_signer(pdf, ext, job, services)
    meta = pdf_signer.signature_meta
    # The steps of PdfSigner.async_sign_pdf, stopped before the signature.
    session = pdf_signer.init_signing_session(writer)
    validation_info = await session.perform_presign_validation(writer)
    bytes_reserved = await session.estimate_signature_container_size(
        validation_info, tight=meta.tight_size_estimates)
    tbs = session.prepare_tbs_document(
        validation_info=validation_info, bytes_reserved=bytes_reserved,
        appearance_text_params=appearance_params(job))
    prepared_digest, output = tbs.digest_tbs_document()
    signed_attrs = await ext.signed_attrs(
        prepared_digest.document_digest, tbs.md_algorithm,
        attr_settings=PdfCMSSignedAttributes(
            signing_time=session.system_time,
            adobe_revinfo_attr=(None if validation_info is None
                                else validation_info.adobe_revinfo_attr),
            cades_signed_attrs=meta.cades_signed_attr_spec,
        ),
        use_pades=session.use_pades, timestamper=session.timestamper,
    )
    instr = tbs.post_sign_instructions
    if validation_info is None or instr is None:
        raise HocbaError("pyHanko collected no validation info (embed_validation_info off?)")
    if instr.timestamper is not None or instr.file_credential is not None:
        raise HocbaError("PAdES-LTA per signature and encrypted PDFs are not supported")
    mechanism = ext.get_signature_mechanism_for_digest(tbs.md_algorithm)
    output.seek(0)
    return PreparedSignature(
        field_name=job.role.field.name,
        prepared_pdf=output.read(),
        document_digest=prepared_digest.document_digest,
        reserved_region_start=prepared_digest.reserved_region_start,
        reserved_region_end=prepared_digest.reserved_region_end,
        signed_attrs=signed_attrs.dump(),
        digest_algorithm=tbs.md_algorithm,
        signature_mechanism=mechanism["algorithm"].native,
        certificate=certificate.dump(),
        chain=tuple(c.dump() for c in chain),
        validation_paths=tuple(_path_certs(p) for p in validation_info.validation_paths),
        ocsps=tuple(o.dump() for o in validation_info.ocsps_to_embed),
        crls=tuple(c.dump() for c in validation_info.crls_to_embed),
        dss_placement=instr.dss_settings.placement.name,
        dss_include_vri=instr.dss_settings.include_vri,
        dss_skip_if_unneeded=instr.dss_settings.skip_if_unneeded,
        embed_roots=instr.embed_roots,
        strict=instr.strict,
    )


def _verified_signature_value(prepared: PreparedSignature, value: bytes) -> bytes:
    """The signature value (ECDSA as DER) if it verifies against the certificate over
    data_to_sign; InvalidInput(code=signature_invalid) otherwise."""
    if not value:
        raise InvalidInput("signature_value is empty", code="signature_invalid")
    hash_cls = _HASHES.get(prepared.digest_algorithm)
    if hash_cls is None:
        raise IntegrityError(f"digest algorithm {prepared.digest_algorithm} not supported")
    key = cx509.load_der_x509_certificate(prepared.certificate).public_key()
    data = prepared.data_to_sign
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if not prepared.signature_mechanism.endswith("_rsa"):
                raise IntegrityError(f"mechanism {prepared.signature_mechanism} for an RSA key")
            key.verify(value, data, padding.PKCS1v15(), hash_cls())
            return value
        if isinstance(key, ec.EllipticCurvePublicKey):
            return _verified_ecdsa(key, value, data, hash_cls())
    except InvalidSignature:
        raise InvalidInput("signature_value does not verify against the certificate "
                           "(wrong key, or not over data_to_sign)",
                           code="signature_invalid") from None
    raise InvalidInput(f"{type(key).__name__} keys are not supported",
                       code="signature_invalid")


def _verified_ecdsa(key: ec.EllipticCurvePublicKey, value: bytes, data: bytes,
                    hash_alg: hashes.HashAlgorithm) -> bytes:
    """ECDSA as DER; a raw r||s value (as PKCS#11 tokens return) is converted."""
    try:
        key.verify(value, data, ec.ECDSA(hash_alg))
        return value
    except InvalidSignature:
        size = (key.curve.key_size + 7) // 8
        if len(value) != 2 * size:
            raise
    der = encode_dss_signature(int.from_bytes(value[:size], "big"),
                               int.from_bytes(value[size:], "big"))
    key.verify(der, data, ec.ECDSA(hash_alg))
    return der


def _check_consistent(prepared: PreparedSignature) -> None:
    """The stored session still describes the stored PDF."""
    pdf, start, end = prepared.prepared_pdf, prepared.reserved_region_start, \
        prepared.reserved_region_end
    if not 0 < start < end <= len(pdf) or pdf[start:start + 1] != b"<" \
            or pdf[end - 1:end] != b">":
        raise IntegrityError("signing session: reserved region is not a /Contents placeholder",
                             code="session_corrupt")
    h = hashlib.new(prepared.digest_algorithm)
    h.update(pdf[:start])
    h.update(pdf[end:])
    if h.digest() != prepared.document_digest:
        raise IntegrityError("signing session: the PDF does not match its digest",
                             code="session_corrupt")
    attrs = cms.CMSAttributes.load(prepared.signed_attrs)
    if find_unique_cms_attribute(attrs, "message_digest").native != prepared.document_digest:
        raise IntegrityError("signing session: signed attributes are for another document",
                             code="session_corrupt")


def _post_sign_instructions(prepared: PreparedSignature) -> PostSignInstructions:
    paths = [_path(p) for p in prepared.validation_paths]
    if not paths:
        raise IntegrityError("signing session: no validation path", code="session_corrupt")
    status = PreSignValidationStatus(
        signer_path=paths[0],
        validation_paths=paths,
        ts_validation_paths=paths[1:],
        adobe_revinfo_attr=None,
        ocsps_to_embed=[ocsp.OCSPResponse.load(o) for o in prepared.ocsps],
        crls_to_embed=[crl.CertificateList.load(c) for c in prepared.crls],
        ac_validation_paths=[],
    )
    return PostSignInstructions(
        validation_info=status,
        timestamp_md_algorithm=prepared.digest_algorithm,
        dss_settings=DSSContentSettings(
            placement=SigDSSPlacementPreference[prepared.dss_placement],
            include_vri=prepared.dss_include_vri,
            skip_if_unneeded=prepared.dss_skip_if_unneeded,
        ),
        embed_roots=prepared.embed_roots,
        strict=prepared.strict,
    )


async def complete(prepared: PreparedSignature, signature_value: bytes,
                   services: SigningServices) -> bytes:
    """The signed PDF (signature timestamp and DSS included), or InvalidInput
    code=signature_invalid when `signature_value` does not verify (nothing is made)."""
    value = _verified_signature_value(prepared, signature_value)
    _check_consistent(prepared)
    cert = x509.Certificate.load(prepared.certificate)
    chain = [x509.Certificate.load(c) for c in prepared.chain]
    ext = ExternalSigner(
        signing_cert=cert,
        cert_registry=cms_certificates(cert, chain),
        signature_value=value,
        signature_mechanism=algos.SignedDigestAlgorithm(
            {"algorithm": prepared.signature_mechanism}),
    )
    signature_cms = await ext.async_sign_prescribed_attributes(
        prepared.digest_algorithm, cms.CMSAttributes.load(prepared.signed_attrs),
        timestamper=services.timestamper,
    )
    output = BytesIO(prepared.prepared_pdf)
    await PdfTBSDocument.async_finish_signing(
        output,
        PreparedByteRangeDigest(
            document_digest=prepared.document_digest,
            reserved_region_start=prepared.reserved_region_start,
            reserved_region_end=prepared.reserved_region_end,
        ),
        signature_cms,
        post_sign_instr=_post_sign_instructions(prepared),
        validation_context=services.validation_context(
            cache_key(x509.Certificate.load(prepared.certificate))),
    )
    return output.getvalue()
