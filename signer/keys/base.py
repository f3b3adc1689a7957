"""One interface for every place a private key can live."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from pathlib import Path

from asn1crypto import pem, x509
from pyhanko.sign.signers import Signer
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signer.clients import KeyEntry
from signer.errors import ConfigError


def parse_fully(cert: x509.Certificate) -> None:
    """Parse now what asn1crypto would parse lazily on first use. Its lazy caches are filled
    in place (an empty dict or list first, then the items), so threads that first touch a
    shared certificate together can see half of it (a subject without its user_id). Keys'
    certificates and trust anchors are shared by every thread of a process: parse them
    before they are shared."""
    with contextlib.suppress(ValueError):  # what cannot be parsed fails where it is used
        _ = cert.native, cert.critical_extensions, cert.sha256, cert.sha1, cert.issuer_serial
        _ = cert.subject.human_friendly, cert.issuer.human_friendly


def cms_certificates(signing_cert: x509.Certificate,
                     chain: list[x509.Certificate]) -> SimpleCertificateStore:
    """The certificates a signature's CMS carries besides the signing certificate.
    pyHanko adds the signing certificate itself and collects certificates in a set of
    asn1crypto values (equal only when identical), so a registry holding it too puts it
    in every CMS twice."""
    own = signing_cert.sha256
    return SimpleCertificateStore.from_certs([c for c in chain if c.sha256 != own])


def load_chain(paths: tuple[Path, ...] | list[Path]) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ConfigError(f"certificate file {path}: {e}") from e
        if pem.detect(data):
            certs += [x509.Certificate.load(der) for _, _, der in pem.unarmor(data, multiple=True)]
        else:
            certs.append(x509.Certificate.load(data))
    if not certs:
        raise ConfigError(f"no certificates in {[str(p) for p in paths]}")
    for cert in certs:
        parse_fully(cert)
    return certs


class KeyBackend(ABC):
    """A named signing key: its certificate chain and a pyHanko Signer that uses it."""

    def __init__(self, entry: KeyEntry) -> None:
        self.entry = entry
        chain = load_chain(entry.certificate_chain_pem)
        self.certificate: x509.Certificate = chain[0]
        self.chain: list[x509.Certificate] = chain[1:]

    @abstractmethod
    def signer(self) -> Signer:
        """A pyHanko Signer for this key (may be shared; must be safe to call from any thread)."""

    def check(self) -> None:  # noqa: B027 - optional readiness hook
        """Raise if the key cannot be used now."""
