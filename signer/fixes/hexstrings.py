"""A faster reader for PDF `<hex>` strings, installed into pyHanko.

pyHanko reads a hex string one byte at a time through Python calls; a signature's
/Contents is 16-32 KB of hex, so every read of a signature dictionary cost 10-30 ms
(measured in bench/README.md). This reader takes the run up to `>` in one read and
decodes it in C. Anything but hex digits and whitespace in the run (a comment, a bad
token, no `>` at all) goes to pyHanko's own reader, which keeps its behaviour and its
errors.

Installed by `signer.fixes.apply()` only: replaces
`pyhanko.pdf_utils.generic.read_hex_string_from_stream`. Upstream proposal:
docs/upstream/hexstrings.md."""

from __future__ import annotations

import binascii
import os
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PDF_WHITESPACE

from signer.fixes import Fix

HEX_DIGITS = b"0123456789abcdefABCDEF"
CHUNK = 1 << 16

_original = generic.read_hex_string_from_stream


def read_hex_string_from_stream(stream: Any) -> Any:
    start = stream.tell()
    stream.read(1)  # "<"
    chunks: list[bytes] = []
    while True:
        chunk = stream.read(CHUNK)
        if not chunk:
            break
        end = chunk.find(b">")
        if end >= 0:
            chunks.append(chunk[:end])
            run = b"".join(chunks)
            digits = run.translate(None, PDF_WHITESPACE)
            if digits.translate(None, HEX_DIGITS):
                break  # not only hex digits: pyHanko's reader decides
            stream.seek(start + 1 + len(run) + 1, os.SEEK_SET)
            if len(digits) % 2:
                digits += b"0"
            return generic.pdf_string(binascii.unhexlify(digits))
        chunks.append(chunk)
    stream.seek(start, os.SEEK_SET)
    return _original(stream)


def install() -> None:
    """Make pyHanko's object reader use the fast hex string reader (idempotent)."""
    generic.read_hex_string_from_stream = read_hex_string_from_stream


FIX = Fix(name="hexstrings", library="pyHanko", versions=("0.38.0",), install=install)
