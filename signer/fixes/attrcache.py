"""The signing-certificate-v2 attribute, encoded once per certificate.

pyHanko rebuilds this signed attribute (ESS certificate id: the certificate's hash and
its issuer's name and serial) for every signature, and asn1crypto re-encodes it each
time the signed attributes and the SignerInfo are serialised: ~25 ms of CPU per
three-signature record, a quarter of hocba's signing CPU (bench/README.md). The value
depends on the certificate only, so it is encoded once and each signature gets a fresh
object loaded from those bytes (lazily parsed: serialising it copies the bytes).

Used through hocba's signers, no global change: `CachedSigningCertificateSigner` is a
pyHanko `Signer` whose signed attribute providers give this attribute from the cache
(hocba's local, PKCS#11, CSC and two-step signers derive from it). It overrides
`Signer._signed_attr_provider_spec`, which pyHanko marks internal (the public
`signed_attr_prov_spec` is one fixed spec per signer, built without each signature's
attribute settings, so a shared signer cannot use it): hence the version check, and
the cache is used only once `signer.fixes.apply()` accepted it. Upstream proposal:
docs/upstream/attrcache.md."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from asn1crypto import tsp, x509
from pyhanko.sign import attributes
from pyhanko.sign.general import as_signing_certificate_v2
from pyhanko.sign.signers import Signer

from signer.fixes import Fix, is_applied

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


class CachedSigningCertificateV2Provider(attributes.SigningCertificateV2Provider):
    async def build_attr_value(self, dry_run: bool = False) -> tsp.SigningCertificateV2:
        return signing_certificate_v2(self.signing_cert)


class _WithCachedSigningCertificate(attributes.SignedAttributeProviderSpec):
    """pyHanko's providers for a signature, the signing-certificate-v2 one cached."""

    def __init__(self, inner: attributes.SignedAttributeProviderSpec) -> None:
        self.inner = inner

    def signed_attr_providers(self, data_digest: bytes, digest_algorithm: str
                              ) -> Iterator[attributes.CMSAttributeProvider]:
        for provider in self.inner.signed_attr_providers(data_digest, digest_algorithm):
            if type(provider) is attributes.SigningCertificateV2Provider:
                yield CachedSigningCertificateV2Provider(provider.signing_cert)
            else:
                yield provider


class CachedSigningCertificateSigner(Signer):
    """A pyHanko Signer with the signing-certificate-v2 attribute encoded once per
    certificate (once the attrcache fix is applied)."""

    def _signed_attr_provider_spec(self, *args: Any, **kwargs: Any) -> Any:
        spec = super()._signed_attr_provider_spec(*args, **kwargs)
        if not is_applied("attrcache"):
            return spec
        return _WithCachedSigningCertificate(spec)


FIX = Fix(name="attrcache", library="pyHanko", versions=("0.38.0",))
