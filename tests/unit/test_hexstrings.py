"""The fast `<hex>` reader behaves exactly like pyHanko's own."""

from __future__ import annotations

import io
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PdfStreamError

from signer.pades import hexstrings


def _read(reader: Any, data: bytes) -> tuple[str, Any, int]:
    stream = io.BytesIO(data)
    try:
        value = reader(stream)
    except PdfStreamError as e:
        return "error", str(e), stream.tell()
    return type(value).__name__, bytes(value.original_bytes), stream.tell()


def _both(data: bytes) -> None:
    assert _read(hexstrings.read_hex_string_from_stream, data) == _read(hexstrings._original, data)


@pytest.mark.parametrize("data", [
    b"<>", b"<0>", b"<48656C6c6F>", b"<48 65\n6c\r\n6c\t6f\x00>", b"<4865 6>/Next 1",
    b"<3082" + b"00" * 40_000 + b">trailing", b"<48%comment\n65>", b"<48 zz>",
    b"<4865", b"<FEFF00480069> >", b"<" + b"ab" * 70_000 + b" " * 5 + b">",
])
def test_same_value_error_and_position_as_pyhanko(data: bytes) -> None:
    _both(data)


def test_reads_a_signature_sized_string_in_one_go() -> None:
    der = bytes(range(256)) * 64
    data = b"<" + der.hex().encode() + b"0" * 4000 + b">"
    value = hexstrings.read_hex_string_from_stream(io.BytesIO(data))
    assert bytes(value.original_bytes) == der + b"\x00" * 2000


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"0", b"7", b"a", b"F", b" ", b"\n", b"\x00", b"%", b"g",
                                 b">", b"<", b"\r\n"]), max_size=60),
       st.binary(max_size=8))
def test_any_input_reads_like_pyhanko(parts: list[bytes], tail: bytes) -> None:
    _both(b"<" + b"".join(parts) + tail)


def test_installed_into_pyhanko() -> None:
    import signer.pades  # noqa: F401  installs it

    assert generic.read_hex_string_from_stream is hexstrings.read_hex_string_from_stream
    obj = generic.read_object(io.BytesIO(b"<4142> "), generic.Reference(1, 0, None))
    assert bytes(obj.original_bytes) == b"AB"
