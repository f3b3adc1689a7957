"""archive.evidence.records: evidence records made, renewed, parsed and checked, with
timestamp tokens from a local DummyTimeStamper."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import random
from dataclasses import dataclass

import pytest
from asn1crypto import cms, core, parser
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data

from archive.evidence import (
    EvidenceError,
    EvidenceRecord,
    HashTree,
    check_hashes,
    first_record,
    hash_renewal_value,
    parse,
    renew_hash_tree,
    renew_timestamp,
    replace_last_timestamp,
    timestamp_renewal_value,
    tst_info,
    with_validation_data,
)
from tests.unit.ers_tokens import LocalTsa, make_tsa

DATA = [f"học bạ {i}".encode() for i in range(5)]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha512(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


@dataclass
class Batch:
    """Five objects under one timestamp, then renewed: timestamp twice, hash tree to
    sha512 (one tree over the five renewal values), and timestamp once more."""

    fresh: list[EvidenceRecord]
    renewed: list[EvidenceRecord]      # + 1 timestamp renewal
    renewed2: list[EvidenceRecord]     # + 2 timestamp renewals
    rehashed: list[EvidenceRecord]     # renewed2 + hash-tree renewal (sha512)
    rehashed_renewed: list[EvidenceRecord]  # + 1 timestamp renewal in the sha512 chain


@pytest.fixture(scope="module")
def tsa() -> LocalTsa:
    return make_tsa()


@pytest.fixture(scope="module")
def batch(tsa: LocalTsa) -> Batch:
    tree = HashTree([sha256(d) for d in DATA], "sha256")
    token = tsa.token(tree.root)
    fresh = [first_record("sha256", tree.reduced(i), token) for i in range(len(DATA))]
    # All five share their last timestamp, so one renewal token serves them all.
    t1 = tsa.token(timestamp_renewal_value(fresh[0]))
    renewed = [renew_timestamp(r, None, t1) for r in fresh]
    t2 = tsa.token(timestamp_renewal_value(renewed[0]))
    renewed2 = [renew_timestamp(r, None, t2) for r in renewed]
    values = [hash_renewal_value(r, sha512(d), "sha512") for r, d in zip(renewed2, DATA,
                                                                         strict=True)]
    tree512 = HashTree(values, "sha512")
    t3 = tsa.token(tree512.root, "sha512")
    rehashed = [renew_hash_tree(r, "sha512", tree512.reduced(i), t3)
                for i, r in enumerate(renewed2)]
    t4 = tsa.token(timestamp_renewal_value(rehashed[0]), "sha512")
    rehashed_renewed = [renew_timestamp(r, None, t4) for r in rehashed]
    return Batch(fresh, renewed, renewed2, rehashed, rehashed_renewed)


def reparsed(record: EvidenceRecord) -> EvidenceRecord:
    der = record.dump()
    again = parse(der)
    assert again.dump() == der
    return again


def with_reduced(record: EvidenceRecord, reduced: list[list[bytes]]) -> EvidenceRecord:
    ats = record["archive_time_stamp_sequence"][0][0]
    return first_record("sha256", reduced, ats["time_stamp"])


# -- made and renewed -----------------------------------------------------------------

def test_fresh_records(batch: Batch) -> None:
    for record, data in zip(batch.fresh, DATA, strict=True):
        proven = check_hashes(reparsed(record), data)
        assert [(p.chain, p.position, p.algorithm) for p in proven] == [(0, 0, "sha256")]
        assert proven[0].gen_time == tst_info(proven[0].token)["gen_time"].native
        assert record["version"].native == "v1"
        assert record["digest_algorithms"].native == [{"algorithm": "sha256",
                                                       "parameters": None}]


def test_timestamp_renewed_records(batch: Batch) -> None:
    for r1, r2, data in zip(batch.renewed, batch.renewed2, DATA, strict=True):
        assert [(p.chain, p.position) for p in check_hashes(reparsed(r1), data)] == [
            (0, 0), (0, 1)]
        proven = check_hashes(reparsed(r2), data)
        assert [(p.chain, p.position) for p in proven] == [(0, 0), (0, 1), (0, 2)]
        assert proven[0].gen_time <= proven[1].gen_time <= proven[2].gen_time


def test_hash_renewed_records(batch: Batch) -> None:
    for r3, r4, data in zip(batch.rehashed, batch.rehashed_renewed, DATA, strict=True):
        again = reparsed(r3)
        assert [a["algorithm"].native for a in again["digest_algorithms"]] == [
            "sha256", "sha512"]
        proven = check_hashes(again, data)
        assert [(p.chain, p.position, p.algorithm) for p in proven] == [
            (0, 0, "sha256"), (0, 1, "sha256"), (0, 2, "sha256"), (1, 0, "sha512")]
        proven = check_hashes(reparsed(r4), data)
        assert [(p.chain, p.position, p.algorithm) for p in proven] == [
            (0, 0, "sha256"), (0, 1, "sha256"), (0, 2, "sha256"), (1, 0, "sha512"),
            (1, 1, "sha512")]
        # The object's hashes may be given instead of its bytes...
        assert len(check_hashes(r4, {"sha256": sha256(data), "sha512": sha512(data)})) == 5
        # ...but every algorithm the record uses is needed.
        with pytest.raises(EvidenceError, match="no sha512 hash"):
            check_hashes(r4, {"sha256": sha256(data)})


# -- refused --------------------------------------------------------------------------

def test_other_data_is_refused(batch: Batch) -> None:
    for records in (batch.fresh, batch.renewed2, batch.rehashed, batch.rehashed_renewed):
        with pytest.raises(EvidenceError, match="chain 0, timestamp 0 does not cover"):
            check_hashes(records[0], DATA[1] + b"!")
        with pytest.raises(EvidenceError):
            check_hashes(records[0], b"")
    # A neighbour's data is not this record's object either, except that a reduced
    # tree proves both values of its first list (RFC 4998 section 4.3 step 2).
    with pytest.raises(EvidenceError):
        check_hashes(batch.fresh[0], DATA[2])
    assert check_hashes(batch.fresh[0], DATA[1])


def test_a_tampered_reduced_tree_is_refused(batch: Batch) -> None:
    ats = batch.fresh[0]["archive_time_stamp_sequence"][0][0]
    reduced = [list(v.native) for v in ats["reduced_hashtree"]]
    assert len(reduced) == 3
    for a, level in enumerate(reduced):
        for b in range(len(level)):
            bad = [list(v) for v in reduced]
            bad[a][b] = bytes([bad[a][b][0] ^ 0x80]) + bad[a][b][1:]
            record = parse(with_reduced(batch.fresh[0], bad).dump())
            with pytest.raises(EvidenceError, match="does not cover the object"):
                check_hashes(record, DATA[0])
    # Dropping a level, or all of it.
    with pytest.raises(EvidenceError):
        check_hashes(parse(with_reduced(batch.fresh[0], reduced[:-1]).dump()), DATA[0])
    none = first_record("sha256", None, ats["time_stamp"])
    with pytest.raises(EvidenceError):
        check_hashes(parse(none.dump()), DATA[0])


def test_a_renewal_over_the_wrong_value_is_refused(tsa: LocalTsa, batch: Batch) -> None:
    record = batch.fresh[0]
    wrong = renew_timestamp(record, None, tsa.token(sha256(b"not the last timestamp")))
    with pytest.raises(EvidenceError, match="timestamp 1 does not cover the previous"):
        check_hashes(parse(wrong.dump()), DATA[0])
    # Over the first ATS's token when a later one is the last: refused too.
    second = renew_timestamp(batch.renewed[0], None,
                             tsa.token(timestamp_renewal_value(batch.fresh[0])))
    with pytest.raises(EvidenceError, match="chain 0, timestamp 2 does not cover"):
        check_hashes(second, DATA[0])


def test_a_second_chain_must_cover_the_first_chains(tsa: LocalTsa, batch: Batch) -> None:
    # Over a neighbour's chains (hash_renewal_value of another record), with our data.
    value = hash_renewal_value(batch.renewed2[1], sha512(DATA[0]), "sha512")
    record = renew_hash_tree(batch.renewed2[0], "sha512", None, tsa.token(value, "sha512"))
    with pytest.raises(EvidenceError, match="chain 1, timestamp 0 does not cover the object"):
        check_hashes(parse(record.dump()), DATA[0])
    # Over our chains but another object's hash.
    value = hash_renewal_value(batch.renewed2[0], sha512(DATA[1]), "sha512")
    record = renew_hash_tree(batch.renewed2[0], "sha512", None, tsa.token(value, "sha512"))
    with pytest.raises(EvidenceError, match="chain 1, timestamp 0"):
        check_hashes(record, DATA[0])
    # Over our chains with the old algorithm's hash of the object.
    value = hash_renewal_value(batch.renewed2[0], sha256(DATA[0]), "sha512")
    record = renew_hash_tree(batch.renewed2[0], "sha512", None, tsa.token(value, "sha512"))
    with pytest.raises(EvidenceError, match="chain 1, timestamp 0"):
        check_hashes(record, DATA[0])


def test_an_algorithm_change_within_a_chain_is_refused(tsa: LocalTsa, batch: Batch) -> None:
    # A timestamp renewal whose token hashes with sha512 in a sha256 chain.
    value = hashlib.sha512(batch.fresh[0]["archive_time_stamp_sequence"][0][0]
                           ["time_stamp"].dump()).digest()
    record = renew_timestamp(batch.fresh[0], None, tsa.token(value, "sha512"))
    with pytest.raises(EvidenceError, match="imprint is not sha256"):
        check_hashes(record, DATA[0])


def test_a_renewal_older_than_what_it_renews_is_refused(tsa: LocalTsa, batch: Batch) -> None:
    past = DummyTimeStamper(tsa_cert=tsa.asn1_cert, tsa_key=tsa.stamper.tsa_key,
                            fixed_dt=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
    old = asyncio.run(past.async_timestamp(timestamp_renewal_value(batch.fresh[0]), "sha256"))
    record = renew_timestamp(batch.fresh[0], None, old)
    with pytest.raises(EvidenceError, match="older than the one it renews"):
        check_hashes(record, DATA[0])


def test_records_without_timestamps_are_refused() -> None:
    empty = EvidenceRecord({"version": "v1", "digest_algorithms": [{"algorithm": "sha256"}],
                            "archive_time_stamp_sequence": []})
    with pytest.raises(EvidenceError, match="without archive timestamps"):
        parse(empty.dump())
    empty_chain = EvidenceRecord({"version": "v1",
                                  "digest_algorithms": [{"algorithm": "sha256"}],
                                  "archive_time_stamp_sequence": [[]]})
    with pytest.raises(EvidenceError, match="without archive timestamps"):
        parse(empty_chain.dump())


GARBAGE = [b"", b"\x00", b"\x30", b"\x30\x00", b"\x30\x03\x02\x01\x01", b"not DER at all",
           b"\x30\x80\x00\x00", bytes(range(256))]


@pytest.mark.parametrize("der", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_an_evidence_error(der: bytes) -> None:
    with pytest.raises(EvidenceError):
        parse(der)


def test_other_der_is_an_evidence_error(batch: Batch) -> None:
    token = batch.fresh[0]["archive_time_stamp_sequence"][0][0]["time_stamp"]
    der = batch.rehashed[0].dump()
    for other in (token.dump(), der[:-1], der + b"\x00", der[:len(der) // 2]):
        with pytest.raises(EvidenceError):
            parse(other)


def test_corrupted_records_fail_only_with_evidence_error(batch: Batch) -> None:
    """One byte changed anywhere in a DER record: parse + check_hashes either refuse with
    EvidenceError or (in bytes that the hash checks do not read, such as the token's
    signature) accept; never another exception."""
    der = batch.rehashed_renewed[0].dump()
    rng = random.Random(4998)
    positions = sorted({*range(0, 72), *range(180, 200), *rng.sample(range(len(der)), 60)})
    others = []
    for at in positions:
        for mask in (0x01,):
            bad = der[:at] + bytes([der[at] ^ mask]) + der[at + 1:]
            try:
                check_hashes(parse(bad), DATA[0])
            except EvidenceError:
                pass
            except Exception as e:
                others.append((at, mask, type(e).__name__, str(e)[:120]))
    assert not others, others[:10]


def _token_variant(token: cms.ContentInfo, kind: str) -> cms.ContentInfo:
    if kind == "data":
        return cms.ContentInfo({"content_type": "data", "content": b"not a timestamp"})
    signed = token["content"]
    fields = {k: signed[k] for k in ("version", "digest_algorithms", "certificates",
                                     "signer_infos")}
    if kind == "not TSTInfo":
        content = signed["encap_content_info"]["content"].parsed.dump()
        fields["encap_content_info"] = cms.EncapsulatedContentInfo(
            {"content_type": "data", "content": content})
    else:  # no eContent
        fields["encap_content_info"] = cms.EncapsulatedContentInfo(
            {"content_type": "tst_info"})
    return cms.ContentInfo({"content_type": "signed_data",
                            "content": cms.SignedData(fields)})


@pytest.mark.parametrize("kind", ["unknown algorithm", "data", "not TSTInfo", "no eContent"])
def test_malformed_archive_timestamps_are_evidence_errors(tsa: LocalTsa, kind: str) -> None:
    token = tsa.token(sha256(DATA[0]))
    if kind == "unknown algorithm":
        record = EvidenceRecord({
            "version": "v1", "digest_algorithms": [{"algorithm": "sha256"}],
            "archive_time_stamp_sequence": [[{"digest_algorithm": {"algorithm": "1.2.3.4"},
                                              "time_stamp": token}]]})
    else:
        record = first_record("sha256", None, _token_variant(token, kind))
    with pytest.raises(EvidenceError):
        check_hashes(parse(record.dump()), DATA[0])


# -- validation data ------------------------------------------------------------------

def test_with_validation_data(tsa: LocalTsa, batch: Batch) -> None:
    token = batch.fresh[0]["archive_time_stamp_sequence"][0][0]["time_stamp"]
    other_cert = make_tsa("another ca").asn1_cert
    crl, ocsp_response = tsa.crl(), tsa.ocsp()
    full = with_validation_data(token, [tsa.asn1_cert, other_cert], [crl], [ocsp_response])
    full = cms.ContentInfo.load(full.dump())
    before, after = token["content"], full["content"]
    for name in ("version", "digest_algorithms", "encap_content_info", "signer_infos"):
        assert after[name].dump() == before[name].dump(), name
    certs = [c.chosen.dump() for c in after["certificates"]]
    assert certs.count(tsa.asn1_cert.dump()) == 1  # already in the token: not twice
    assert other_cert.dump() in certs
    assert len(certs) == len(before["certificates"]) + 1
    revocation = list(after["crls"])
    assert [r.name for r in revocation] == ["crl", "other"]
    assert revocation[0].chosen.dump() == crl
    assert revocation[1].chosen["other_rev_info_format"].native == "ocsp_response"
    assert revocation[1].chosen["other_rev_info"].dump() == ocsp_response
    # The signature still holds.
    status = asyncio.run(validate_tst_signed_data(
        after, None, lambda algorithm: tst_info(token)["message_imprint"]
        ["hashed_message"].native))
    assert status["intact"] and status["valid"]
    # Idempotent, and a no-op when there is nothing new.
    again = with_validation_data(full, [tsa.asn1_cert, other_cert], [crl], [ocsp_response])
    assert again.dump() == full.dump()
    assert with_validation_data(token, [], [], []) is token
    assert with_validation_data(token, [tsa.asn1_cert], [], []) is token


def test_validation_data_then_renewal(tsa: LocalTsa, batch: Batch) -> None:
    record = batch.fresh[2]
    token = record["archive_time_stamp_sequence"][-1][-1]["time_stamp"]
    full = with_validation_data(token, [], [tsa.crl()], [tsa.ocsp()])
    replaced = parse(replace_last_timestamp(record, full).dump())
    ats = replaced["archive_time_stamp_sequence"][-1][-1]
    assert ats["reduced_hashtree"].dump() == record["archive_time_stamp_sequence"][-1][-1][
        "reduced_hashtree"].dump()
    assert check_hashes(replaced, DATA[2])
    # The renewal now covers the token with its validation data.
    assert timestamp_renewal_value(replaced) == sha256(full.dump())
    renewed = renew_timestamp(replaced, None, tsa.token(timestamp_renewal_value(replaced)))
    assert len(check_hashes(parse(renewed.dump()), DATA[2])) == 2
    # The old renewal value no longer fits.
    stale = renew_timestamp(replaced, None, tsa.token(timestamp_renewal_value(record)))
    with pytest.raises(EvidenceError):
        check_hashes(stale, DATA[2])


# -- the DER itself -------------------------------------------------------------------

@dataclass
class Element:
    class_: int
    tag: int
    method: int
    der: bytes

    @property
    def value(self) -> core.Asn1Value:
        """The element by plain asn1crypto.core.load (universal ones only)."""
        return core.load(self.der, strict=True)


def elements(der: bytes) -> list[Element]:
    """The elements of the SEQUENCE `der`, which core.load must read as a Sequence."""
    top = core.load(der, strict=True)
    assert isinstance(top, core.Sequence) and (top.class_, top.tag) == (0, 16)
    out, rest = [], top.contents
    while rest:
        class_, method, tag, header, content, trailer = parser.parse(rest)
        size = len(header) + len(content) + len(trailer)
        out.append(Element(class_, tag, method, rest[:size]))
        rest = rest[size:]
    return out


def retagged(element: Element) -> bytes:
    """An IMPLICIT [n] constructed element's DER as a universal SEQUENCE."""
    assert element.method == 1
    return b"\x30" + element.der[1:]


def test_der_nesting_read_without_the_schema(batch: Batch) -> None:
    """EvidenceRecord ::= SEQUENCE { version, digestAlgorithms, ...,
    archiveTimeStampSequence SEQUENCE OF (chain) SEQUENCE OF (ATS) SEQUENCE {...} }"""
    record = batch.rehashed_renewed[0]
    fields = elements(record.dump())
    assert len(fields) == 3
    assert fields[0].value.native == 1
    assert [elements(a.der)[0].value.native for a in elements(fields[1].der)] == [
        "2.16.840.1.101.3.4.2.1", "2.16.840.1.101.3.4.2.3"]
    chains = elements(fields[2].der)
    assert len(chains) == 2
    lengths = []
    for c, chain in enumerate(chains):
        stamps = elements(chain.der)  # a chain is a SEQUENCE OF ArchiveTimeStamp...
        lengths.append(len(stamps))
        for p, ats in enumerate(stamps):
            parts = elements(ats.der)  # ...and each ArchiveTimeStamp a SEQUENCE
            # [0] digestAlgorithm, [2] reducedHashtree when there is one, ContentInfo.
            assert (parts[0].class_, parts[0].tag) == (2, 0)
            has_tree = p == 0
            assert len(parts) == (3 if has_tree else 2), (c, p)
            if has_tree:
                assert (parts[1].class_, parts[1].tag, parts[1].method) == (2, 2, 1)
            content_info = elements(parts[-1].der)
            assert content_info[0].value.native == "1.2.840.113549.1.7.2"  # signedData
    assert lengths == [3, 2]
    # The first ATS of each chain carries a five-leaf reduced tree: three levels, the
    # first with two hashes, the others one; 32-byte hashes, then 64-byte ones.
    for c, size in ((0, 32), (1, 64)):
        tree = elements(retagged(elements(elements(chains[c].der)[0].der)[1]))
        levels = [[h.value for h in elements(level.der)] for level in tree]
        assert [len(level) for level in levels] == [2, 1, 1]
        assert all(isinstance(h, core.OctetString) and len(h.native) == size
                   for level in levels for h in level)
