"""The client-held PKCS#11 token: log in, find a certificate's private key, sign digests.

The private key is found from its certificate, never from a label guess: tokens issued by
Vietnamese CAs label the key "Private Key" (or similar) and the certificate otherwise. The
key is matched by CKA_ID with the certificate object's CKA_ID, then by public key (RSA
modulus and exponent, or EC point) with the certificate's SubjectPublicKeyInfo; a key
label is used only when the caller names one. The PIN comes from an environment variable
the caller names; it is never stored past the login and never logged or put into an
error message.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
from asn1crypto import core as asn1_core
from cryptography import x509
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_ecdsa_signature

from signer.agent import crypto
from signer.agent.crypto import (
    DIGEST_SIZE,
    describe,
    digest_info,
    load_pem_certificates,
    normalize_algorithm,
    pem,
    public_key_id,
    subject,
)
from signer.agent.errors import AgentError, KeyNotFound, TokenError

log = logging.getLogger("hocba.agent")

# A pkcs11 object (key, certificate); python-pkcs11 builds these classes at run time.
P11Object = Any

_HASH_RSA_MECHANISM = {
    "sha1": Mechanism.SHA1_RSA_PKCS,
    "sha224": Mechanism.SHA224_RSA_PKCS,
    "sha256": Mechanism.SHA256_RSA_PKCS,
    "sha384": Mechanism.SHA384_RSA_PKCS,
    "sha512": Mechanism.SHA512_RSA_PKCS,
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


@dataclass(frozen=True)
class TokenCertificate:
    """A certificate object on the token."""

    label: str
    cka_id: bytes
    certificate: x509.Certificate

    @property
    def subject(self) -> str:
        return crypto.subject(self.certificate)


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
        wanted = public_key_id(cert)
        if cka_id:
            for key in self._objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                      Attribute.ID: cka_id}):
                same = _same_public_key(wanted, _key_public_id(key))
                if same is None:
                    same = self._public_object_matches(cka_id, wanted)
                if same is not False:
                    log.debug("key for %s found by CKA_ID %s", subject(cert), cka_id.hex())
                    return KeyMatch(key, "cka_id")
                log.warning("token %r: the key with CKA_ID %s is not the certificate's key",
                            self.token_label, cka_id.hex())
        for key in self.private_keys():
            if _same_public_key(wanted, _key_public_id(key)):
                log.debug("key for %s found by public key", subject(cert))
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
                    log.debug("key for %s found by public key object", subject(cert))
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
            self._key_type = public_key_id(self.certificate)[0]
        except BaseException:
            self.token.close()
            raise
        log.info("signing with %s: key %r matched by %s", describe(self.certificate),
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
            if _same_public_key(public_key_id(self.certificate),
                                _key_public_id(match.key)) is False:
                raise KeyNotFound(f"the private key labelled {key_label!r} does not belong "
                                  f"to the certificate {describe(self.certificate)}")
            log.warning("key found by label %r only; it could not be checked against the "
                        "certificate before signing", key_label)
            return match
        how = f"CKA_ID {cka_id.hex()} or public key" if cka_id else "public key"
        raise KeyNotFound(f"token {self.token.token_label!r} has no private key matching "
                          f"the certificate {describe(self.certificate)} (by {how}); "
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
        return pem(self.certificate)

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
        return [pem(c) for c in chain]

    # -- signing

    def sign_digest(self, digest: bytes, algorithm: str = "sha256") -> bytes:
        """The signature value over a precomputed digest: RSA PKCS#1 v1.5 (CKM_RSA_PKCS
        over DigestInfo, so it also works on tokens without hash-and-sign mechanisms) or
        DER-encoded ECDSA (CKM_ECDSA)."""
        algorithm = normalize_algorithm(algorithm)
        if self._key_type == "rsa":
            return self._sign(digest_info(digest, algorithm), Mechanism.RSA_PKCS)
        digest_info(digest, algorithm)  # checks the algorithm and size
        return encode_ecdsa_signature(self._sign(digest, Mechanism.ECDSA))

    def sign_data(self, data: bytes, algorithm: str = "sha256") -> bytes:
        """The signature value over the full data: CKM_SHA256_RSA_PKCS (etc.) when the
        token has it, else hashed here and signed as a digest."""
        algorithm = normalize_algorithm(algorithm)
        mechanism = _HASH_RSA_MECHANISM.get(algorithm)
        if self._key_type == "rsa" and mechanism is not None and \
                self.token.supports(mechanism):
            return self._sign(data, mechanism)
        if algorithm not in DIGEST_SIZE:
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
        return crypto.verify_digest(self.certificate, signature, digest, algorithm)

    # -- lifecycle

    def close(self) -> None:
        self.token.close()

    def __enter__(self) -> TokenKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
