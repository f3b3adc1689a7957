"""Remote signing credentials: a provider speaking the Cloud Signature Consortium API.

The private key stays with the provider; the teacher authorizes signatures from a phone
with a one-time password (OTP, or a PIN) that the caller passes in with the request. One
authorization covers a whole batch (a class's records): `CscKey.signer_for` gives a
signer for one batch of up to `batch_size` signatures; the batch calls
`credentials/authorize` once, with every hash of the batch (hash pinning, SCAL2), and
`signatures/signHash` once.

    key = registry.get("school-1-csc-teacher", schools)   # certificates fetched, cached
    async with key.signer_for({"otp": otp}, batch_size=len(pdfs)) as signer:
        async def one(pdf):
            with signer.slot():          # leaves the batch if it fails before signing
                return await sign_role(pdf, signer, job, services)
        results = await asyncio.gather(*(one(p) for p in pdfs), return_exceptions=True)

The batch commits when as many hashes are pending as participants are expected:
`batch_size`, less every participant that left without signing (`slot()`, or
`withdraw()` / `expect(n)` by hand), so one record failing early never holds the others
waiting. Everyone in the batch gets the same error when the provider refuses it.

The OTP is used once and dropped from the objects right after the authorize call (a
Python string cannot be wiped from memory; it is never stored, logged or put in an error
message). Errors: a refused OTP/PIN -> InvalidInput `authorization_invalid` (422, nothing
signed); the provider unreachable, timing out or failing (5xx) -> DependencyError
`csc_unavailable` (503); any other unexpected answer -> DependencyError `csc_error`
(502). CSC API v1 (pyHanko's CSCSigner formats v1 request bodies).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from cryptography.exceptions import InvalidSignature
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import Signer
from pyhanko.sign.signers.csc_signer import (
    CSCAuthorizationInfo,
    CSCAuthorizationManager,
    CSCCredentialInfo,
    CSCServiceSessionInfo,
    CSCSigner,
    base64_digest,
    fetch_certs_in_csc_credential,
)
from pyhanko_certvalidator.registry import CertificateStore
from pyhanko_certvalidator.sig_validate import DefaultSignatureValidator

from signer.aio import run
from signer.clients import KeyEntry
from signer.errors import ConfigError, DependencyError, FieldError, HocbaError, InvalidInput
from signer.fixes.attrcache import CachedSigningCertificateSigner
from signer.keys.base import KeyBackend, cms_certificates, load_chain, parse_fully

log = logging.getLogger("hocba.keys.csc")

REFUSED_AUTHORIZATION = frozenset({"invalid_otp", "invalid_pin"})
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_SECRET = 256


def unavailable(detail: str) -> DependencyError:
    return DependencyError(detail, code="csc_unavailable")


def provider_error(detail: str) -> DependencyError:
    return DependencyError(detail, code="csc_error", status=502)


def _answer_error(what: str, status: int, answer: Any) -> HocbaError:
    """The error for a non-200 answer (never echoing anything but the provider's code)."""
    code = answer.get("error") if isinstance(answer, dict) else None
    code = code if isinstance(code, str) and _ERROR_CODE.fullmatch(code) else None
    if status >= 500:
        return unavailable(f"the signing provider failed on {what} (HTTP {status})")
    named = f" ({code})" if code else ""
    return provider_error(f"the signing provider refused {what}: HTTP {status}{named}")


async def _read_json(resp: aiohttp.ClientResponse) -> Any:
    try:
        return await resp.json(content_type=None)
    except ValueError:
        return None


def parse_authorization(authorization: object) -> tuple[str | None, str | None]:
    """(otp, pin) from the request's `"authorization": {"otp": ...}` (or `{"pin": ...}`)."""
    if isinstance(authorization, dict) and set(authorization) <= {"otp", "pin"}:
        otp, pin = authorization.get("otp"), authorization.get("pin")
        if all(v is None or (isinstance(v, str) and 0 < len(v) <= _MAX_SECRET)
               for v in (otp, pin)) and (otp or pin):
            return otp, pin
    raise InvalidInput(
        'a remote signing key needs the provider\'s one-time authorization: '
        '"authorization": {"otp": "<the code sent to the signer>"} (or {"pin": ...})',
        code="authorization_required",
        errors=[FieldError("authorization", 'an object with a non-empty string "otp" or "pin"')],
    )


class OneTimeAuthorization(CSCAuthorizationManager):
    """Calls `credentials/authorize` once, with the OTP/PIN given and the batch's hashes;
    forgets the OTP/PIN as soon as it is sent."""

    def __init__(self, session_info: CSCServiceSessionInfo, credential_info: CSCCredentialInfo,
                 http: aiohttp.ClientSession, *, otp: str | None, pin: str | None,
                 timeout: float) -> None:
        super().__init__(session_info, credential_info)
        self._http = http
        self._otp = otp
        self._pin = pin
        self._timeout = timeout
        self.used = False

    def __repr__(self) -> str:
        return (f"<OneTimeAuthorization {self.csc_session_info.credential_id!r} "
                f"used={self.used}>")

    def forget(self) -> None:
        self._otp = self._pin = None

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        if self.used:
            raise InvalidInput("this authorization has been used; ask the signer for a new "
                               "one-time password", code="authorization_used")
        self.used = True
        body = self.format_csc_auth_request(
            otp=self._otp, pin=self._pin, hash_b64s=list(hash_b64s),
            description=f"hocba: {len(hash_b64s)} chữ ký / signature(s)",
        )
        self.forget()
        url = self.csc_session_info.endpoint_url("credentials/authorize")
        try:
            async with self._http.post(
                url, headers=self.auth_headers, json=body,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as resp:
                status, answer = resp.status, await _read_json(resp)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise unavailable("the signing provider cannot be reached "
                              f"(credentials/authorize: {type(e).__name__})") from e
        finally:
            body.clear()  # the OTP/PIN (already serialized and sent)
        if status == 400 and isinstance(answer, dict) and \
                answer.get("error") in REFUSED_AUTHORIZATION:
            raise InvalidInput(
                "the signing provider refused the one-time password or PIN; nothing was "
                "signed (ask the signer for a new code)", code="authorization_invalid",
                errors=[FieldError("authorization", "refused by the signing provider")],
            )
        if status != 200:
            raise _answer_error("the authorization", status, answer)
        try:
            info = self.parse_csc_auth_response(answer if isinstance(answer, dict) else {})
        except SigningError as e:
            raise provider_error(f"the signing provider's authorization is unreadable: {e}"
                                 ) from e
        log.info("remote signing: %s authorized %d signature(s)",
                 self.csc_session_info.credential_id, len(hash_b64s))
        return info


@dataclass
class _Slot:
    signer: CscBatchSigner
    used: bool = False


_SLOT: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("hocba_csc_slot",
                                                                    default=None)


def _again(e: HocbaError) -> HocbaError:
    """A fresh copy of the batch's error for each participant."""
    return type(e)(e.detail, code=e.code, status=e.status, errors=e.errors)


class CscBatchSigner(CachedSigningCertificateSigner, CSCSigner):
    """pyHanko's CSCSigner for one batch under one authorization.

    It commits (one `credentials/authorize`, one `signatures/signHash`) as soon as the
    number of pending hashes reaches the number of participants expected: `batch_size`
    at first, less one for every `withdraw()`. Every returned signature is checked
    against the credential's certificate. Single use: once committed, the authorization
    is spent. Create it inside the running event loop (`CscKey.signer_for`) and close
    it there (`aclose()` or `async with`).
    """

    def __init__(self, http: aiohttp.ClientSession, auth_manager: OneTimeAuthorization, *,
                 batch_size: int, sign_timeout: int) -> None:
        super().__init__(http, auth_manager, sign_timeout=sign_timeout,
                         batch_autocommit=True, batch_size=batch_size)
        self._auth = auth_manager
        self._cms_certs = cms_certificates(self.signing_cert, list(super().cert_registry))
        self._expected = batch_size
        self._data: list[bytes] = []
        self._md: str | None = None
        self._done = asyncio.Event()
        self._results: list[bytes] | None = None
        self._error: HocbaError | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def cert_registry(self) -> CertificateStore:
        return self._cms_certs

    @property
    def expected(self) -> int:
        return self._expected

    @property
    def pending(self) -> int:
        return len(self._data)

    def expect(self, n: int) -> None:
        """Commit once `n` hashes are pending (between those pending and batch_size)."""
        if not self.pending <= n <= self.batch_size:
            raise ValueError(f"expect({n}): {self.pending} pending, batch of {self.batch_size}")
        self._expected = n
        self._maybe_commit()

    def withdraw(self) -> None:
        """One expected participant will not sign (it failed before signing)."""
        if self._commit_task is None and self._expected > self.pending:
            self.expect(self._expected - 1)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """One participant: withdraws it on leaving if it did not reach the signature."""
        slot = _Slot(self)
        token = _SLOT.set(slot)
        try:
            yield
        finally:
            _SLOT.reset(token)
            if not slot.used:
                self.withdraw()

    async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                             dry_run: bool = False) -> bytes:
        if dry_run:
            return bytes(self.est_raw_signature_size)
        if self._commit_task is not None or self._closed:
            raise SigningError("this batch has been committed; its authorization is spent")
        if self.pending >= self.batch_size:
            raise SigningError(f"the batch holds {self.batch_size} signature(s)")
        if self._md is None:
            self._md = digest_algorithm
        elif self._md != digest_algorithm:
            raise SigningError(f"one digest algorithm per batch ({self._md}, "
                               f"not {digest_algorithm})")
        ix = self.pending
        self._data.append(bytes(data))
        slot = _SLOT.get()
        if slot is not None and slot.signer is self:
            slot.used = True
        self._maybe_commit()
        await self._done.wait()
        if self._error is not None:
            raise _again(self._error) from self._error
        if self._results is None:
            raise unavailable("remote signing was interrupted")
        return self._results[ix]

    async def commit(self) -> None:
        """Commit now with the hashes pending (no more participants)."""
        if self._commit_task is None and self.pending:
            self.expect(self.pending)
        if self._commit_task is not None:
            await asyncio.shield(self._commit_task)

    def _maybe_commit(self) -> None:
        if self._commit_task is None and self.pending and self.pending >= self._expected:
            # a task of its own: a participant cancelled while waiting cannot abort it
            self._commit_task = asyncio.get_running_loop().create_task(self._commit())

    async def _commit(self) -> None:
        try:
            self._results = await self._sign_all()
        except HocbaError as e:
            self._error = e
        except SigningError as e:
            self._error = provider_error(f"remote signing failed: {e}")
        except Exception as e:  # never leave the batch waiting
            log.warning("remote signing failed: %s", type(e).__name__, exc_info=True)
            self._error = provider_error(f"remote signing failed ({type(e).__name__})")
        finally:
            self._auth.forget()
            self._done.set()

    async def _sign_all(self) -> list[bytes]:
        md = self._md or "sha256"
        hashes = [base64_digest(d, md) for d in self._data]
        req = await self.format_csc_signing_req(hashes, md)  # authorizes, once
        url = self.auth_manager.csc_session_info.endpoint_url("signatures/signHash")
        try:
            async with self.session.post(
                url, headers=self.auth_manager.auth_headers, json=req,
                timeout=aiohttp.ClientTimeout(total=self.sign_timeout),
            ) as resp:
                status, answer = resp.status, await _read_json(resp)
        except (aiohttp.ClientError, TimeoutError) as e:
            raise unavailable("the signing provider cannot be reached "
                              f"(signatures/signHash: {type(e).__name__})") from e
        if status != 200:
            raise _answer_error("the signature request", status, answer)
        try:
            signatures = [base64.b64decode(s, validate=True) for s in answer["signatures"]]
        except (KeyError, TypeError, ValueError, binascii.Error) as e:
            raise provider_error("the signing provider's signatures are unreadable") from e
        if len(signatures) != len(hashes):
            raise provider_error(f"the signing provider returned {len(signatures)} "
                                 f"signature(s) for {len(hashes)} hash(es)")
        mechanism = self.get_signature_mechanism_for_digest(md)
        validator = DefaultSignatureValidator()
        public_key = self.auth_manager.credential_info.signing_cert.public_key
        for sig, data in zip(signatures, self._data, strict=True):
            try:
                validator.validate_signature(sig, data, public_key, mechanism)
            except (InvalidSignature, ValueError) as e:
                raise provider_error("a signature from the signing provider does not verify "
                                     "against the credential's certificate") from e
        log.info("remote signing: %s signed %d hash(es)",
                 self.auth_manager.csc_session_info.credential_id, len(signatures))
        return signatures

    async def aclose(self) -> None:
        """Finish (failing participants still waiting for others) and close the session."""
        self._closed = True
        if self._commit_task is None and self.pending:
            self._error = InvalidInput("the batch was closed before every participant "
                                       "arrived; nothing was signed", code="batch_incomplete")
            self._done.set()
        if self._commit_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._commit_task
        self._auth.forget()
        await self.session.close()

    async def __aenter__(self) -> CscBatchSigner:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class CscKey(KeyBackend):
    """A CSC credential: certificates from the provider's `credentials/info` (fetched once
    per process), signatures through `signer_for` with the caller's authorization."""

    def __init__(self, entry: KeyEntry, *, timeout: int = 20) -> None:
        if not (entry.csc_service_url and entry.csc_credential_id):
            raise ConfigError(f"signer {entry.key}: csc needs csc_service_url and "
                              "csc_credential_id")
        self.entry = entry
        self.timeout = timeout
        self.session_info = CSCServiceSessionInfo(
            service_url=entry.csc_service_url, credential_id=entry.csc_credential_id,
        )
        self.credential_info: CSCCredentialInfo = run(self.fetch_credential_info())
        self.certificate = self.credential_info.signing_cert
        self.chain = list(self.credential_info.chain)
        if entry.certificate_chain_pem:
            configured = load_chain(entry.certificate_chain_pem)
            if configured[0].dump() != self.certificate.dump():
                raise ConfigError(f"signer {entry.key}: the provider's certificate for "
                                  f"{entry.csc_credential_id} is not the configured one")
            self.chain = configured[1:]
        for cert in (self.certificate, *self.chain):  # shared by threads: see parse_fully
            parse_fully(cert)

    async def fetch_credential_info(self) -> CSCCredentialInfo:
        try:
            async with aiohttp.ClientSession() as http:
                return await fetch_certs_in_csc_credential(http, self.session_info,
                                                           timeout=self.timeout)
        except SigningError as e:
            cause = e.__cause__
            if isinstance(cause, aiohttp.ClientResponseError):
                raise _answer_error(f"credential {self.session_info.credential_id}",
                                    cause.status, None) from e
            if isinstance(cause, aiohttp.ClientError):
                raise unavailable("the signing provider cannot be reached "
                                  f"(credentials/info: {type(cause).__name__})") from e
            raise provider_error(f"the signing provider's credential info: {e}") from e
        except (aiohttp.ClientError, TimeoutError) as e:
            raise unavailable("the signing provider cannot be reached "
                              f"(credentials/info: {type(e).__name__})") from e

    @property
    def max_batch_size(self) -> int:
        return self.credential_info.max_batch_size

    def signer(self) -> Signer:
        raise InvalidInput(
            f"signer key {self.entry.key} is a remote signing credential: send the "
            'provider\'s one-time authorization, "authorization": {"otp": "..."}',
            code="authorization_required",
        )

    def signer_for(self, authorization: object, *, batch_size: int = 1) -> CscBatchSigner:
        """A signer for one batch of up to `batch_size` signatures under one
        authorization. Call inside the event loop that signs; close it there."""
        otp, pin = parse_authorization(authorization)
        if batch_size < 1:
            raise ValueError(f"batch_size {batch_size}")
        if batch_size > self.max_batch_size:
            raise InvalidInput(
                f"the signing provider authorizes at most {self.max_batch_size} signatures "
                f"at once, not {batch_size}", code="batch_too_large")
        asyncio.get_running_loop()  # RuntimeError outside a coroutine
        http = aiohttp.ClientSession()
        auth = OneTimeAuthorization(self.session_info, self.credential_info, http,
                                    otp=otp, pin=pin, timeout=self.timeout)
        return CscBatchSigner(http, auth, batch_size=batch_size, sign_timeout=self.timeout)
