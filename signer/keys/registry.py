"""Named signer keys (from the clients file), each built once per process."""

from __future__ import annotations

import threading

from signer.clients import Clients
from signer.errors import ConfigError, NotFound
from signer.keys.base import KeyBackend
from signer.keys.csc import CscKey
from signer.keys.local import LocalKey
from signer.keys.pkcs11 import Pkcs11Key, Pkcs11Token
from signer.settings import Settings


class KeyRegistry:
    def __init__(self, settings: Settings, clients: Clients) -> None:
        self._settings = settings
        self._clients = clients
        self._backends: dict[str, KeyBackend] = {}
        self._lock = threading.Lock()
        self.token: Pkcs11Token | None = None
        p11 = clients.pkcs11
        module = settings.pkcs11_module or (p11.module if p11 else "")
        if module:
            pin = settings.pkcs11_pin()
            if pin is None and p11 and p11.pin_file and not settings.production:
                pin = p11.pin_file.read_text().strip()  # dev token only
            label = p11.token_label if p11 else settings.pkcs11_token_label
            self.token = Pkcs11Token(module, label, pin)

    def get(self, key: str, tenant_schools: frozenset[str]) -> KeyBackend:
        """The key, if it belongs to one of the caller's schools (else 404, like a record)."""
        entry = self._clients.signers.get(key)
        if entry is None or entry.tenant not in tenant_schools:
            raise NotFound(f"no signer key {key!r}", code="key_not_found")
        if entry.backend == "client":
            raise NotFound(f"signer key {key!r} is not a server-held key",
                           code="key_not_server_held")
        with self._lock:
            backend = self._backends.get(key)
            if backend is None:
                backend = self._build(key)
                self._backends[key] = backend
            return backend

    def _build(self, key: str) -> KeyBackend:
        entry = self._clients.signers[key]
        if entry.backend == "local":
            if self._settings.production:
                raise ConfigError(f"signer {key}: software keys are refused in production")
            return LocalKey(entry)
        if entry.backend == "pkcs11":
            if self.token is None:
                raise ConfigError(f"signer {key}: no PKCS#11 module configured")
            return Pkcs11Key(entry, self.token)
        if entry.backend == "csc":
            return CscKey(entry, timeout=self._settings.network_timeout_seconds)
        raise ConfigError(f"signer {key}: backend {entry.backend} not available")
