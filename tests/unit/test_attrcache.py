"""The signing-certificate-v2 attribute from the cache is pyHanko's, byte for byte."""

from __future__ import annotations

import asyncio
import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from asn1crypto import tsp, x509
from pyhanko.sign import attributes
from pyhanko.sign.general import as_signing_certificate_v2

from signer.keys.base import load_chain
from signer.pades import attrcache


def certificates(test_state: Path) -> list[x509.Certificate]:
    pki = test_state / "pki" / "certs"
    return load_chain([pki / "teacher-1.pem", pki / "seal-1.pem", pki / "tsa.pem",
                       pki / "interm.pem"])


def test_same_bytes_as_pyhanko(test_state: Path) -> None:
    for cert in certificates(test_state):
        for algo in ("sha256", "sha512"):
            expected = as_signing_certificate_v2(cert, algo).dump()
            first = attrcache.signing_certificate_v2(cert, algo)
            again = attrcache.signing_certificate_v2(cert, algo)
            assert first.dump() == again.dump() == expected
            assert first is not again  # a fresh object per signature
            assert isinstance(first, tsp.SigningCertificateV2)
            assert first["certs"][0]["cert_hash"].native == hashlib.new(algo, cert.dump()).digest()


def test_installed_into_pyhankos_provider(test_state: Path) -> None:
    import signer.pades  # noqa: F401  installs it

    cert = certificates(test_state)[0]
    attr = asyncio.run(attributes.SigningCertificateV2Provider(cert).get_attribute())
    assert attr is not None
    assert attr["values"][0].dump() == as_signing_certificate_v2(cert).dump()
    assert attributes.SigningCertificateV2Provider.build_attr_value is \
        attrcache._build_attr_value


def test_threads_get_equal_values(test_state: Path) -> None:
    certs = certificates(test_state)
    attrcache._encoded.clear()
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: attrcache.signing_certificate_v2(certs[i % 4]).dump(),
                            range(200)))
    assert got == [as_signing_certificate_v2(certs[i % 4]).dump() for i in range(200)]
