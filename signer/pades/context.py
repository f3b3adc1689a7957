"""Long-lived signing services: the TSA client, trust anchors, and revocation data
(OCSP responses, CRLs) reused across documents for `revocation_cache_seconds`.

Each signature gets a fresh validation context (its own clock), seeded with what was
fetched earlier for the same signer certificate: a class of 40 records fetches once,
and each document embeds only the revocation data of its own certificates."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from asn1crypto import x509
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

from signer.errors import ConfigError
from signer.keys.base import load_chain
from signer.pades.fonts import vietnamese_subset


class SigningServices:
    def __init__(self, *, tsa_url: str, trust_anchors: list[Path], font_path: Path,
                 revocation_cache_seconds: int = 600, timeout: int = 20) -> None:
        if not font_path.is_file():
            raise ConfigError(f"stamp font {font_path} not found (install fonts-noto-core)")
        self.trust_roots: list[x509.Certificate] = load_chain(trust_anchors)
        self.timestamper = HTTPTimeStamper(tsa_url, timeout=timeout)
        self.tsa_url = tsa_url
        self._font_source = font_path
        self._font_path: str | None = None  # the Vietnamese subset, made on first use
        self._cache_seconds = revocation_cache_seconds
        self._timeout = timeout
        self._lock = threading.Lock()
        self._revinfo: dict[str, tuple[float, list[Any], list[Any]]] = {}
        self._reserved: dict[str, int] = {}

    def font_factory(self, size: int = 8) -> Any:
        """A pyHanko GlyphAccumulatorFactory over the stamp font."""
        from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
        with self._lock:  # made when the first stamp needs it: verification never does
            if self._font_path is None:
                self._font_path = str(vietnamese_subset(self._font_source))
            path = self._font_path
        return GlyphAccumulatorFactory(path, font_size=size)

    def validation_context(self, cache_key: str | None = None) -> ValidationContext:
        """A fresh context, seeded with the cached revocation data for `cache_key`."""
        ocsps: list[Any] = []
        crls: list[Any] = []
        if cache_key is not None:
            with self._lock:
                entry = self._revinfo.get(cache_key)
                if entry and time.monotonic() - entry[0] <= self._cache_seconds:
                    _, ocsps, crls = entry
        return ValidationContext(
            trust_roots=self.trust_roots,
            allow_fetching=True,
            revocation_mode="hard-fail",
            fetcher_backend=RequestsFetcherBackend(per_request_timeout=self._timeout),
            ocsps=ocsps,
            crls=crls,
        )

    def remember(self, cache_key: str, vc: ValidationContext) -> None:
        """Keep what `vc` holds for the next document of the same signer."""
        with self._lock:
            entry = self._revinfo.get(cache_key)
            if entry and time.monotonic() - entry[0] <= self._cache_seconds:
                return
            self._revinfo[cache_key] = (time.monotonic(), list(vc.ocsps), list(vc.crls))

    # -- signature container sizes, learnt per signer certificate ------------------------

    RESERVE_MARGIN = 2048  # bytes: TSA tokens and signed attributes vary a little

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
