"""Keys in an HSM or token over PKCS#11 (SoftHSM2 in dev and tests).

One session per process, opened lazily, used under a lock (a PKCS#11 session runs one
operation at a time), and re-opened after a token error. The PIN comes from the
environment variable that settings name; it is never logged.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from typing import Any

import pkcs11
from pyhanko.sign.pkcs11 import PKCS11Signer
from pyhanko.sign.signers import Signer

from signer.clients import KeyEntry
from signer.errors import ConfigError, DependencyError
from signer.fixes.attrcache import CachedSigningCertificateSigner
from signer.keys.base import KeyBackend, cms_certificates

_OPEN_ATTEMPTS = 5
_RETRY_OPEN = (pkcs11.exceptions.NoSuchToken, pkcs11.exceptions.GeneralError,
               pkcs11.exceptions.UserPinNotInitialized, pkcs11.exceptions.TokenNotRecognised)


class Pkcs11Token:
    """A process-wide session on one token; fork-safe (re-opened in a new process)."""

    def __init__(self, module: str, token_label: str, pin: str | None) -> None:
        self.module = module
        self.token_label = token_label
        self._pin = pin
        self.lock = threading.RLock()
        self._session: Any = None
        self._pid = 0

    def session(self) -> Any:
        with self.lock:
            if self._session is None or self._pid != os.getpid():
                if not self._pin:
                    raise ConfigError("PKCS#11 PIN not set (see HOCBA_PKCS11_PIN_ENV)")
                self._session = self._open()
                self._pid = os.getpid()
            return self._session

    def _open(self) -> Any:
        # SoftHSM2 (file object store): a login rewrites the token file, and a process
        # that reads the token meanwhile (gunicorn workers opening their sessions at once)
        # sees no token, or a broken one, until it re-initializes the library. So such a
        # failure re-initializes and tries again (a PIN error is never retried).
        for attempt in range(_OPEN_ATTEMPTS):
            try:
                lib = pkcs11.lib(self.module)
                if attempt:
                    lib.reinitialize()
                token = lib.get_token(token_label=self.token_label)
                try:
                    return token.open(user_pin=self._pin)
                except pkcs11.exceptions.UserAlreadyLoggedIn:
                    # Login is per process and token: another session here (another
                    # service instance) logged in, and a new session shares that login.
                    return token.open()
            except pkcs11.PKCS11Error as e:
                if isinstance(e, _RETRY_OPEN) and attempt + 1 < _OPEN_ATTEMPTS:
                    time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))  # noqa: S311 jitter
                    continue
                raise DependencyError(
                    f"cannot open a session on PKCS#11 token {self.token_label!r}: "
                    f"{type(e).__name__}"
                ) from e
        raise AssertionError("unreachable")  # pragma: no cover

    def reset(self) -> None:
        with self.lock:
            session, self._session = self._session, None
            if session is not None and self._pid == os.getpid():
                with contextlib.suppress(pkcs11.PKCS11Error):
                    session.close()

    def check(self) -> None:
        with self.lock:
            try:
                query = {pkcs11.Attribute.CLASS: pkcs11.ObjectClass.PRIVATE_KEY}
                next(iter(self.session().get_objects(query)), None)
            except pkcs11.PKCS11Error as e:
                self.reset()
                raise DependencyError(f"PKCS#11 token check failed: {type(e).__name__}") from e


class _LockedPkcs11Signer(CachedSigningCertificateSigner):
    """Delegates the raw signature to pyHanko's PKCS11Signer, one operation at a time."""

    def __init__(self, token: Pkcs11Token, backend: Pkcs11Key) -> None:
        super().__init__(
            signing_cert=backend.certificate,
            cert_registry=cms_certificates(backend.certificate, backend.chain),
        )
        self._token = token
        self._backend = backend
        self._inner: PKCS11Signer | None = None
        self._inner_session: Any = None

    async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                             dry_run: bool = False) -> bytes:
        with self._token.lock:
            try:
                session = self._token.session()
                if self._inner is None or self._inner_session is not session:
                    entry = self._backend.entry
                    self._inner = PKCS11Signer(
                        session,
                        key_label=entry.pkcs11_key_label,
                        key_id=bytes.fromhex(entry.pkcs11_key_id) if entry.pkcs11_key_id
                        else None,
                        signing_cert=self._backend.certificate,
                        ca_chain=self._backend.chain,
                    )
                    self._inner_session = session
                return await self._inner.async_sign_raw(data, digest_algorithm, dry_run)
            except pkcs11.PKCS11Error as e:
                self._token.reset()
                self._inner = None
                raise DependencyError(f"PKCS#11 signing failed: {type(e).__name__}") from e


class Pkcs11Key(KeyBackend):
    def __init__(self, entry: KeyEntry, token: Pkcs11Token) -> None:
        super().__init__(entry)
        if not (entry.pkcs11_key_label or entry.pkcs11_key_id):
            raise ConfigError(f"signer {entry.key}: pkcs11 needs pkcs11_key_label or _id")
        self.token = token
        self._signer = _LockedPkcs11Signer(token, self)

    def signer(self) -> Signer:
        return self._signer

    def check(self) -> None:
        self.token.check()

