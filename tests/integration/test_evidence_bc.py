"""Bouncy Castle 1.72 (tests/ers/ErsCheck.java) as an outside reader of the evidence
records archive.evidence makes: it must accept them for their object, through
timestamp and hash-tree renewals, and refuse them for anything else. The last tests
pin where BC and RFC 4998 read records differently (docs/evidence-bouncycastle.md)."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

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
    with_validation_data,
)
from archive.evidence.syntax import ArchiveTimeStamp
from archive.evidence.tree import hasher, proves
from tests.integration.bcers import bc_check, bc_check_many
from tests.unit.ers_tokens import LocalTsa, make_tsa

pytestmark = pytest.mark.integration

SIZES = (1, 2, 3, 7, 64, 100)
STAGES = ("fresh", "renewed", "renewed2", "rehashed", "rehashed_renewed")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha512(data: bytes) -> bytes:
    return hashlib.sha512(data).digest()


def sample(n: int) -> list[int]:
    """Every object of a small batch; ten of a large one, both ends and the odd one out."""
    if n <= 7:
        return list(range(n))
    return sorted({0, 1, 2, n // 3, n // 2, n // 2 + 1, n - 3, n - 2, n - 1, 37 % n})


@dataclass
class Item:
    batch: int
    index: int
    data: bytes
    records: dict[str, EvidenceRecord] = field(default_factory=dict)


def _renew_batches(tsa: LocalTsa, items: list[Item], stage: str, new: str) -> None:
    """One timestamp renewal for every batch: a tree over the batches' last-timestamp
    hashes (each batch's records share theirs), one token, a reduced tree per batch."""
    values: dict[int, bytes] = {}
    for item in items:
        values.setdefault(item.batch, timestamp_renewal_value(item.records[stage]))
    batches = sorted(values)
    tree = HashTree([values[b] for b in batches], "sha256")
    token = tsa.token(tree.root)
    for item in items:
        reduced = tree.reduced(batches.index(item.batch))
        item.records[new] = renew_timestamp(item.records[stage], reduced, token)


@pytest.fixture(scope="module")
def tsa() -> LocalTsa:
    return make_tsa()


@pytest.fixture(scope="module")
def items(tsa: LocalTsa) -> list[Item]:
    out: list[Item] = []
    for b, n in enumerate(SIZES):
        data = [f"batch {n}, hồ sơ {i}".encode() for i in range(n)]
        tree = HashTree([sha256(d) for d in data], "sha256")
        token = tsa.token(tree.root)
        for i in sample(n):
            item = Item(b, i, data[i])
            item.records["fresh"] = first_record("sha256", tree.reduced(i), token)
            out.append(item)
    _renew_batches(tsa, out, "fresh", "renewed")
    # Now every record ends with that one token: one renewal value, no tree.
    token = tsa.token(timestamp_renewal_value(out[0].records["renewed"]))
    for item in out:
        item.records["renewed2"] = renew_timestamp(item.records["renewed"], None, token)
    # Hash-tree renewal to sha512: one tree over every object's renewal value.
    values = [hash_renewal_value(item.records["renewed2"], sha512(item.data), "sha512")
              for item in out]
    tree = HashTree(values, "sha512")
    token = tsa.token(tree.root, "sha512")
    for k, item in enumerate(out):
        item.records["rehashed"] = renew_hash_tree(item.records["renewed2"], "sha512",
                                                   tree.reduced(k), token)
    # A timestamp renewal after it: every record shares the last token, no tree.
    token = tsa.token(timestamp_renewal_value(out[0].records["rehashed"]), "sha512")
    for item in out:
        item.records["rehashed_renewed"] = renew_timestamp(item.records["rehashed"], None,
                                                           token)
    return out


class Files:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.count = 0

    def write(self, content: bytes, suffix: str = ".bin") -> Path:
        self.count += 1
        path = self.root / f"{self.count:05d}{suffix}"
        path.write_bytes(content)
        return path

    def pair(self, record: EvidenceRecord, data: bytes) -> tuple[Path, Path]:
        return self.write(record.dump(), ".ers"), self.write(data)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def _bc_accepts(verdict: dict[str, Any], chains: Sequence[int], algorithms: Sequence[str]
                ) -> None:
    assert verdict["valid"] and verdict["present"] and verdict["error"] is None, verdict
    assert [t["chain"] for t in verdict["timestamps"]] == list(chains)
    assert [t["algorithm"] for t in verdict["timestamps"]] == list(algorithms)
    assert {t["tsa"] for t in verdict["timestamps"]} == {"CN=test tsa"}


S256, S512 = "2.16.840.1.101.3.4.2.1", "2.16.840.1.101.3.4.2.3"
EXPECTED = {
    "fresh": ([0], [S256]),
    "renewed": ([0, 0], [S256, S256]),
    "renewed2": ([0, 0, 0], [S256] * 3),
    "rehashed": ([0, 0, 0, 1], [S256] * 3 + [S512]),
    "rehashed_renewed": ([0, 0, 0, 1, 1], [S256] * 3 + [S512] * 2),
}


# -- accepted -------------------------------------------------------------------------

def test_bouncy_castle_accepts_every_stage(items: list[Item], files: Files) -> None:
    assert sum(1 for i in items if SIZES[i.batch] >= 64) >= 20
    pairs, cases = [], []
    for item in items:
        for stage in STAGES:
            record = parse(item.records[stage].dump())
            # hocba's own check agrees first.
            chains, _ = EXPECTED[stage]
            assert [p.chain for p in check_hashes(record, item.data)] == chains
            pairs.append(files.pair(record, item.data))
            cases.append((SIZES[item.batch], item.index, stage))
    verdicts = bc_check_many(pairs)
    for case, verdict in zip(cases, verdicts, strict=True):
        chains, algorithms = EXPECTED[case[2]]
        try:
            _bc_accepts(verdict, chains, algorithms)
        except AssertionError as e:
            raise AssertionError(f"batch of {case[0]}, object {case[1]}, {case[2]}") from e
        # BC's own ERSEvidenceRecord.validate() wants the last timestamp of the last
        # chain to cover every earlier one of that chain: not so after two renewals.
        if case[2] == "renewed2":
            assert verdict["record_validate"] is not None, (case, verdict)
        else:
            assert verdict["record_validate"] is None, (case, verdict)


def test_single_invocation_cli(items: list[Item], files: Files) -> None:
    item = items[-1]
    _bc_accepts(bc_check(*files.pair(item.records["rehashed_renewed"], item.data)),
                *EXPECTED["rehashed_renewed"])
    assert not bc_check(*files.pair(item.records["fresh"], b"other"))["valid"]


def test_bouncy_castle_accepts_added_validation_data(tsa: LocalTsa, items: list[Item],
                                                      files: Files) -> None:
    item = items[3]
    record = item.records["renewed"]
    token = record["archive_time_stamp_sequence"][-1][-1]["time_stamp"]
    full = with_validation_data(token, [make_tsa("other").asn1_cert], [tsa.crl()],
                                [tsa.ocsp()])
    replaced = replace_last_timestamp(record, full)
    renewed = renew_timestamp(replaced, None, tsa.token(timestamp_renewal_value(replaced)))
    verdicts = bc_check_many([files.pair(replaced, item.data),
                              files.pair(renewed, item.data)])
    _bc_accepts(verdicts[0], [0, 0], [S256] * 2)
    _bc_accepts(verdicts[1], [0, 0, 0], [S256] * 3)


# -- refused --------------------------------------------------------------------------

def _flip_reduced(record: EvidenceRecord, chain: int, position: int, level: int,
                  value: int) -> EvidenceRecord:
    """`record` with one byte of one reduced-tree hash flipped (DER re-encoded)."""
    der = bytearray(record.dump())
    ats = record["archive_time_stamp_sequence"][chain][position]
    target = ats["reduced_hashtree"][level][value].native
    at = der.find(target)
    assert at > 0 and der.find(target, at + 1) == -1
    der[at + 5] ^= 0x01
    flipped = EvidenceRecord.load(bytes(der))
    assert flipped["archive_time_stamp_sequence"][chain][position]["reduced_hashtree"][
        level][value].native != target
    return flipped


def test_bouncy_castle_refuses(items: list[Item], files: Files) -> None:
    big = next(i for i in items if SIZES[i.batch] == 100)
    seven = next(i for i in items if SIZES[i.batch] == 7)
    cases: list[tuple[str, EvidenceRecord, bytes]] = []
    for stage in STAGES:
        cases.append((f"{stage}, other data", big.records[stage], big.data + b" "))
        cases.append((f"{stage}, another object", seven.records[stage], big.data))
    cases += [
        ("fresh, object's own hash flipped", _flip_reduced(big.records["fresh"], 0, 0, 0, 0),
         big.data),
        ("fresh, sibling flipped", _flip_reduced(big.records["fresh"], 0, 0, 0, 1), big.data),
        ("fresh, top level flipped", _flip_reduced(big.records["fresh"], 0, 0, -1, 0),
         big.data),
        ("renewal tree flipped", _flip_reduced(big.records["renewed"], 0, 1, 0, 1),
         big.data),
        ("sha512 tree flipped", _flip_reduced(big.records["rehashed"], 1, 0, 2, 0),
         big.data),
    ]
    verdicts = bc_check_many([files.pair(record, data) for _, record, data in cases])
    for (name, record, data), verdict in zip(cases, verdicts, strict=True):
        assert not verdict["valid"], (name, verdict)
        with pytest.raises(EvidenceError):
            check_hashes(parse(record.dump()), data)


# -- where Bouncy Castle and RFC 4998 differ ------------------------------------------

def test_one_value_first_list_rfc_and_bc_differ(tsa: LocalTsa, files: Files) -> None:
    """Reduced tree [[h], [s]]: RFC 4998 section 4.3 hashes the lone h first, the root
    is H(sort(H(h), s)); Bouncy Castle 1.72 takes h as it is, H(sort(h, s)). hocba never
    emits this shape (HashTree.reduced puts two values in the first list)."""
    h256 = hasher("sha256")
    data = b"an object whose first list is itself alone"
    h, s = sha256(data), sha256(b"some sibling")
    reduced = [[h], [s]]
    rfc_root = h256(b"".join(sorted([h256(h), s])))
    bc_root = h256(b"".join(sorted([h, s])))
    assert proves(reduced, h, rfc_root, h256)
    assert not proves(reduced, h, bc_root, h256)
    rfc_record = first_record("sha256", reduced, tsa.token(rfc_root))
    bc_record = first_record("sha256", reduced, tsa.token(bc_root))
    assert check_hashes(parse(rfc_record.dump()), data)
    with pytest.raises(EvidenceError):
        check_hashes(parse(bc_record.dump()), data)
    rfc_verdict, bc_verdict = bc_check_many([files.pair(rfc_record, data),
                                             files.pair(bc_record, data)])
    assert not rfc_verdict["valid"] and "timestamp hash does not match root" in str(
        rfc_verdict["error"]), rfc_verdict
    assert bc_verdict["valid"], bc_verdict


def test_several_values_in_a_later_list_rfc_and_bc_differ(tsa: LocalTsa,
                                                          files: Files) -> None:
    """Reduced tree [[h, a], [p, q]]: RFC 4998 hashes p, q and the running hash together,
    H(sort(p, q, H(sort(h, a)))); BC 1.72 hashes p and q first, then pairs:
    H(sort(H(sort(h, a)), H(sort(p, q))))."""
    h256 = hasher("sha256")
    data = b"an object in a non-binary tree"
    h, a, p, q = sha256(data), sha256(b"a"), sha256(b"p"), sha256(b"q")
    reduced = [[h, a], [p, q]]
    first = h256(b"".join(sorted([h, a])))
    rfc_root = h256(b"".join(sorted([p, q, first])))
    bc_root = h256(b"".join(sorted([first, h256(b"".join(sorted([p, q])))])))
    rfc_record = first_record("sha256", reduced, tsa.token(rfc_root))
    bc_record = first_record("sha256", reduced, tsa.token(bc_root))
    assert check_hashes(rfc_record, data)
    with pytest.raises(EvidenceError):
        check_hashes(bc_record, data)
    rfc_verdict, bc_verdict = bc_check_many([files.pair(rfc_record, data),
                                             files.pair(bc_record, data)])
    assert not rfc_verdict["valid"], rfc_verdict
    assert bc_verdict["valid"], bc_verdict


def test_bc_checks_only_the_last_chain_against_the_object(tsa: LocalTsa,
                                                          files: Files) -> None:
    """BC 1.72's validatePresent checks the data against the first ATS of the last chain
    (with the hash of the earlier chains); it does not check that the first chain
    covered the object. hocba's check_hashes does (RFC 4998 section 5.3)."""
    data, other = b"the object", b"something else entirely"
    record = first_record("sha256", None, tsa.token(sha256(other)))
    value = hash_renewal_value(record, sha512(data), "sha512")
    record = renew_hash_tree(record, "sha512", None, tsa.token(value, "sha512"))
    with pytest.raises(EvidenceError, match="chain 0, timestamp 0 does not cover"):
        check_hashes(parse(record.dump()), data)
    verdict = bc_check(*files.pair(record, data))
    assert verdict["valid"] and verdict["present"], verdict


def test_one_digest_algorithm_per_chain(tsa: LocalTsa, files: Files) -> None:
    """A timestamp renewal whose ATS names another digest algorithm than its chain:
    refused by both (BC: "invalid digest algorithm in chain")."""
    data = b"one object"
    record = first_record("sha256", None, tsa.token(sha256(data)))
    token: cms.ContentInfo = record["archive_time_stamp_sequence"][0][0]["time_stamp"]
    renewal = ArchiveTimeStamp({"digest_algorithm": {"algorithm": "sha512"},
                                "time_stamp": tsa.token(sha512(token.dump()), "sha512")})
    mixed = EvidenceRecord({
        "version": "v1",
        "digest_algorithms": [{"algorithm": "sha256"}, {"algorithm": "sha512"}],
        "archive_time_stamp_sequence": [[record["archive_time_stamp_sequence"][0][0],
                                         renewal]]})
    with pytest.raises(EvidenceError, match="changes the hash algorithm"):
        check_hashes(parse(mixed.dump()), data)
    verdict = bc_check(*files.pair(mixed, data))
    assert not verdict["valid"] and "invalid digest algorithm in chain" in str(
        verdict["error"]), verdict


def test_bc_does_not_order_renewals(tsa: LocalTsa, files: Files) -> None:
    """A timestamp renewal dated before the timestamp it renews (a TSA clock gone back):
    hocba refuses it, BC 1.72 accepts it (it only refuses timestamps dated after the
    time of checking)."""
    data = b"one object"
    record = first_record("sha256", None, tsa.token(sha256(data)))
    earlier = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    stamper = DummyTimeStamper(tsa_cert=tsa.asn1_cert, tsa_key=tsa.stamper.tsa_key,
                               fixed_dt=earlier)
    token = asyncio.run(stamper.async_timestamp(timestamp_renewal_value(record), "sha256"))
    record = renew_timestamp(record, None, token)
    with pytest.raises(EvidenceError, match="older than the one it renews"):
        check_hashes(parse(record.dump()), data)
    verdict = bc_check(*files.pair(record, data))
    assert verdict["valid"], verdict
    first, second = verdict["timestamps"]
    assert second["gen_time"] < first["gen_time"]
