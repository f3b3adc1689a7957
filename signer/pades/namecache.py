"""X.509 name comparison with the string preparation done once per value.

Validation compares certificate names constantly (issuer against subject, for every
path, OCSP response and CRL, for every signature and timestamp); asn1crypto prepares
each name value with RFC 4518 LDAP string preparation (pure-Python stringprep) once per
parsed object, and a record's validation parses the same names again and again. This
keeps the prepared form per encoded value for the process: ~20 % of verification CPU
(bench/README.md). Values that fail preparation are never kept: they fail each time."""

from __future__ import annotations

import threading
from typing import Any

from asn1crypto import x509

MAX_VALUES = 50_000
_lock = threading.Lock()
_prepped: dict[bytes, str] = {}


def _prepped_value(self: Any) -> str:
    if self._prepped is None:
        key = self["value"].dump()
        with _lock:
            hit = _prepped.get(key)
        if hit is None:
            hit = self._ldap_string_prep(self["value"].native)
            with _lock:
                if len(_prepped) >= MAX_VALUES:
                    _prepped.clear()
                _prepped[key] = hit
        self._prepped = hit
    return str(self._prepped)


def install() -> None:
    """Make asn1crypto's NameTypeAndValue use the shared cache (idempotent)."""
    x509.NameTypeAndValue.prepped_value = property(_prepped_value)
