"""Digests, DigestInfo and certificate helpers for the agent (no token, no HTTP)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from signer.agent.errors import AgentError, TokenError

# RFC 8017, 9.2 note 1: the DER prefix of DigestInfo for each hash.
_DIGEST_INFO_PREFIX = {
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "sha224": bytes.fromhex("302d300d06096086480165030402040500041c"),
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
DIGEST_SIZE = {"sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}
_CRYPTO_HASH: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def normalize_algorithm(algorithm: str) -> str:
    """"SHA-256" -> "sha256"."""
    return algorithm.lower().replace("-", "")


def digest_info(digest: bytes, algorithm: str = "sha256") -> bytes:
    """DER DigestInfo (RFC 8017) for a digest: what CKM_RSA_PKCS signs."""
    algorithm = normalize_algorithm(algorithm)
    if algorithm not in _DIGEST_INFO_PREFIX:
        raise AgentError(f"unsupported digest algorithm {algorithm!r}")
    if len(digest) != DIGEST_SIZE[algorithm]:
        raise AgentError(f"a {algorithm} digest has {DIGEST_SIZE[algorithm]} bytes, "
                         f"not {len(digest)}")
    return _DIGEST_INFO_PREFIX[algorithm] + digest


def verify_digest(cert: x509.Certificate, signature: bytes, digest: bytes,
                  algorithm: str = "sha256") -> bool:
    """Whether a signature over a digest verifies with the certificate's public key."""
    prehashed = utils.Prehashed(_CRYPTO_HASH[normalize_algorithm(algorithm)]())
    pk = cert.public_key()
    try:
        if isinstance(pk, rsa.RSAPublicKey):
            pk.verify(signature, digest, padding.PKCS1v15(), prehashed)
        elif isinstance(pk, ec.EllipticCurvePublicKey):
            pk.verify(signature, digest, ec.ECDSA(prehashed))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def public_key_id(cert: x509.Certificate) -> tuple[str, Any]:
    """What identifies the certificate's public key: ("rsa", (n, e)) or ("ec", point)."""
    pk = cert.public_key()
    if isinstance(pk, rsa.RSAPublicKey):
        numbers = pk.public_numbers()
        return "rsa", (numbers.n, numbers.e)
    if isinstance(pk, ec.EllipticCurvePublicKey):
        return "ec", pk.public_bytes(serialization.Encoding.X962,
                                     serialization.PublicFormat.UncompressedPoint)
    raise TokenError(f"unsupported certificate key type {type(pk).__name__} (RSA or EC only)")


def subject(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return repr(cert.subject)


def describe(cert: x509.Certificate) -> str:
    return f"{subject(cert)} (serial {cert.serial_number:x})"


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_pem_certificates(path: str | Path) -> list[x509.Certificate]:
    data = Path(path).read_bytes()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError as e:
            raise AgentError(f"{path}: not a PEM or DER certificate") from e
    if not certs:
        raise AgentError(f"{path}: no certificate in it")
    return certs
