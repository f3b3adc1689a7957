"""X.509 name comparison done once per pair of encoded names.

Validation compares certificate names constantly (issuer against subject, for every
path, OCSP response and CRL, for every signature and timestamp); asn1crypto prepares
each name value with RFC 4518 LDAP string preparation (pure-Python stringprep) once per
parsed object and walks both names for every comparison, and a record's validation
parses the same names again and again (~690 comparisons per record). This keeps, for
the process, each value's prepared form, each name's comparison key and each pair's
answer, keyed by their encodings. Values that fail preparation are never kept: they
fail each time, as with asn1crypto. Measured in bench/README.md.

Installed by `signer.fixes.apply()` only: replaces
`x509.NameTypeAndValue.prepped_value`, `x509.Name.__eq__` and `x509.Name.hashable`.
Upstream proposal: docs/upstream/namecache.md."""

from __future__ import annotations

import threading
from typing import Any

from asn1crypto import x509

from signer.fixes import Fix

MAX_VALUES = 50_000
_lock = threading.Lock()
_prepped: dict[bytes, str] = {}
_equal: dict[tuple[bytes, bytes], bool] = {}
_hashable: dict[bytes, str] = {}
_ORIGINAL_EQ = x509.Name.__eq__
_ORIGINAL_HASHABLE = x509.Name.hashable


def _prepped_value(self: Any) -> str:
    if self._prepped is None:
        key = self["value"].dump()
        with _lock:
            hit = _prepped.get(key)
        if hit is None:
            hit = self._ldap_string_prep(self["value"].native)
            _remember(_prepped, key, hit)
        self._prepped = hit
    return str(self._prepped)


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    with _lock:
        if len(cache) >= MAX_VALUES:
            cache.clear()
        cache[key] = value


def _name_eq(self: Any, other: Any) -> bool:
    if not isinstance(other, x509.Name):
        return False
    a, b = self.dump(), other.dump()
    if a == b:
        _hashable_of(self, a)  # prepares every value: raises for invalid ones, as asn1crypto
        return True
    key = (a, b) if a < b else (b, a)
    hit = _equal.get(key)
    if hit is None:
        hit = bool(_ORIGINAL_EQ(self, other))
        _remember(_equal, key, hit)
    return hit


def _name_hashable(self: Any) -> str:
    return _hashable_of(self, self.dump())


def _hashable_of(self: Any, key: bytes) -> str:
    hit = _hashable.get(key)
    if hit is None:
        hit = str(_ORIGINAL_HASHABLE.fget(self))
        _remember(_hashable, key, hit)
    return hit


def install() -> None:
    """Make asn1crypto's name comparison use the shared caches (idempotent)."""
    x509.NameTypeAndValue.prepped_value = property(_prepped_value)
    x509.Name.__eq__ = _name_eq
    x509.Name.hashable = property(_name_hashable)


FIX = Fix(name="namecache", library="asn1crypto", versions=("1.5.1",), install=install)
