"""Dev software keys: PEM files under var/. Refused in production."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pyhanko.sign.general import get_pyca_cryptography_hash, load_private_key_from_pemder_data
from pyhanko.sign.signers import SimpleSigner

from signer.clients import KeyEntry
from signer.errors import ConfigError
from signer.fixes.attrcache import CachedSigningCertificateSigner
from signer.keys.base import KeyBackend, cms_certificates


class _CachedKeySigner(CachedSigningCertificateSigner, SimpleSigner):
    """pyHanko's SimpleSigner re-parses its private key for every signature (~40 ms of
    RSA key checks); this one parses it once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._key = serialization.load_der_private_key(self.signing_key.dump(), password=None)

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm)
        if (mechanism["algorithm"].native == f"{digest_algorithm}_rsa"
                and isinstance(self._key, rsa.RSAPrivateKey)):
            return self._key.sign(data, padding.PKCS1v15(),
                                  get_pyca_cryptography_hash(digest_algorithm))
        return super().sign_raw(data, digest_algorithm)


class LocalKey(KeyBackend):
    def __init__(self, entry: KeyEntry) -> None:
        super().__init__(entry)
        if entry.private_key_pem is None:
            raise ConfigError(f"signer {entry.key}: local backend needs private_key_pem")
        try:
            data = entry.private_key_pem.read_bytes()
        except OSError as e:
            raise ConfigError(f"signer {entry.key}: {e}") from e
        self._signer = _CachedKeySigner(
            signing_cert=self.certificate,
            signing_key=load_private_key_from_pemder_data(data, passphrase=None),
            cert_registry=cms_certificates(self.certificate, self.chain),
        )

    def signer(self) -> SimpleSigner:
        return self._signer
