"""asn1crypto re-encodes a value whose definite length ends in 0x80 (it takes it for the
indefinite form); with the fix its bytes stay as they are, and a real indefinite length
is still normalised. The unfixed behaviour is shown in a plain interpreter."""

from __future__ import annotations

from asn1crypto import core

from signer.fixes import apply, lengthbyte
from tests import unpatched


class Flag(core.Sequence):
    _fields = [("flag", core.Boolean), ("pad", core.OctetString)]  # noqa: RUF012


def not_der(content_length: int) -> bytes:
    """A SEQUENCE with BOOLEAN TRUE encoded as 0x01 (valid BER, not DER) and padding."""
    boolean = b"\x01\x01\x01"
    pad_len = content_length - len(boolean) - 3
    pad = b"\x04\x81" + bytes([pad_len]) + b"p" * pad_len
    body = boolean + pad
    assert len(body) == content_length
    return b"\x30\x81" + bytes([len(body)]) + body


SNIPPET = """
import json
from asn1crypto import core

class Flag(core.Sequence):
    _fields = [("flag", core.Boolean), ("pad", core.OctetString)]

def not_der(n):
    boolean = b"\\x01\\x01\\x01"
    pad_len = n - len(boolean) - 3
    body = boolean + b"\\x04\\x81" + bytes([pad_len]) + b"p" * pad_len
    return b"\\x30\\x81" + bytes([len(body)]) + body

print(json.dumps({str(n): Flag.load(not_der(n)).dump().hex() for n in (0x7F + 2, 0x80)}))
"""


def test_unfixed_asn1crypto_reencodes_a_length_ending_in_0x80() -> None:
    got = unpatched.run(SNIPPET)
    assert bytes.fromhex(got["129"]) == not_der(129)  # untouched
    assert bytes.fromhex(got["128"]) != not_der(128)  # re-encoded: 0x01 became 0xFF
    assert b"\x01\x01\xff" in bytes.fromhex(got["128"])


def test_fixed_dump_keeps_the_bytes() -> None:
    apply()
    for n in (128, 129, 200):
        data = not_der(n)
        assert Flag.load(data).dump() == data
    # a long form ending in 0x80 at two octets (896 bytes)
    long = core.OctetString(b"x" * 0x380)
    assert long.dump()[:4] == b"\x04\x82\x03\x80"
    assert core.OctetString.load(long.dump()).dump() == long.dump()


def test_real_indefinite_length_is_still_normalised() -> None:
    apply()
    indefinite = b"\x30\x80" + b"\x01\x01\xff" + b"\x00\x00"
    assert lengthbyte.is_indefinite(indefinite[:2])
    assert Flag.load(b"\x30\x80\x01\x01\xff\x04\x00\x00\x00").dump() == (
        b"\x30\x05\x01\x01\xff\x04\x00")


def test_is_indefinite_reads_the_length_octet() -> None:
    assert lengthbyte.is_indefinite(b"\x30\x80")
    assert not lengthbyte.is_indefinite(b"\x30\x81\x80")
    assert not lengthbyte.is_indefinite(b"\x04\x82\x03\x80")
    assert lengthbyte.is_indefinite(b"\xbf\x81\x01\x80")  # high tag number, indefinite
    assert not lengthbyte.is_indefinite(b"\xbf\x81\x01\x81\x80")
