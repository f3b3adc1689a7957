"""Name comparison with shared string preparation: same answers as asn1crypto's own,
computed by unpatched asn1crypto in another process (tests/unpatched.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from asn1crypto import x509

from signer.fixes import namecache
from signer.keys.base import load_chain
from tests import unpatched


def names(test_state: Path) -> list[x509.Name]:
    pki = test_state / "pki" / "certs"
    certs = load_chain(sorted(pki.glob("*.pem")))
    built = [x509.Name.build(d) for d in (
        {"common_name": "Trường Tiểu học Nguyễn Du", "country_name": "VN"},
        {"common_name": "  TRƯỜNG   tiểu HỌC nguyễn du ", "country_name": "vn"},
        {"common_name": "Nguyễn Thị Hoa", "organizational_unit_name": "Giáo viên"},
        {"common_name": "Nguye\u0302\u0303n Thị Hoa", "organizational_unit_name": "Giáo viên"},
        {"common_name": "Nguyên Thị Hoa", "organizational_unit_name": "Giáo viên"},
    )]
    return [c.subject for c in certs] + [c.issuer for c in certs] + built


def reparsed(name: x509.Name) -> x509.Name:
    return x509.Name.load(name.dump())  # a new object: nothing prepared on it yet


def plain_asn1crypto(encoded: list[bytes]) -> dict[str, list[object]]:
    """Every pair's equality and every name's hashable form by unpatched asn1crypto."""
    return unpatched.run(f"""
        import itertools, json
        from asn1crypto import x509
        names = [bytes.fromhex(h) for h in {[e.hex() for e in encoded]!r}]
        pairs = itertools.product(range(len(names)), repeat=2)
        print(json.dumps({{
            "equal": [x509.Name.load(names[i]) == x509.Name.load(names[j]) for i, j in pairs],
            "hashable": [x509.Name.load(n).hashable for n in names]}}))
    """)


def test_same_equality_as_asn1crypto(test_state: Path) -> None:
    all_names = names(test_state)
    pairs = list(itertools.product(range(len(all_names)), repeat=2))

    namecache.install()
    assert x509.Name.__eq__ is namecache._name_eq
    cached = [reparsed(all_names[i]) == reparsed(all_names[j]) for i, j in pairs]
    again = [reparsed(all_names[i]) == reparsed(all_names[j]) for i, j in pairs]  # from cache
    hashables = [reparsed(n).hashable for n in all_names]

    plain = plain_asn1crypto([n.dump() for n in all_names])
    assert cached == again == plain["equal"]
    assert hashables == plain["hashable"]
    assert any(cached) and not all(cached)  # both answers occur
    # RFC 5280/4518 comparison: case, inner spaces and Unicode normal forms do not
    # matter; a different letter does
    assert reparsed(all_names[-5]) == reparsed(all_names[-4])
    assert reparsed(all_names[-3]) == reparsed(all_names[-2])
    assert reparsed(all_names[-3]) != reparsed(all_names[-1])


def test_invalid_values_fail_every_time() -> None:
    namecache.install()
    bad = x509.Name.build({"common_name": "bad \ufffd name"})
    for _ in range(2):
        with pytest.raises(ValueError):
            _ = reparsed(bad) == reparsed(bad)
    plain = unpatched.run(f"""
        import json
        from asn1crypto import x509
        bad = bytes.fromhex({bad.dump().hex()!r})
        try:
            x509.Name.load(bad) == x509.Name.load(bad)
            print(json.dumps("equal"))
        except ValueError:
            print(json.dumps("ValueError"))
    """)
    assert plain == "ValueError"  # as asn1crypto does
