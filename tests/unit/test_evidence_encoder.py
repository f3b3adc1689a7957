"""The batch encoder (asn1crypto's TLV encoder around parts asn1crypto encoded) gives the
same bytes as building the evidence record from asn1crypto objects."""

from __future__ import annotations

import hashlib

import pytest
from asn1crypto import cms

from archive.evidence import (
    BatchEncoder,
    EvidenceError,
    HashTree,
    appended_timestamp,
    appended_timestamp_der,
    check_hashes,
    first_record,
    parse,
    renew_hash_tree,
    renew_timestamp,
    renewal_ats,
    replace_last_timestamp,
    timestamp_renewal_value,
    with_validation_data,
)
from tests.unit.ers_tokens import make_tsa


@pytest.fixture(scope="module")
def tsa():  # type: ignore[no-untyped-def]
    return make_tsa()


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64])
@pytest.mark.parametrize("algorithm", ["sha256", "sha512"])
def test_batch_encoder_matches_asn1crypto_objects(tsa, n: int, algorithm: str) -> None:  # type: ignore[no-untyped-def]
    data = [f"object {i}".encode() for i in range(n)]
    tree = HashTree([hashlib.new(algorithm, d).digest() for d in data], algorithm)
    token = cms.ContentInfo.load(tsa.token(tree.root, algorithm).dump())
    encoder = BatchEncoder(algorithm, token)
    batch = list(encoder.records(tree))
    assert len(batch) == n
    for i, d in enumerate(data):
        slow = first_record(algorithm, tree.reduced(i), token).dump()
        assert encoder.record(tree.reduced(i)) == slow
        assert batch[i] == slow
        assert len(check_hashes(parse(batch[i]), d)) == 1


def test_appended_timestamp_matches_asn1crypto_objects(tsa) -> None:  # type: ignore[no-untyped-def]
    data = [f"object {i}".encode() for i in range(5)]
    tree = HashTree([hashlib.sha256(d).digest() for d in data], "sha256")
    token = tsa.token(tree.root, "sha256")
    records = [parse(first_record("sha256", tree.reduced(i), token).dump())
               for i in range(5)]
    # hash-tree renewed first, so the record has two chains and a reduced tree in both
    renewed = []
    leaves = []
    for d, r in zip(data, records, strict=True):
        from archive.evidence import hash_renewal_value
        leaves.append(hash_renewal_value(r, hashlib.sha512(d).digest(), "sha512"))
    tree2 = HashTree(leaves, "sha512")
    token2 = tsa.token(tree2.root, "sha512")
    for i, r in enumerate(records):
        renewed.append(parse(renew_hash_tree(r, "sha512", tree2.reduced(i), token2).dump()))
    last = cms.ContentInfo.load(with_validation_data(
        token2, [tsa.asn1_cert], [tsa.crl()], [tsa.ocsp()]).dump())
    value = timestamp_renewal_value(replace_last_timestamp(renewed[0], last))
    token3 = cms.ContentInfo.load(tsa.token(value, "sha512").dump())
    new_ats = renewal_ats("sha512", token3)
    for d, r in zip(data, renewed, strict=True):
        fast = appended_timestamp(r, last, new_ats)
        slow = renew_timestamp(replace_last_timestamp(r, last), None, token3).dump()
        assert fast == slow
        assert appended_timestamp_der(r.dump(), token2.dump(), last.dump(), new_ats) == slow
        with pytest.raises(EvidenceError):  # not the batch's newest timestamp
            appended_timestamp_der(r.dump(), token.dump(), last.dump(), new_ats)
        assert [p.chain for p in check_hashes(parse(fast), d)] == [0, 1, 1]
