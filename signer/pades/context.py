"""Long-lived signing services: the TSA client, trust anchors, and revocation data
(OCSP responses, CRLs) reused across documents for `revocation_cache_seconds`.

Each check gets a fresh validation context (its own clock), seeded with what was
fetched earlier for the same certificate: a class of 40 records fetches once, and each
document embeds only the revocation data of its own certificates. A certificate's
validated path (chain to the anchor, revocation checked) is kept as long as the
revocation data it was checked with."""

from __future__ import annotations

import functools
import ssl
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import certifi
from asn1crypto import x509
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend
from pyhanko_certvalidator.path import ValidationPath

from signer.errors import ConfigError
from signer.truststore import SIGNING, TrustStore, load_trust


class TsaClient(HTTPTimeStamper):
    """pyHanko's HTTP timestamp client with one TLS context per process: pyHanko makes a
    new one for every request (loading certifi's CA bundle: ~15 ms of CPU each)."""

    @asynccontextmanager
    async def _acquire_session(self) -> AsyncIterator[aiohttp.ClientSession]:
        connector = aiohttp.TCPConnector(ssl=_tls_context())
        async with aiohttp.ClientSession(connector=connector) as session:
            yield session


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


class SigningServices:
    def __init__(self, *, tsa_url: str, trust_anchors: list[Path], font_path: Path,
                 revocation_cache_seconds: int = 600, timeout: int = 20) -> None:
        if not font_path.is_file():
            raise ConfigError(f"stamp font {font_path} not found (install fonts-noto-core)")
        self.trust: TrustStore = load_trust(trust_anchors)
        if not self.trust:
            raise ConfigError("no trust anchor configured")
        self.timestamper = TsaClient(tsa_url, timeout=timeout)
        self.tsa_url = tsa_url
        self._font_source = font_path
        self._font: tuple[Any, Any] | None = None  # (StampFont, HarfBuzz face)
        self._cache_seconds = revocation_cache_seconds
        self._timeout = timeout
        self._lock = threading.Lock()
        self._revinfo: dict[str, tuple[float, list[Any], list[Any]]] = {}
        self._paths: dict[str, tuple[float, ValidationPath]] = {}
        self._reserved: dict[str, int] = {}

    def font_factory(self, size: int = 8) -> Any:
        """A pyHanko font engine factory over the stamp font (prepared on first use:
        verification never needs it)."""
        import uharfbuzz as hb

        from signer.pades.fonts import prepare_stamp_font, stamp_font_factory

        with self._lock:
            if self._font is None:
                font = prepare_stamp_font(self._font_source)
                self._font = (font, hb.Face(font.shaping))
            font, face = self._font
        return stamp_font_factory(font, face, size)

    def validation_context(self, cache_key: str | None = None,
                           purpose: str | None = None) -> ValidationContext:
        """A fresh context, seeded with the cached revocation data for `cache_key` while
        it is younger than `revocation_cache_seconds`; anchors for `purpose` (default:
        every anchor), each only while it is trusted."""
        with self._lock:
            entry = self._revinfo.get(cache_key) if cache_key is not None else None
        if entry and time.monotonic() - entry[0] <= self._cache_seconds:
            return self._context(entry[1], entry[2], purpose)
        return self._context([], [], purpose)

    def revinfo_context(self, cache_keys: list[str]) -> ValidationContext:
        """A fresh context holding the cached revocation data of every key, the newest
        response per scope only (each key fetched its own copy of a shared CA's CRL)."""
        ocsps: list[Any] = []
        crls: list[Any] = []
        with self._lock:
            for key in cache_keys:
                entry = self._revinfo.get(key)
                if entry:
                    ocsps += entry[1]
                    crls += entry[2]
        return self._context(newest_ocsps(ocsps), newest_crls(crls))

    def _context(self, ocsps: list[Any], crls: list[Any],
                 purpose: str | None = None) -> ValidationContext:
        anchors = self.trust.for_purpose(purpose) if purpose else self.trust.all_anchors()
        return ValidationContext(
            trust_roots=anchors,
            allow_fetching=True,
            revocation_mode="hard-fail",
            fetcher_backend=RequestsFetcherBackend(per_request_timeout=self._timeout),
            ocsps=ocsps,
            crls=crls,
        )

    async def validated_path(self, cert: x509.Certificate,
                             intermediates: list[x509.Certificate], *,
                             purpose: str = SIGNING) -> ValidationPath:
        """`cert`'s path to a trust anchor, revocation checked (hard-fail), reused for
        `revocation_cache_seconds` together with the revocation data it was checked
        with. Raises pyhanko_certvalidator's errors."""
        key = cache_key(cert)
        with self._lock:
            hit = self._paths.get(key)
        if hit is not None and time.monotonic() - hit[0] <= self._cache_seconds:
            return hit[1]
        # only anchors trusted for the purpose (signers' or TSAs' CAs), and trusted now
        checked = self.validation_context(key, purpose=purpose)
        validator = CertificateValidator(cert, intermediate_certs=intermediates,
                                         validation_context=checked)
        path = await validator.async_validate_path()
        now = time.monotonic()
        with self._lock:
            self._revinfo[key] = (now, list(checked.ocsps), list(checked.crls))
            self._paths[key] = (now, path)
        return path

    # -- signature container sizes, learnt per signer certificate ------------------------

    RESERVE_MARGIN = 64  # bytes: TSA tokens (serial, nonce, genTime) vary by a few

    def reserved_size(self, cache_key: str | None) -> int | None:
        """Hex characters to reserve for /Contents, or None (let pyHanko estimate)."""
        with self._lock:
            size = self._reserved.get(cache_key) if cache_key else None
        return 2 * (size + self.RESERVE_MARGIN) if size else None

    def remember_reserved_size(self, cache_key: str, der_length: int | None) -> None:
        if der_length:
            with self._lock:
                self._reserved[cache_key] = max(der_length, self._reserved.get(cache_key, 0))

    def forget_reserved_size(self, cache_key: str | None) -> None:
        with self._lock:
            self._reserved.pop(cache_key or "", None)


def newest_crls(crls: list[Any]) -> list[Any]:
    """One CRL per scope (issuer, issuing distribution point, base or delta): the one
    issued last. Validators try every CRL they are given, each with its issuer's path
    and that path's own revocation checks, so copies multiply a verification's work."""
    newest: dict[tuple[bytes, ...], Any] = {}
    for c in crls:
        tbs = c["tbs_cert_list"]
        idp = c.issuing_distribution_point_value
        scope = (tbs["issuer"].dump(), idp.dump() if idp is not None else b"",
                 b"delta" if c.delta_crl_indicator_value is not None else b"base")
        kept = newest.get(scope)
        if kept is None or (tbs["this_update"].native
                            > kept["tbs_cert_list"]["this_update"].native):
            newest[scope] = c
    return list(newest.values())


def newest_ocsps(responses: list[Any]) -> list[Any]:
    """One OCSP response per set of certificates it answers for: the one produced last."""
    newest: dict[tuple[bytes, ...], Any] = {}
    for r in responses:
        data = r.basic_ocsp_response["tbs_response_data"]
        scope = tuple(sorted(s["cert_id"].dump() for s in data["responses"]))
        kept = newest.get(scope)
        if kept is None or (data["produced_at"].native > kept.basic_ocsp_response[
                "tbs_response_data"]["produced_at"].native):
            newest[scope] = r
    return list(newest.values())


def cache_key(cert: x509.Certificate) -> str:
    """Revocation data and validated paths are kept per certificate."""
    return str(cert.sha256.hex())
