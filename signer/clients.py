"""API clients, tenants and signer keys, from the clients file (var/dev/clients.json in dev).

An API key is looked up by its SHA-256 and compared in constant time; the file may hold
either `api_key` (dev) or `api_key_sha256` (production: the key itself is never stored).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signer.errors import ConfigError

SCOPES = {"records:write", "records:sign", "archive:read", "archive:admin", "stats:read"}
BACKENDS = {"pkcs11", "local", "csc", "client"}


@dataclass(frozen=True)
class Client:
    name: str
    tenant: str
    scopes: frozenset[str]
    schools: frozenset[str]

    def covers(self, school_code: str) -> bool:
        return school_code in self.schools


@dataclass(frozen=True)
class KeyEntry:
    key: str
    tenant: str
    role: str
    backend: str
    certificate_chain_pem: tuple[Path, ...]
    private_key_pem: Path | None = None
    pkcs11_key_label: str | None = None
    pkcs11_key_id: str | None = None
    # backend "csc": the provider's base URL (before /csc/v1/...) and the credential ID;
    # the certificate chain is optional there (the provider's credentials/info gives it)
    csc_service_url: str | None = None
    csc_credential_id: str | None = None


@dataclass(frozen=True)
class Pkcs11Config:
    module: str
    token_label: str
    pin_file: Path | None = None
    softhsm2_conf: Path | None = None


@dataclass(frozen=True)
class Clients:
    by_key_hash: dict[bytes, Client]
    signers: dict[str, KeyEntry]
    trust_anchors: tuple[Path, ...]
    """Trust files: trust store TOML files or root certificates (signer.truststore)."""
    pkcs11: Pkcs11Config | None
    tenants: dict[str, frozenset[str]] = field(default_factory=dict)

    def authenticate(self, api_key: str) -> Client | None:
        digest = hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).digest()
        found: Client | None = None
        for stored, client in self.by_key_hash.items():
            if hmac.compare_digest(stored, digest):
                found = client
        return found

    def tenant_schools(self, tenant: str) -> frozenset[str]:
        return self.tenants.get(tenant, frozenset({tenant}))


def _path(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base / p


def load_clients(path: Path, base: Path | None = None) -> Clients:
    """Relative paths in the file are resolved against `base` (default: the working dir)."""
    base = base or Path.cwd()
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"clients file {path}: {e}") from e
    try:
        tenants = {t: frozenset(s) for t, s in doc.get("tenants", {}).items()}
        by_hash: dict[bytes, Client] = {}
        for c in doc["clients"]:
            scopes = frozenset(c["scopes"])
            if not scopes <= SCOPES:
                raise ConfigError(f"client {c['name']}: unknown scopes {sorted(scopes - SCOPES)}")
            if "api_key_sha256" in c:
                digest = bytes.fromhex(c["api_key_sha256"])
            else:
                digest = hashlib.sha256(c["api_key"].encode()).digest()
            schools = tenants.get(c["tenant"], frozenset({c["tenant"]}))
            by_hash[digest] = Client(c["name"], c["tenant"], scopes, schools)
        signers: dict[str, KeyEntry] = {}
        for s in doc.get("signers", []):
            if s["backend"] not in BACKENDS:
                raise ConfigError(f"signer {s['key']}: unknown backend {s['backend']!r}")
            csc = s["backend"] == "csc"
            if csc and not (s.get("csc_service_url") and s.get("csc_credential_id")):
                raise ConfigError(f"signer {s['key']}: csc needs csc_service_url and "
                                  "csc_credential_id")
            # (a csc entry's "authorization" is for dev callers; the service never reads it)
            chain = (s.get("certificate_chain_pem") or ()) if csc else s["certificate_chain_pem"]
            signers[s["key"]] = KeyEntry(
                key=s["key"], tenant=s["tenant"], role=s["role"], backend=s["backend"],
                certificate_chain_pem=tuple(_path(base, p) for p in chain),
                private_key_pem=_path(base, s["private_key_pem"]) if s.get("private_key_pem")
                else None,
                pkcs11_key_label=s.get("pkcs11_key_label"),
                pkcs11_key_id=s.get("pkcs11_key_id"),
                csc_service_url=str(s["csc_service_url"]).rstrip("/") if csc else None,
                csc_credential_id=str(s["csc_credential_id"]) if csc else None,
            )
        # a trust store file (anchors with purposes and dates), else a flat list of roots
        anchors = doc.get("trust_store") or doc["trust_anchor"]
        anchors = [anchors] if isinstance(anchors, str) else anchors
        p11 = doc.get("pkcs11")
        pkcs11 = Pkcs11Config(
            module=p11["module"], token_label=p11["token_label"],
            pin_file=_path(base, p11["pin_file"]) if p11.get("pin_file") else None,
            softhsm2_conf=_path(base, p11["softhsm2_conf"]) if p11.get("softhsm2_conf")
            else None,
        ) if p11 else None
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"clients file {path}: missing or bad entry ({e!r})") from e
    return Clients(by_key_hash=by_hash, signers=signers,
                   trust_anchors=tuple(_path(base, a) for a in anchors), pkcs11=pkcs11,
                   tenants=tenants)
