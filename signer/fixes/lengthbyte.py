"""asn1crypto takes a definite length whose last octet is 0x80 for an indefinite one.

Each `dump()` of asn1crypto 1.5.1 (Asn1Value, Choice, Primitive, Sequence, SequenceOf)
re-encodes a value from its parsed fields when `self._header[-1:] == b'\\x80'`, meant to
catch the indefinite-length form (length octet 0x80). A long-form definite length such
as `81 80` (128 bytes) or `82 03 80` (896 bytes) ends with 0x80 too, so about one
structure in 256 is re-encoded on every dump: a value that is not DER changes its bytes,
and the re-encoding is not thread-safe (an `x509.URI` is cleared and set again; a second
thread dumping the same parsed certificate reads `None` and raises TypeError — seen as
a 500 under gunicorn threads when a dev certificate's length happened to end in 0x80).

This fix drops such a header before the library's `dump` runs, so the header is made
again from the unchanged contents (the same bytes) and nothing is re-encoded. A real
indefinite length (the length octet right after the tag is 0x80) is left to the
library. Installed by `signer.fixes.apply()` only. Upstream proposal:
docs/upstream/lengthbyte.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asn1crypto import core

from signer.fixes import Fix

CLASSES = (core.Asn1Value, core.Choice, core.Primitive, core.Sequence, core.SequenceOf)
_originals: dict[type, Callable[..., bytes]] = {}


def is_indefinite(header: bytes) -> bool:
    """Whether a BER header (tag and length octets) has the indefinite length form."""
    at = 1
    if header[0] & 0x1F == 0x1F:  # high tag number: base-128 octets follow
        while at < len(header) and header[at] & 0x80:
            at += 1
        at += 1
    return at < len(header) and header[at] == 0x80


def _fixed(original: Callable[..., bytes]) -> Callable[..., bytes]:
    def dump(self: Any, force: bool = False) -> bytes:
        header = self._header
        if header is not None and header[-1:] == b"\x80" and not is_indefinite(header):
            self._header = None  # made again from the contents: the same octets
        return original(self, force)

    dump.__doc__ = original.__doc__
    dump.__wrapped__ = original  # type: ignore[attr-defined]
    return dump


def install() -> None:
    """Wrap the five `dump` methods that carry the check (idempotent)."""
    for cls in CLASSES:
        if cls not in _originals:
            _originals[cls] = cls.__dict__["dump"]
            cls.dump = _fixed(_originals[cls])


FIX = Fix(name="lengthbyte", library="asn1crypto", versions=("1.5.1",), install=install)
