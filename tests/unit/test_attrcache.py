"""The signing-certificate-v2 attribute from the cache is pyHanko's, byte for byte: the
same as plain pyHanko's in another process (tests/unpatched.py)."""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from asn1crypto import tsp, x509
from pyhanko.sign import attributes
from pyhanko.sign.general import as_signing_certificate_v2
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes

from signer.fixes import attrcache
from signer.keys.base import load_chain
from tests import unpatched

ALGORITHMS = ("sha256", "sha512")


def certificate_paths(test_state: Path) -> list[Path]:
    pki = test_state / "pki" / "certs"
    return [pki / "teacher-1.pem", pki / "seal-1.pem", pki / "tsa.pem", pki / "interm.pem"]


def certificates(test_state: Path) -> list[x509.Certificate]:
    return load_chain(certificate_paths(test_state))


def plain_pyhanko(test_state: Path) -> dict[str, list[str]]:
    """Per certificate: pyHanko's attribute for each algorithm, then what its provider
    builds, computed by unpatched pyHanko in another process (hex DER)."""
    return unpatched.run(f"""
        import asyncio, json
        from pathlib import Path
        from pyhanko.sign import attributes
        from pyhanko.sign.general import as_signing_certificate_v2
        from signer.keys.base import load_chain
        out = {{}}
        for path in {[str(p) for p in certificate_paths(test_state)]!r}:
            cert = load_chain([Path(path)])[0]
            attr = asyncio.run(attributes.SigningCertificateV2Provider(cert).get_attribute())
            out[path] = [as_signing_certificate_v2(cert, a).dump().hex()
                         for a in {ALGORITHMS!r}] + [attr["values"][0].dump().hex()]
        print(json.dumps(out))
    """)


def test_same_bytes_as_pyhanko(test_state: Path) -> None:
    reference = plain_pyhanko(test_state)
    for path, cert in zip(certificate_paths(test_state), certificates(test_state),
                          strict=True):
        for k, algo in enumerate(ALGORITHMS):
            expected = bytes.fromhex(reference[str(path)][k])
            assert as_signing_certificate_v2(cert, algo).dump() == expected
            first = attrcache.signing_certificate_v2(cert, algo)
            again = attrcache.signing_certificate_v2(cert, algo)
            assert first.dump() == again.dump() == expected
            assert first is not again  # a fresh object per signature
            assert isinstance(first, tsp.SigningCertificateV2)
            assert first["certs"][0]["cert_hash"].native == hashlib.new(algo, cert.dump()).digest()


def _providers(signer: Any, cert: x509.Certificate) -> list[Any]:
    return list(signer._signed_attr_providers(b"\0" * 32, "sha256", PdfCMSSignedAttributes(),
                                              use_cades=True))


def test_hocbas_signers_use_it_and_pyhanko_is_left_alone(test_state: Path) -> None:
    # the fix is applied by signer.fixes.apply() in tests/conftest.py
    from pyhanko.sign.signers import ExternalSigner

    from signer.keys.csc import CscBatchSigner
    from signer.keys.local import _CachedKeySigner
    from signer.keys.pkcs11 import _LockedPkcs11Signer
    from signer.pades.twostep import _ExternalSigner

    for cls in (_CachedKeySigner, _LockedPkcs11Signer, CscBatchSigner, _ExternalSigner):
        assert issubclass(cls, attrcache.CachedSigningCertificateSigner), cls
    assert attributes.SigningCertificateV2Provider.build_attr_value.__module__ == \
        "pyhanko.sign.attributes"
    reference = plain_pyhanko(test_state)
    for path, cert in zip(certificate_paths(test_state), certificates(test_state),
                          strict=True):
        ours = _ExternalSigner(signing_cert=cert, cert_registry=[cert], signature_value=256)
        plain = ExternalSigner(signing_cert=cert, cert_registry=[cert], signature_value=256)
        cached = [p for p in _providers(ours, cert)
                  if isinstance(p, attributes.SigningCertificateV2Provider)]
        assert [type(p) for p in cached] == [attrcache.CachedSigningCertificateV2Provider]
        assert [type(p) for p in _providers(plain, cert)
                if isinstance(p, attributes.SigningCertificateV2Provider)] == \
            [attributes.SigningCertificateV2Provider]
        attr = asyncio.run(cached[0].get_attribute())
        assert attr is not None
        assert attr["values"][0].dump() == bytes.fromhex(reference[str(path)][-1])
        assert [type(p) for p in _providers(ours, cert)][1:] == \
            [type(p) for p in _providers(plain, cert)][1:]  # the others are pyHanko's


def test_threads_get_equal_values(test_state: Path) -> None:
    certs = certificates(test_state)
    attrcache._encoded.clear()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: attrcache.signing_certificate_v2(certs[i % 4]).dump(),
                            range(200)))
    assert got == [as_signing_certificate_v2(certs[i % 4]).dump() for i in range(200)]
