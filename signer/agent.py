"""The school-side signing agent: signs hocba's two-step sessions with a USB token.

Public schools keep their seal and principal certificates on PKCS#11 tokens. The school
system asks hocba for a signing session (the certificate chain goes up, `data_to_sign` and
its SHA-256 `digest` come back), this module signs the digest on the token and posts the
raw signature value back (see CONTRACT.md, "Client-held keys" and "Batches").

    hocba agent sign --url http://127.0.0.1:8080 --role principal --record R1 --record R2 \\
        --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label hocba-school-client
    hocba agent list-keys --pkcs11-module ... --token-label ...

The private key is found from its certificate, never from a label guess: tokens issued by
Vietnamese CAs label the key "Private Key" (or similar) and the certificate otherwise. The
agent matches CKA_ID with the certificate object's CKA_ID, then the public key (RSA modulus
and exponent, or EC point) with the certificate's SubjectPublicKeyInfo; a key label is
used only when the caller names one. The PIN comes from an environment variable that the
caller names; it is never a command-line value, never stored past the login and never
logged or put into an error message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import pkcs11
import requests
from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_ecdsa_signature

log = logging.getLogger("hocba.agent")

# A pkcs11 object (key, certificate); python-pkcs11 builds these classes at run time.
P11Object = Any

DEFAULT_TIMEOUT = (10.0, 120.0)  # (connect, read) seconds, on every request
USER_AGENT = "hocba-agent/0.1"

# RFC 8017, 9.2 note 1: the DER prefix of DigestInfo for each hash.
_DIGEST_INFO_PREFIX = {
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "sha224": bytes.fromhex("302d300d06096086480165030402040500041c"),
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_DIGEST_SIZE = {"sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}
_HASH_RSA_MECHANISM = {
    "sha1": Mechanism.SHA1_RSA_PKCS,
    "sha224": Mechanism.SHA224_RSA_PKCS,
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
}
_CRYPTO_HASH: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha224": hashes.SHA224,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# PKCS#11 errors about the PIN, by the CKR_ name a token vendor's manual uses.
_PIN_ERRORS: dict[type[Exception], tuple[str, str]] = {
    pkcs11.PinIncorrect: ("CKR_PIN_INCORRECT", "the PIN is wrong"),
    pkcs11.PinInvalid: ("CKR_PIN_INVALID", "the PIN has characters the token does not accept"),
    pkcs11.PinLenRange: ("CKR_PIN_LEN_RANGE", "the PIN is too short or too long"),
    pkcs11.PinExpired: ("CKR_PIN_EXPIRED", "the PIN has expired; change it with the CA's tool"),
    pkcs11.PinLocked: ("CKR_PIN_LOCKED",
                       "the PIN is locked after too many wrong tries; unlock it with the "
                       "CA's tool (SO PIN / PUK)"),
}


# --------------------------------------------------------------------------- errors


class AgentError(Exception):
    """An error the agent reports to the user as one line (no PIN, no API key in it)."""


class TokenError(AgentError):
    """The PKCS#11 module, token, login or signing failed."""


class KeyNotFound(TokenError):
    """No private key (or certificate) fits what was asked for."""


class ServerError(AgentError):
    """hocba answered with an error (problem+json: code and detail)."""

    def __init__(self, status: int, code: str, detail: str, *, method: str = "",
                 path: str = "", errors: Sequence[dict[str, Any]] = ()) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.method = method
        self.path = path
        self.errors = list(errors)
        fields = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in self.errors)
        where = f"{method} {path} -> " if method else ""
        super().__init__(f"{where}{status} {code}: {detail}" + (f" ({fields})" if fields else ""))

    @classmethod
    def from_response(cls, resp: requests.Response, method: str, path: str) -> ServerError:
        body: Any = None
        ctype = resp.headers.get("Content-Type", "")
        if "json" in ctype:
            try:
                body = resp.json()
            except ValueError:
                body = None
        if isinstance(body, dict):
            code = str(body.get("code") or f"http_{resp.status_code}")
            detail = str(body.get("detail") or body.get("title") or resp.reason or "")
            errors = body.get("errors")
            return cls(resp.status_code, code, detail, method=method, path=path,
                       errors=[e for e in errors if isinstance(e, dict)]
                       if isinstance(errors, list) else [])
        text = " ".join((resp.text or "").split())[:200]
        return cls(resp.status_code, f"http_{resp.status_code}", text or str(resp.reason or ""),
                   method=method, path=path)


# --------------------------------------------------------------------------- helpers


def digest_info(digest: bytes, algorithm: str = "sha256") -> bytes:
    """DER DigestInfo (RFC 8017) for a digest: what CKM_RSA_PKCS signs."""
    algorithm = algorithm.lower().replace("-", "")
    if algorithm not in _DIGEST_INFO_PREFIX:
        raise AgentError(f"unsupported digest algorithm {algorithm!r}")
    if len(digest) != _DIGEST_SIZE[algorithm]:
        raise AgentError(f"a {algorithm} digest has {_DIGEST_SIZE[algorithm]} bytes, "
                         f"not {len(digest)}")
    return _DIGEST_INFO_PREFIX[algorithm] + digest


def _attr(obj: P11Object, attribute: Attribute, default: Any = None) -> Any:
    """An attribute of a token object, or default when the token does not have it."""
    try:
        return obj[attribute]
    except (pkcs11.PKCS11Error, KeyError, NotImplementedError):
        return default


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _public_key_id(cert: x509.Certificate) -> tuple[str, Any]:
    """What identifies the certificate's public key: ("rsa", (n, e)) or ("ec", point)."""
    pk = cert.public_key()
    if isinstance(pk, rsa.RSAPublicKey):
        numbers = pk.public_numbers()
        return "rsa", (numbers.n, numbers.e)
    if isinstance(pk, ec.EllipticCurvePublicKey):
        return "ec", pk.public_bytes(serialization.Encoding.X962,
                                     serialization.PublicFormat.UncompressedPoint)
    raise TokenError(f"unsupported certificate key type {type(pk).__name__} (RSA or EC only)")


def _ec_point_candidates(raw: bytes) -> set[bytes]:
    """CKA_EC_POINT is a DER OCTET STRING by the standard; some tokens give the bare point."""
    found = {raw}
    with contextlib.suppress(ValueError, TypeError):
        found.add(bytes(asn1_core.OctetString.load(raw, strict=True).native))
    return found


def _key_public_id(obj: P11Object) -> tuple[str, Any] | None:
    """The public key of a token key object, when the token shows it (RSA private keys on
    most tokens show modulus and exponent; EC points sit on the public key object)."""
    key_type = _attr(obj, Attribute.KEY_TYPE)
    if key_type == KeyType.RSA:
        n, e = _attr(obj, Attribute.MODULUS), _attr(obj, Attribute.PUBLIC_EXPONENT)
        if n and e:
            return "rsa", (int.from_bytes(n, "big"), int.from_bytes(e, "big"))
        return None
    if key_type == KeyType.EC:
        point = _attr(obj, Attribute.EC_POINT)
        if point:
            return "ec", _ec_point_candidates(bytes(point))
    return None


def _same_public_key(wanted: tuple[str, Any], have: tuple[str, Any] | None) -> bool | None:
    """True/False when comparable, None when the token does not show the key."""
    if have is None:
        return None
    if wanted[0] != have[0]:
        return False
    if wanted[0] == "ec":
        return bool(wanted[1] in have[1])
    return bool(wanted[1] == have[1])


def _subject(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return repr(cert.subject)


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_pem_certificates(path: str | Path) -> list[x509.Certificate]:
    data = Path(path).read_bytes()
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        try:
            certs = [x509.load_der_x509_certificate(data)]
        except ValueError as e:
            raise AgentError(f"{path}: not a PEM or DER certificate") from e
    if not certs:
        raise AgentError(f"{path}: no certificate in it")
    return certs


# --------------------------------------------------------------------------- token


@dataclass(frozen=True)
class TokenCertificate:
    """A certificate object on the token."""

    label: str
    cka_id: bytes
    certificate: x509.Certificate

    @property
    def subject(self) -> str:
        return _subject(self.certificate)


@dataclass(frozen=True)
class KeyMatch:
    key: P11Object
    how: str  # "cka_id" | "public_key" | "label"

    @property
    def label(self) -> str:
        return _text(_attr(self.key, Attribute.LABEL))

    @property
    def cka_id(self) -> bytes:
        return bytes(_attr(self.key, Attribute.ID) or b"")


def _read_pin(pin_env: str) -> str:
    if not pin_env:
        raise TokenError("name the environment variable that holds the token PIN")
    value = os.environ.get(pin_env)
    if not value:
        raise TokenError(f"the token PIN is not set: put it in the environment variable "
                         f"{pin_env}")
    return value.strip()


def _load_module(module: str) -> Any:
    try:
        return pkcs11.lib(module)
    except (pkcs11.PKCS11Error, OSError, RuntimeError) as e:
        raise TokenError(f"cannot load the PKCS#11 module {module}: {e}") from e


def _token_labels(lib: Any) -> list[str]:
    try:
        return [slot.get_token().label for slot in lib.get_slots(token_present=True)]
    except pkcs11.PKCS11Error:
        return []


def _find_token(lib: Any, token_label: str | None) -> Any:
    if token_label:
        try:
            return lib.get_token(token_label=token_label)
        except pkcs11.NoSuchToken:
            labels = ", ".join(repr(t) for t in _token_labels(lib)) or "none"
            raise TokenError(f"no token labelled {token_label!r} is plugged in "
                             f"(tokens present: {labels})") from None
        except pkcs11.MultipleTokensReturned:
            raise TokenError(f"several tokens are labelled {token_label!r}; "
                             "unplug the others") from None
        except pkcs11.PKCS11Error as e:
            raise TokenError(f"cannot list tokens: {type(e).__name__}") from e
    # No label: the first initialized token that shows a private key or a certificate
    # without logging in (logging in to each with one PIN would burn the others' tries).
    tokens = []
    try:
        for slot in lib.get_slots(token_present=True):
            token = slot.get_token()
            if token.flags & pkcs11.TokenFlag.TOKEN_INITIALIZED:
                tokens.append(token)
    except pkcs11.PKCS11Error as e:
        raise TokenError(f"cannot list tokens: {type(e).__name__}") from e
    if not tokens:
        raise TokenError("no initialized token is plugged in")
    for wanted in (ObjectClass.PRIVATE_KEY, ObjectClass.CERTIFICATE):
        for token in tokens:
            try:
                with token.open() as public:
                    if next(iter(public.get_objects({Attribute.CLASS: wanted})), None):
                        if len(tokens) > 1:
                            log.info("several tokens present; using %r (pass a token label "
                                     "to choose)", token.label)
                        return token
            except pkcs11.PKCS11Error:
                continue
    if len(tokens) == 1:
        return tokens[0]
    labels = ", ".join(repr(t.label) for t in tokens)
    raise TokenError(f"several tokens are plugged in ({labels}); choose one by its label")


class TokenSession:
    """A logged-in session on one token: lists certificates and finds the key of each.

    Closing it logs out (PKCS#11 login is per process and token, so one open
    TokenSession per token at a time)."""

    def __init__(self, module: str, *, pin_env: str, token_label: str | None = None) -> None:
        self.module = module
        lib = _load_module(module)
        token = _find_token(lib, token_label)
        self.token_label: str = token.label
        try:
            # The PIN goes straight from the environment to C_Login: no local, no attribute.
            self.session: Any = token.open(user_pin=_read_pin(pin_env))
        except tuple(_PIN_ERRORS) as e:
            ckr, why = _PIN_ERRORS[type(e)]
            raise TokenError(f"token {self.token_label!r} refused the PIN from {pin_env} "
                             f"({ckr}: {why})") from None
        except pkcs11.UserAlreadyLoggedIn:
            raise TokenError(f"token {self.token_label!r} is already logged in by another "
                             "session of this process; close it first") from None
        except pkcs11.PKCS11Error as e:
            raise TokenError(f"cannot log in to token {self.token_label!r}: "
                             f"{type(e).__name__}") from None
        log.info("logged in to token %r (%s)", self.token_label, module)
        self._mechanisms: set[Any] | None = None
        try:
            self._mechanisms = set(token.slot.get_mechanisms())
        except pkcs11.PKCS11Error:
            self._mechanisms = None

    # -- lifecycle

    def close(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            try:
                session.close()
            except pkcs11.PKCS11Error as e:
                log.warning("closing the session on token %r: %s", self.token_label,
                            type(e).__name__)

    def __enter__(self) -> TokenSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _objects(self, template: dict[Attribute, Any]) -> list[P11Object]:
        if self.session is None:
            raise TokenError("the token session is closed")
        try:
            return list(self.session.get_objects(template))
        except pkcs11.PKCS11Error as e:
            raise TokenError(f"cannot search token {self.token_label!r}: "
                             f"{type(e).__name__}") from e

    def supports(self, mechanism: Mechanism) -> bool:
        return self._mechanisms is None or mechanism in self._mechanisms

    # -- objects

    def certificates(self) -> list[TokenCertificate]:
        found = []
        for obj in self._objects({Attribute.CLASS: ObjectClass.CERTIFICATE}):
            value = _attr(obj, Attribute.VALUE)
            if not value:
                continue
            try:
                cert = x509.load_der_x509_certificate(bytes(value))
            except ValueError:
                log.warning("token %r: certificate object %r is not X.509 DER; skipped",
                            self.token_label, _text(_attr(obj, Attribute.LABEL)))
                continue
            found.append(TokenCertificate(label=_text(_attr(obj, Attribute.LABEL)),
                                          cka_id=bytes(_attr(obj, Attribute.ID) or b""),
                                          certificate=cert))
        return found

    def private_keys(self) -> list[P11Object]:
        return self._objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})

    def find_key_for_certificate(self, cert: x509.Certificate,
                                 cka_id: bytes | None = None) -> KeyMatch | None:
        """The private key of a certificate: by CKA_ID (the certificate object's), then by
        public key. None when neither finds it."""
        wanted = _public_key_id(cert)
        if cka_id:
            for key in self._objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                      Attribute.ID: cka_id}):
                same = _same_public_key(wanted, _key_public_id(key))
                if same is None:
                    same = self._public_object_matches(cka_id, wanted)
                if same is not False:
                    log.debug("key for %s found by CKA_ID %s", _subject(cert), cka_id.hex())
                    return KeyMatch(key, "cka_id")
                log.warning("token %r: the key with CKA_ID %s is not the certificate's key",
                            self.token_label, cka_id.hex())
        for key in self.private_keys():
            if _same_public_key(wanted, _key_public_id(key)):
                log.debug("key for %s found by public key", _subject(cert))
                return KeyMatch(key, "public_key")
        # Keys that hide their public half (EC, some RSA tokens): the public key object
        # carries it, and shares CKA_ID (or, failing that, the label) with the private key.
        for pub in self._objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}):
            if not _same_public_key(wanted, _key_public_id(pub)):
                continue
            for attribute in (Attribute.ID, Attribute.LABEL):
                value = _attr(pub, attribute)
                if not value:
                    continue
                keys = self._objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                      attribute: value})
                if len(keys) == 1:
                    log.debug("key for %s found by public key object", _subject(cert))
                    return KeyMatch(keys[0], "public_key")
        return None

    def _public_object_matches(self, cka_id: bytes, wanted: tuple[str, Any]) -> bool | None:
        for pub in self._objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                  Attribute.ID: cka_id}):
            same = _same_public_key(wanted, _key_public_id(pub))
            if same is not None:
                return same
        return None

    def find_private_key_by_label(self, label: str) -> KeyMatch:
        """Label-only lookup: the last resort, for tokens whose keys show no CKA_ID and no
        public key."""
        keys = self._objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                              Attribute.LABEL: label})
        if len(keys) == 1:
            return KeyMatch(keys[0], "label")
        if len(keys) > 1:
            raise KeyNotFound(f"token {self.token_label!r} has {len(keys)} private keys "
                              f"labelled {label!r}; select the certificate instead")
        labels = sorted({_text(_attr(k, Attribute.LABEL)) for k in self.private_keys()})
        raise KeyNotFound(
            f"token {self.token_label!r} has no private key labelled {label!r} "
            f"(private key labels: {', '.join(repr(x) for x in labels) or 'none'}). "
            "Tokens often label the key differently from its certificate: select the "
            "certificate (--cert-label or --cert-pem) and let the agent match its key by "
            "CKA_ID or public key")


def _describe(cert: x509.Certificate) -> str:
    return f"{_subject(cert)} (serial {cert.serial_number:x})"


class TokenKey:
    """A certificate and its private key on a PKCS#11 token, ready to sign digests.

    The certificate comes from the token (cert_label, or the only certificate there with
    a private key) or from a PEM file (cert_pem; further certificates in it join the
    chain). The key is matched by CKA_ID, then public key; key_label only as a last
    resort, when given.
    """

    def __init__(self, module: str, *, pin_env: str, token_label: str | None = None,
                 cert_label: str | None = None, cert_pem: str | Path | None = None,
                 key_label: str | None = None,
                 chain_pems: Iterable[str | Path] = ()) -> None:
        if cert_label and cert_pem:
            raise AgentError("choose the certificate by label or by PEM file, not both")
        self.token = TokenSession(module, pin_env=pin_env, token_label=token_label)
        try:
            self._extra: list[x509.Certificate] = []
            self.cert_label: str | None = None
            self.certificate, cka_id = self._select_certificate(cert_label, cert_pem)
            for path in chain_pems:
                self._extra.extend(load_pem_certificates(path))
            self._match = self._select_key(cka_id, key_label)
            self._key_type = _public_key_id(self.certificate)[0]
        except BaseException:
            self.token.close()
            raise
        log.info("signing with %s: key %r matched by %s", _describe(self.certificate),
                 self._match.label, self._match.how)

    # -- selection

    def _select_certificate(self, cert_label: str | None, cert_pem: str | Path | None
                            ) -> tuple[x509.Certificate, bytes | None]:
        on_token = self.token.certificates()
        if cert_pem:
            certs = load_pem_certificates(cert_pem)
            cert, self._extra = certs[0], certs[1:]
            same = [c for c in on_token if c.certificate == cert]
            if same:
                self.cert_label = same[0].label
                return cert, same[0].cka_id or None
            return cert, None
        if cert_label:
            named = [c for c in on_token if c.label == cert_label]
            if not named:
                labels = ", ".join(repr(c.label) for c in on_token) or "none"
                raise KeyNotFound(f"token {self.token.token_label!r} has no certificate "
                                  f"labelled {cert_label!r} (certificate labels: {labels})")
            if len(named) > 1:
                named = [c for c in named if self.token.find_key_for_certificate(
                    c.certificate, c.cka_id or None)] or named
                if len(named) > 1:
                    raise KeyNotFound(f"token {self.token.token_label!r} has several "
                                      f"certificates labelled {cert_label!r}; use --cert-pem")
            self.cert_label = named[0].label
            return named[0].certificate, named[0].cka_id or None
        with_key = [c for c in on_token
                    if self.token.find_key_for_certificate(c.certificate, c.cka_id or None)]
        if len(with_key) == 1:
            self.cert_label = with_key[0].label
            return with_key[0].certificate, with_key[0].cka_id or None
        if not with_key:
            raise KeyNotFound(f"token {self.token.token_label!r} has no certificate with a "
                              f"matching private key ({len(on_token)} certificates); pass "
                              "--cert-pem with the signing certificate")
        labels = ", ".join(repr(c.label) for c in with_key)
        raise KeyNotFound(f"token {self.token.token_label!r} has several signing "
                          f"certificates ({labels}); choose one with --cert-label")

    def _select_key(self, cka_id: bytes | None, key_label: str | None) -> KeyMatch:
        match = self.token.find_key_for_certificate(self.certificate, cka_id)
        if match is not None:
            return match
        if key_label:
            match = self.token.find_private_key_by_label(key_label)
            if _same_public_key(_public_key_id(self.certificate),
                                _key_public_id(match.key)) is False:
                raise KeyNotFound(f"the private key labelled {key_label!r} does not belong "
                                  f"to the certificate {_describe(self.certificate)}")
            log.warning("key found by label %r only; it could not be checked against the "
                        "certificate before signing", key_label)
            return match
        how = f"CKA_ID {cka_id.hex()} or public key" if cka_id else "public key"
        raise KeyNotFound(f"token {self.token.token_label!r} has no private key matching "
                          f"the certificate {_describe(self.certificate)} (by {how}); "
                          "if the token hides both, name the key with --key-label")

    # -- properties

    @property
    def key_label(self) -> str:
        return self._match.label

    @property
    def key_id(self) -> bytes:
        return self._match.cka_id

    @property
    def matched_by(self) -> str:
        return self._match.how

    @property
    def key_type(self) -> str:
        return self._key_type

    def certificate_pem(self) -> str:
        return _pem(self.certificate)

    def certificate_chain(self) -> list[str]:
        """PEMs: the signing certificate first, then its issuers as far as known (from the
        PEM file, extra chain files, and certificates on the token)."""
        pool = [*self._extra, *(c.certificate for c in self.token.certificates())]
        chain = [self.certificate]
        for extra in self._extra:
            if extra not in chain:
                chain.append(extra)
        current = chain[-1]
        while current.issuer != current.subject:
            issuer = next((c for c in pool if c.subject == current.issuer and c not in chain),
                          None)
            if issuer is None:
                break
            chain.append(issuer)
            current = issuer
        return [_pem(c) for c in chain]

    # -- signing

    def sign_digest(self, digest: bytes, algorithm: str = "sha256") -> bytes:
        """The signature value over a precomputed digest: RSA PKCS#1 v1.5 (CKM_RSA_PKCS
        over DigestInfo, so it also works on tokens without hash-and-sign mechanisms) or
        DER-encoded ECDSA (CKM_ECDSA)."""
        algorithm = algorithm.lower().replace("-", "")
        if self._key_type == "rsa":
            return self._sign(digest_info(digest, algorithm), Mechanism.RSA_PKCS)
        digest_info(digest, algorithm)  # checks the algorithm and size
        return encode_ecdsa_signature(self._sign(digest, Mechanism.ECDSA))

    def sign_data(self, data: bytes, algorithm: str = "sha256") -> bytes:
        """The signature value over the full data: CKM_SHA256_RSA_PKCS (etc.) when the
        token has it, else hashed here and signed as a digest."""
        algorithm = algorithm.lower().replace("-", "")
        mechanism = _HASH_RSA_MECHANISM.get(algorithm)
        if self._key_type == "rsa" and mechanism is not None and \
                self.token.supports(mechanism):
            return self._sign(data, mechanism)
        if algorithm not in _DIGEST_SIZE:
            raise AgentError(f"unsupported digest algorithm {algorithm!r}")
        return self.sign_digest(hashlib.new(algorithm, data).digest(), algorithm)

    def _sign(self, data: bytes, mechanism: Mechanism) -> bytes:
        try:
            return bytes(self._match.key.sign(data, mechanism=mechanism))
        except pkcs11.PKCS11Error as e:
            raise TokenError(f"token {self.token.token_label!r} refused to sign "
                             f"({mechanism.name}): {type(e).__name__}") from e

    def verify_digest(self, signature: bytes, digest: bytes, algorithm: str = "sha256"
                      ) -> bool:
        """Whether a signature over a digest verifies with the certificate's public key."""
        algorithm = algorithm.lower().replace("-", "")
        prehashed = utils.Prehashed(_CRYPTO_HASH[algorithm]())
        pk = self.certificate.public_key()
        try:
            if isinstance(pk, rsa.RSAPublicKey):
                pk.verify(signature, digest, padding.PKCS1v15(), prehashed)
            elif isinstance(pk, ec.EllipticCurvePublicKey):
                pk.verify(signature, digest, ec.ECDSA(prehashed))
            else:
                return False
        except InvalidSignature:
            return False
        return True

    # -- lifecycle

    def close(self) -> None:
        self.token.close()

    def __enter__(self) -> TokenKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- HTTP


def _url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


def _post(base_url: str, api_key: str, path: str, body: dict[str, Any], *,
          idempotency_key: str | None = None,
          timeout: float | tuple[float, float] = DEFAULT_TIMEOUT) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json",
               "User-Agent": USER_AGENT}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    url = _url(base_url, path)
    try:
        resp = requests.post(url, json=body, headers=headers, timeout=timeout)
    except requests.Timeout:
        raise AgentError(f"POST {path}: no answer from {base_url} within "
                         f"{timeout} s") from None
    except requests.RequestException as e:
        raise AgentError(f"POST {path}: cannot reach {base_url} ({type(e).__name__})") from None
    if resp.status_code >= 400:
        raise ServerError.from_response(resp, "POST", path)
    try:
        doc = resp.json()
    except ValueError:
        raise AgentError(f"POST {path}: the answer ({resp.status_code}) is not JSON") from None
    if not isinstance(doc, dict):
        raise AgentError(f"POST {path}: the answer is not a JSON object")
    return doc


def _require(doc: dict[str, Any], keys: Iterable[str], what: str) -> None:
    missing = [k for k in keys if k not in doc]
    if missing:
        raise AgentError(f"{what}: the answer lacks {', '.join(missing)}")


def _b64decode(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise AgentError(f"{what} is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AgentError(f"{what} is not base64") from None


def _decode_digest(value: Any, what: str) -> bytes:
    """Digests are base64 in signing sessions; lowercase hex is accepted too."""
    if isinstance(value, str) and len(value) in (40, 56, 64, 96, 128):
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    return _b64decode(value, what)


def start_session(base_url: str, api_key: str, record_id: str, role: str,
                  chain_pems: Sequence[str], *,
                  timeout: float | tuple[float, float] = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """POST /v1/records/{id}/signing-sessions -> {session_id, data_to_sign, digest,
    digest_algorithm, expires_at}."""
    path = f"/v1/records/{quote(record_id, safe='')}/signing-sessions"
    doc = _post(base_url, api_key, path,
                {"role": role, "certificate_chain": list(chain_pems)}, timeout=timeout)
    _require(doc, ("session_id", "digest"), f"POST {path}")
    return doc


def complete_session(base_url: str, api_key: str, session_id: str, signature_value: bytes,
                     *, timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
                     ) -> dict[str, Any]:
    """POST /v1/signing-sessions/{id}/complete {signature_value: base64} -> the record."""
    path = f"/v1/signing-sessions/{quote(session_id, safe='')}/complete"
    return _post(base_url, api_key, path,
                 {"signature_value": base64.b64encode(signature_value).decode("ascii")},
                 idempotency_key=f"agent-complete-{session_id}", timeout=timeout)


def start_batch_session(base_url: str, api_key: str, role: str, record_ids: Sequence[str],
                        chain_pems: Sequence[str], *,
                        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
                        ) -> dict[str, Any]:
    """POST /v1/batch-signing-sessions -> {session_id, items: [{record_id, digest, ...}]}."""
    path = "/v1/batch-signing-sessions"
    doc = _post(base_url, api_key, path,
                {"role": role, "certificate_chain": list(chain_pems),
                 "record_ids": list(record_ids)}, timeout=timeout)
    _require(doc, ("session_id", "items"), f"POST {path}")
    if not isinstance(doc["items"], list):
        raise AgentError(f"POST {path}: items is not a list")
    return doc


def complete_batch_session(base_url: str, api_key: str, session_id: str,
                           signatures: dict[str, bytes], *,
                           timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
                           ) -> dict[str, Any]:
    """POST /v1/batch-signing-sessions/{id}/complete {signatures: [{record_id,
    signature_value}]}."""
    path = f"/v1/batch-signing-sessions/{quote(session_id, safe='')}/complete"
    body = {"signatures": [
        {"record_id": rid, "signature_value": base64.b64encode(sig).decode("ascii")}
        for rid, sig in signatures.items()
    ]}
    return _post(base_url, api_key, path, body,
                 idempotency_key=f"agent-complete-{session_id}", timeout=timeout)


@dataclass(frozen=True)
class SignResult:
    record_id: str
    ok: bool
    status: str = ""  # the record's status after signing, when the server says
    code: str = ""
    detail: str = ""

    def line(self) -> str:
        if self.ok:
            return f"{self.record_id}\tsigned" + (f"\t{self.status}" if self.status else "")
        return f"{self.record_id}\tfailed\t{self.code}: {self.detail}"


def _signature_for(token_key: TokenKey, item: dict[str, Any], what: str,
                   default_algorithm: str = "sha256") -> bytes:
    """Sign what the server sent, after checking the digest is the data's digest."""
    algorithm = str(item.get("digest_algorithm") or default_algorithm).lower().replace("-", "")
    if algorithm not in _DIGEST_SIZE or algorithm == "sha1":
        raise AgentError(f"{what}: unsupported digest algorithm {algorithm!r}")
    digest = _decode_digest(item.get("digest"), f"{what}: digest")
    if item.get("data_to_sign") is not None:
        data = _b64decode(item["data_to_sign"], f"{what}: data_to_sign")
        if hashlib.new(algorithm, data).digest() != digest:
            raise AgentError(f"{what}: the digest is not the {algorithm} of data_to_sign; "
                             "refusing to sign")
    signature = token_key.sign_digest(digest, algorithm)
    if not token_key.verify_digest(signature, digest, algorithm):
        raise TokenError(f"{what}: the token's signature does not verify with the "
                         "certificate; the key on the token is not this certificate's key")
    return signature


def _record_status(doc: Any) -> str:
    return str(doc.get("status") or "") if isinstance(doc, dict) else ""


def _batch_results(record_ids: Sequence[str], doc: dict[str, Any]) -> list[SignResult]:
    failed = {str(f.get("record_id")): f for f in doc.get("failed") or []
              if isinstance(f, dict)}
    statuses: dict[str, str] = {}
    for key in ("records", "items", "results"):
        for entry in doc.get(key) or []:
            if isinstance(entry, dict):
                rid = str(entry.get("record_id") or entry.get("id") or "")
                if entry.get("code") and rid not in failed:
                    failed[rid] = entry
                statuses[rid] = _record_status(entry)
    results = []
    for rid in record_ids:
        if rid in failed:
            f = failed[rid]
            results.append(SignResult(rid, False, code=str(f.get("code") or "failed"),
                                      detail=str(f.get("detail") or "")))
        else:
            results.append(SignResult(rid, True, status=statuses.get(rid, "")))
    return results


def sign_records(base_url: str, api_key: str, role: str, record_ids: Sequence[str],
                 token_key: TokenKey, batch: bool = True, *,
                 progress: Callable[[str], None] | None = None,
                 timeout: float | tuple[float, float] = DEFAULT_TIMEOUT) -> list[SignResult]:
    """Sign records with the token: one batch session for several records (batch=True),
    else one session per record. Server errors on single records are reported per record;
    an error starting or completing a batch raises ServerError."""
    record_ids = list(dict.fromkeys(record_ids))
    if not record_ids:
        return []
    chain = token_key.certificate_chain()
    if batch and len(record_ids) > 1:
        started = start_batch_session(base_url, api_key, role, record_ids, chain,
                                      timeout=timeout)
        session_id = str(started["session_id"])
        signatures: dict[str, bytes] = {}
        for item in started["items"]:
            rid = str(item.get("record_id"))
            if rid not in record_ids:
                raise AgentError(f"batch session {session_id}: the server sent record "
                                 f"{rid!r}, which was not asked for; refusing to sign")
            item = {"digest_algorithm": started.get("digest_algorithm"), **item}
            signatures[rid] = _signature_for(token_key, item, f"record {rid}")
            if progress is not None:
                progress(rid)
        done = complete_batch_session(base_url, api_key, session_id, signatures,
                                      timeout=timeout)
        results = _batch_results(list(signatures), done)
        missing = [rid for rid in record_ids if rid not in signatures]
        return results + [SignResult(rid, False, code="not_in_session",
                                     detail="the server gave no digest for this record")
                          for rid in missing]
    results = []
    for rid in record_ids:
        try:
            started = start_session(base_url, api_key, rid, role, chain, timeout=timeout)
            signature = _signature_for(token_key, started, f"record {rid}")
            record = complete_session(base_url, api_key, str(started["session_id"]),
                                      signature, timeout=timeout)
            results.append(SignResult(rid, True, status=_record_status(record)))
        except ServerError as e:
            results.append(SignResult(rid, False, code=e.code, detail=e.detail))
        if progress is not None:
            progress(rid)
    return results


# --------------------------------------------------------------------------- CLI


def _token_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--pkcs11-module", required=True, envvar="HOCBA_AGENT_PKCS11_MODULE",
                     help="the token's PKCS#11 library (.so / .dll)"),
        click.option("--token-label", default=None,
                     help="the token's label (default: the first token with a key)"),
        click.option("--pin-env", default="HOCBA_TOKEN_PIN", show_default=True,
                     help="the environment variable that holds the token PIN"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group()
def agent() -> None:
    """Sign records with a certificate on a USB token (PKCS#11) at the school."""


@agent.command("sign")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True,
              envvar="HOCBA_URL", help="the hocba service")
@click.option("--api-key-env", default="HOCBA_API_KEY", show_default=True,
              help="the environment variable that holds the API key")
@click.option("--role", required=True, help="the role signing (teacher, principal, seal...)")
@click.option("--record", "records", multiple=True, required=True, help="a record id")
@_token_options
@click.option("--cert-label", default=None, help="the certificate's label on the token")
@click.option("--cert-pem", type=click.Path(exists=True, dir_okay=False), default=None,
              help="the signing certificate (and chain) as PEM")
@click.option("--key-label", default=None,
              help="the private key's label, only if it cannot be matched to the certificate")
@click.option("--chain-pem", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="issuer certificates to send with the signing certificate")
@click.option("--batch/--no-batch", default=True, show_default=True,
              help="one batch session for several records")
@click.option("--timeout", type=float, default=DEFAULT_TIMEOUT[1], show_default=True,
              help="seconds to wait for each answer")
def sign_command(url: str, api_key_env: str, role: str, records: tuple[str, ...],
                 pkcs11_module: str, token_label: str | None, pin_env: str,
                 cert_label: str | None, cert_pem: str | None, key_label: str | None,
                 chain_pem: tuple[str, ...], batch: bool, timeout: float) -> None:
    """Sign records: one line per record, exit 1 if any failed."""
    if cert_label and cert_pem:
        raise click.UsageError("--cert-label and --cert-pem exclude each other")
    api_key = os.environ.get(api_key_env, "").strip()
    if not api_key:
        raise click.ClickException(f"put the API key in the environment variable {api_key_env}")
    record_ids = list(dict.fromkeys(records))
    timeouts = (min(DEFAULT_TIMEOUT[0], timeout), timeout)
    try:
        with TokenKey(pkcs11_module, pin_env=pin_env, token_label=token_label,
                      cert_label=cert_label, cert_pem=cert_pem, key_label=key_label,
                      chain_pems=chain_pem) as key:
            click.echo(f"certificate: {_describe(key.certificate)}; key {key.key_label!r} "
                       f"(matched by {key.matched_by})", err=True)
            if batch and len(record_ids) > 1:
                with click.progressbar(length=len(record_ids), label="signing",
                                       file=sys.stderr) as bar:
                    results = sign_records(url, api_key, role, record_ids, key, batch=True,
                                           progress=lambda _rid: bar.update(1),
                                           timeout=timeouts)
            else:
                results = sign_records(url, api_key, role, record_ids, key, batch=batch,
                                       timeout=timeouts)
    except AgentError as e:
        raise click.ClickException(str(e)) from None
    for result in results:
        click.echo(result.line())
    failed = sum(not r.ok for r in results)
    if failed:
        raise click.ClickException(f"{failed} of {len(results)} records not signed")


@agent.command("list-keys")
@_token_options
def list_keys_command(pkcs11_module: str, token_label: str | None, pin_env: str) -> None:
    """List the certificates on the token and whether each has its private key."""
    try:
        with TokenSession(pkcs11_module, pin_env=pin_env, token_label=token_label) as token:
            certs = token.certificates()
            click.echo(f"token {token.token_label!r}: {len(certs)} certificate(s)")
            for c in certs:
                match = token.find_key_for_certificate(c.certificate, c.cka_id or None)
                key = (f"key {match.label!r} (by {match.how})" if match is not None
                       else "no private key")
                click.echo(f"{c.label}\tid={c.cka_id.hex() or '-'}\t{c.subject}\t"
                           f"not after {c.certificate.not_valid_after_utc:%Y-%m-%d}\t{key}")
    except AgentError as e:
        raise click.ClickException(str(e)) from None

