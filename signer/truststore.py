"""A trust store with history: every anchor hocba has trusted, for what, and when.

A verifier in 2060 must know which root was trusted in 2026: anchors carry a purpose
(``signing``: CAs of signers' certificates; ``timestamping``: CAs of time-stamping
authorities and their revocation responders), ``trusted_from`` and ``trusted_until``,
and where the certificate came from. An anchor is ended (``trusted_until``), never
removed. Each certificate is checked against its SHA-256 fingerprint when loaded.

The dates become pyHanko trust qualifiers, so a path is accepted only when its anchor
was trusted at the moment it is validated at (the proof-of-existence time in past
validation). Format (TOML; ``policies/trust/vn.toml`` is the production default)::

    [[anchor]]
    id = "neac-root-g3"
    certificate = "vn/neac-root-g3.pem"   # relative to the TOML file
    sha256 = "…"                           # of the DER
    purposes = ["signing", "timestamping"]
    trusted_from = 2024-01-01T00:00:00Z
    trusted_until = 2049-01-01T00:00:00Z   # optional
    source = "…"
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from asn1crypto import pem, x509
from pyhanko_certvalidator.authority import CertTrustAnchor, TrustAnchor, TrustQualifiers

from signer.errors import ConfigError

SIGNING = "signing"
TIMESTAMPING = "timestamping"
PURPOSES = frozenset({SIGNING, TIMESTAMPING})


@dataclass(frozen=True)
class Anchor:
    id: str
    certificate: x509.Certificate
    purposes: frozenset[str]
    trusted_from: datetime | None = None
    trusted_until: datetime | None = None
    name: str | None = None
    source: str | None = None
    note: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.certificate.dump()).hexdigest()

    def trusted_at(self, moment: datetime) -> bool:
        return ((self.trusted_from is None or self.trusted_from <= moment)
                and (self.trusted_until is None or moment <= self.trusted_until))

    def trust_anchor(self) -> TrustAnchor:
        return CertTrustAnchor(self.certificate, TrustQualifiers(
            valid_from=self.trusted_from, valid_until=self.trusted_until))

    def as_dict(self) -> dict[str, Any]:
        def when(t: datetime | None) -> str | None:
            return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None

        return {"id": self.id, "name": self.name or self.certificate.subject.human_friendly,
                "sha256": self.sha256, "purposes": sorted(self.purposes),
                "trusted_from": when(self.trusted_from),
                "trusted_until": when(self.trusted_until), "source": self.source}


@dataclass(frozen=True)
class TrustStore:
    anchors: tuple[Anchor, ...]
    description: str | None = None

    def for_purpose(self, purpose: str) -> list[TrustAnchor]:
        """pyHanko trust anchors for `purpose`, each qualified with its dates."""
        return [a.trust_anchor() for a in self.anchors if purpose in a.purposes]

    def all_anchors(self) -> list[TrustAnchor]:
        return [a.trust_anchor() for a in self.anchors]

    def certificates(self, purpose: str | None = None) -> list[x509.Certificate]:
        return [a.certificate for a in self.anchors
                if purpose is None or purpose in a.purposes]

    def trusted_at(self, moment: datetime, purpose: str | None = None) -> list[Anchor]:
        return [a for a in self.anchors if a.trusted_at(moment)
                and (purpose is None or purpose in a.purposes)]

    def __bool__(self) -> bool:
        return bool(self.anchors)

    @classmethod
    def of(cls, certificates: Iterable[x509.Certificate], *, source: str | None = None
           ) -> TrustStore:
        """Anchors for every purpose, at every time (a flat list of roots)."""
        return cls(tuple(
            Anchor(id=c.sha256.hex()[:16], certificate=c, purposes=PURPOSES, source=source)
            for c in certificates))

    def __add__(self, other: TrustStore) -> TrustStore:
        seen = {a.sha256 for a in self.anchors}
        return TrustStore(self.anchors + tuple(a for a in other.anchors
                                               if a.sha256 not in seen), self.description)


TrustInput = TrustStore | Sequence[x509.Certificate]


def as_trust_store(trust: TrustInput) -> TrustStore:
    return trust if isinstance(trust, TrustStore) else TrustStore.of(trust)


def load_trust_store(path: Path) -> TrustStore:
    """Read a trust store file; every certificate must match its fingerprint."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"trust store {path}: {e}") from e
    anchors: list[Anchor] = []
    ids: set[str] = set()
    for n, entry in enumerate(doc.get("anchor", []), 1):
        where = f"trust store {path}, anchor {entry.get('id') or n}"
        try:
            anchor_id = str(entry["id"])
            cert_path = path.parent / str(entry["certificate"])
            expected = str(entry["sha256"]).lower().replace(":", "")
            purposes = frozenset(str(p) for p in entry["purposes"])
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{where}: missing {e}") from e
        if anchor_id in ids:
            raise ConfigError(f"{where}: id used twice")
        ids.add(anchor_id)
        if not purposes or purposes - PURPOSES:
            raise ConfigError(f"{where}: purposes must be among {sorted(PURPOSES)}")
        cert = _load_certificate(cert_path, where)
        actual = hashlib.sha256(cert.dump()).hexdigest()
        if actual != expected:
            raise ConfigError(f"{where}: {cert_path.name} has SHA-256 {actual}, "
                              f"the trust store says {expected}")
        start = _moment(entry.get("trusted_from"), where)
        end = _moment(entry.get("trusted_until"), where)
        if start and end and end < start:
            raise ConfigError(f"{where}: trusted_until is before trusted_from")
        anchors.append(Anchor(id=anchor_id, certificate=cert, purposes=purposes,
                              trusted_from=start, trusted_until=end,
                              name=entry.get("name"), source=entry.get("source"),
                              note=entry.get("note")))
    if not anchors:
        raise ConfigError(f"trust store {path}: no anchor")
    return TrustStore(tuple(anchors), doc.get("description"))


def load_trust(paths: Sequence[Path]) -> TrustStore:
    """Trust from files: trust store TOML files and certificates (PEM or DER), merged."""
    store = TrustStore(())
    for p in paths:
        if p.suffix == ".toml":
            store = store + load_trust_store(p)
        else:
            store = store + TrustStore.of([_load_certificate(p, str(p))], source=str(p))
    return store


def _load_certificate(path: Path, where: str) -> x509.Certificate:
    try:
        data = path.read_bytes()
        if pem.detect(data):
            _, _, data = pem.unarmor(data)
        cert = x509.Certificate.load(data)
        cert.native  # noqa: B018 - parse it all now, not at first use
        return cert
    except Exception as e:
        raise ConfigError(f"{where}: cannot read certificate {path}: {e}") from e


def _moment(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ConfigError(f"{where}: {value!r} is not a TOML date or datetime")
