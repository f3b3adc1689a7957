"""The signing-certificate-v2 attribute, encoded once per certificate.

pyHanko rebuilds this signed attribute (ESS certificate id: the certificate's hash and
its issuer's name and serial) for every signature, and asn1crypto re-encodes it each
time the signed attributes and the SignerInfo are serialised: ~25 ms of CPU per
three-signature record, a quarter of hocba's signing CPU (bench/README.md). The value
depends on the certificate only, so it is encoded once and each signature gets a fresh
object loaded from those bytes (lazily parsed: serialising it copies the bytes)."""

from __future__ import annotations

import threading
from typing import Any

from asn1crypto import tsp, x509
from pyhanko.sign import attributes
from pyhanko.sign.general import as_signing_certificate_v2

_lock = threading.Lock()
_encoded: dict[tuple[bytes, str], bytes] = {}
MAX_CERTIFICATES = 10_000


def signing_certificate_v2(cert: x509.Certificate, hash_algo: str = "sha256"
                           ) -> tsp.SigningCertificateV2:
    key = (cert.sha256, hash_algo)
    with _lock:
        der = _encoded.get(key)
    if der is None:
        der = as_signing_certificate_v2(cert, hash_algo).dump()
        with _lock:
            if len(_encoded) >= MAX_CERTIFICATES:
                _encoded.clear()
            _encoded[key] = der
    return tsp.SigningCertificateV2.load(der)


async def _build_attr_value(self: Any, dry_run: bool = False) -> tsp.SigningCertificateV2:
    return signing_certificate_v2(self.signing_cert)


def install() -> None:
    """Make pyHanko's signing-certificate-v2 provider use the cache (idempotent)."""
    attributes.SigningCertificateV2Provider.build_attr_value = _build_attr_value  # type: ignore[method-assign]
