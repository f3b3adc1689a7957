"""The fast `<hex>` reader behaves exactly like pyHanko's own: compared with plain
pyHanko in another process (tests/unpatched.py), and with pyHanko's reader here."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.misc import PdfStreamError

from signer.fixes import hexstrings
from tests import unpatched


def _read(reader: Any, data: bytes) -> tuple[str, Any, int]:
    stream = io.BytesIO(data)
    try:
        value = reader(stream)
    except PdfStreamError as e:
        return "error", str(e), stream.tell()
    return type(value).__name__, bytes(value.original_bytes), stream.tell()


def _both(data: bytes) -> None:
    assert _read(hexstrings.read_hex_string_from_stream, data) == _read(hexstrings._original, data)


CASES = [
    b"<>", b"<0>", b"<48656C6c6F>", b"<48 65\n6c\r\n6c\t6f\x00>", b"<4865 6>/Next 1",
    b"<3082" + b"00" * 40_000 + b">trailing", b"<48%comment\n65>", b"<48 zz>",
    b"<4865", b"<FEFF00480069> >", b"<" + b"ab" * 70_000 + b" " * 5 + b">",
]
PARTS = [b"0", b"7", b"a", b"F", b" ", b"\n", b"\x00", b"%", b"g", b">", b"<", b"\r\n"]


def _corpus(n: int = 3000) -> list[bytes]:
    rng = random.Random(1234)
    return CASES + [b"<" + b"".join(rng.choice(PARTS) for _ in range(rng.randrange(60)))
                    + rng.randbytes(rng.randrange(8)) for _ in range(n)]


def _as_json(result: tuple[str, Any, int]) -> list[Any]:
    kind, value, pos = result
    return [kind, value.hex() if isinstance(value, bytes) else value, pos]


@pytest.fixture(scope="module")
def plain_pyhanko(tmp_path_factory: pytest.TempPathFactory) -> list[list[Any]]:
    """pyHanko's own reader, unpatched, over the corpus (handed over in a file)."""
    corpus_file = tmp_path_factory.mktemp("hex") / "corpus.json"
    corpus_file.write_text(json.dumps([d.hex() for d in _corpus()]))
    return unpatched.run(f"""
        import io, json
        from pyhanko.pdf_utils import generic
        from pyhanko.pdf_utils.misc import PdfStreamError
        corpus = json.loads(open({str(corpus_file)!r}).read())
        out = []
        for hexed in corpus:
            stream = io.BytesIO(bytes.fromhex(hexed))
            try:
                value = generic.read_hex_string_from_stream(stream)
                out.append([type(value).__name__, bytes(value.original_bytes).hex(),
                            stream.tell()])
            except PdfStreamError as e:
                out.append(["error", str(e), stream.tell()])
        print(json.dumps(out))
    """)


def test_same_as_unpatched_pyhanko_in_another_process(plain_pyhanko: list[list[Any]]) -> None:
    assert generic.read_hex_string_from_stream is hexstrings.read_hex_string_from_stream
    corpus = _corpus()
    assert len(plain_pyhanko) == len(corpus)
    for data, expected in zip(corpus, plain_pyhanko, strict=True):
        assert _as_json(_read(generic.read_hex_string_from_stream, data)) == expected, data[:80]


@pytest.mark.parametrize("data", CASES)
def test_same_value_error_and_position_as_pyhanko(data: bytes) -> None:
    _both(data)


def test_reads_a_signature_sized_string_in_one_go() -> None:
    der = bytes(range(256)) * 64
    data = b"<" + der.hex().encode() + b"0" * 4000 + b">"
    value = hexstrings.read_hex_string_from_stream(io.BytesIO(data))
    assert bytes(value.original_bytes) == der + b"\x00" * 2000


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PARTS), max_size=60),
       st.binary(max_size=8))
def test_any_input_reads_like_pyhanko(parts: list[bytes], tail: bytes) -> None:
    _both(b"<" + b"".join(parts) + tail)


def test_installed_into_pyhanko() -> None:  # by signer.fixes.apply() in tests/conftest.py
    assert generic.read_hex_string_from_stream is hexstrings.read_hex_string_from_stream
    obj = generic.read_object(io.BytesIO(b"<4142> "), generic.Reference(1, 0, None))
    assert bytes(obj.original_bytes) == b"AB"
