"""Evidence records (RFC 4998): made, renewed and checked against a data object.

What is here is the hash side: which value each archive timestamp must cover, and
whether it does. Whether each timestamp token is valid (signature, TSA certificate at
the right time) is the caller's part (signer.service.evidence), as is asking a TSA.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import algos, cms, core, ocsp, parser, tsp, x509

from archive.evidence.syntax import (
    ArchiveTimeStamp,
    ArchiveTimeStampChain,
    ArchiveTimeStampSequence,
    ERSVersion,
    EvidenceRecord,
)
from archive.evidence.tree import HashTree, hasher, proves

# asn1crypto.parser.emit arguments: class (universal, context) and method (primitive,
# constructed); tags of the types an evidence record is made of
_UNIVERSAL, _CONTEXT = 0, 2
_PRIMITIVE, _CONSTRUCTED = 0, 1
_OCTET_STRING, _SEQUENCE = 4, 16


class EvidenceError(ValueError):
    """An evidence record that is malformed or does not prove what it should."""


def _algorithm(name: str) -> algos.DigestAlgorithm:
    return algos.DigestAlgorithm({"algorithm": name})


ERSVersionDer = bytes(ERSVersion(1).dump())


def _ats(algorithm: str, reduced: Sequence[Sequence[bytes]] | None,
         token: cms.ContentInfo) -> ArchiveTimeStamp:
    fields: dict[str, object] = {"digest_algorithm": _algorithm(algorithm),
                                 "time_stamp": token}
    if reduced:
        fields["reduced_hashtree"] = [list(values) for values in reduced]
    return ArchiveTimeStamp(fields)


def tst_info(token: cms.ContentInfo) -> tsp.TSTInfo:
    content = token["content"]["encap_content_info"]["content"]
    info: tsp.TSTInfo = content.parsed
    return info


def first_record(algorithm: str, reduced: Sequence[Sequence[bytes]] | None,
                 token: cms.ContentInfo) -> EvidenceRecord:
    """The evidence record of an object whose hash `reduced` binds to `token`."""
    return EvidenceRecord({
        "version": "v1",
        "digest_algorithms": [_algorithm(algorithm)],
        "archive_time_stamp_sequence": [[_ats(algorithm, reduced, token)]],
    })


class BatchEncoder:
    """The DER of many evidence records sharing one archive timestamp (a batch), each
    with its own reduced hash tree: what `first_record(...).dump()` gives, made with
    asn1crypto's TLV encoder (`asn1crypto.parser.emit`) around the parts asn1crypto
    encoded once, because building asn1crypto objects costs ~0.5 ms per record and a
    batch has up to a million (tests/unit/test_evidence_encoder.py checks both agree
    byte for byte)."""

    def __init__(self, algorithm: str, token: cms.ContentInfo) -> None:
        digest = _algorithm(algorithm)
        self._algorithm = parser.emit(_CONTEXT, _CONSTRUCTED, 0, digest.contents)
        self._token = token.dump()
        self._head = (ERSVersionDer + tsp.DigestAlgorithms([digest]).dump())

    def record(self, reduced: Sequence[Sequence[bytes]] | None) -> bytes:
        """The record of an object whose reduced hash tree is `reduced`."""
        return self._wrap([_sequence(b"".join(_octets(h) for h in values))
                           for values in reduced or ()])

    def records(self, tree: HashTree) -> Iterator[bytes]:
        """The record of each leaf of `tree`, in order; each node encoded once."""
        octets: dict[tuple[int, int], bytes] = {}
        lists: dict[tuple[int, int], bytes] = {}

        def octet(at: tuple[int, int]) -> bytes:
            if at not in octets:
                octets[at] = _octets(tree.levels[at[0]][at[1]])
            return octets[at]

        for i in range(len(tree)):
            found = tree.siblings(i)
            if not found:
                yield self._wrap([])
                continue
            first = _sequence(octet((0, i)) + octet(found[0]))
            rest = []
            for at in found[1:]:
                if at not in lists:
                    lists[at] = _sequence(octet(at))
                rest.append(lists[at])
            octets.pop((0, i), None)
            yield self._wrap([first, *rest])

    def _wrap(self, partial_trees: Sequence[bytes]) -> bytes:
        tree = parser.emit(_CONTEXT, _CONSTRUCTED, 2, b"".join(partial_trees)) \
            if partial_trees else b""
        ats = _sequence(self._algorithm + tree + self._token)
        return _sequence(self._head + _sequence(_sequence(ats)))


def _octets(value: bytes) -> bytes:
    return bytes(parser.emit(_UNIVERSAL, _PRIMITIVE, _OCTET_STRING, value))


def _present(value: object) -> bool:
    """Whether an optional field is there (without decoding it, as `.native` would)."""
    return not isinstance(value, core.Void)


def _sequence(contents: bytes) -> bytes:
    return bytes(parser.emit(_UNIVERSAL, _CONSTRUCTED, _SEQUENCE, contents))


def appended_timestamp(record: EvidenceRecord, last: cms.ContentInfo, new_ats: bytes
                       ) -> bytes:
    """The DER of `renew_timestamp(replace_last_timestamp(record, last), ...)` given the
    new ATS's DER (the same for a whole batch): the record's last ATS with `last` as its
    timeStamp, then `new_ats`, at the end of its last chain; asn1crypto-encoded parts
    reused as they are (see BatchEncoder)."""
    chains = record["archive_time_stamp_sequence"]
    final = chains[-1]
    old = final[-1]
    kept = b"".join(old[name].dump() for name in ("digest_algorithm", "attributes",
                                                  "reduced_hashtree")
                    if _present(old[name]))
    changed = _sequence(kept + last.dump())
    chain = _sequence(b"".join(a.dump() for a in list(final)[:-1]) + changed + new_ats)
    sequence = _sequence(b"".join(c.dump() for c in list(chains)[:-1]) + chain)
    head = b"".join(record[name].dump() for name in ("version", "digest_algorithms",
                                                     "crypto_infos", "encryption_info")
                    if _present(record[name]))
    return _sequence(head + sequence)


def appended_timestamp_der(der: bytes, old_token: bytes, last: bytes, new_ats: bytes
                           ) -> bytes:
    """`appended_timestamp` on an evidence record's DER, for the records of one batch:
    asn1crypto's TLV parser and encoder walk only the outer levels (record, sequence,
    last chain, last ATS) instead of decoding the record (a few µs instead of ~130 µs).
    EvidenceError unless the last ATS's timeStamp is `old_token`."""
    try:
        head = _children(_content(der))
        chains = _children(_content(head[-1]))
        timestamps = _children(_content(chains[-1]))
        fields = _content(timestamps[-1])
    except (ValueError, IndexError) as e:
        raise EvidenceError(f"not an evidence record: {e}") from e
    if not fields.endswith(old_token):  # the timeStamp is the ATS's last field
        raise EvidenceError("the record's newest archive timestamp is not the batch's")
    changed = _sequence(fields[:-len(old_token)] + last)
    chain = _sequence(b"".join(timestamps[:-1]) + changed + new_ats)
    sequence = _sequence(b"".join(chains[:-1]) + chain)
    return _sequence(b"".join(head[:-1]) + sequence)


def _content(tlv: bytes) -> bytes:
    content: bytes = parser.parse(tlv, strict=True)[4]
    return content


def _children(content: bytes) -> list[bytes]:
    """The TLVs `content` is made of, each as its bytes."""
    found = []
    at = 0
    while at < len(content):
        _class, _method, _tag, header, body, trailer = parser.parse(content[at:])
        size = len(header) + len(body) + len(trailer)
        found.append(content[at:at + size])
        at += size
    return found


def renewal_ats(algorithm: str, token: cms.ContentInfo) -> bytes:
    """The DER of the ATS a timestamp renewal adds (no reduced tree: it covers one
    value)."""
    return bytes(_ats(algorithm, None, token).dump())


def parse(der: bytes, *, lazy: bool = False) -> EvidenceRecord:
    """An evidence record from DER, every field parsed now (EvidenceError if it does not
    parse); `lazy`: only its outer structure (for records this archive wrote)."""
    try:
        record = EvidenceRecord.load(der, strict=True)
        if not lazy:
            record.native  # noqa: B018  (parses every field now)
    except (ValueError, TypeError, KeyError) as e:
        raise EvidenceError(f"not a DER EvidenceRecord: {e}") from e
    if not len(record["archive_time_stamp_sequence"]) or any(
            not len(chain) for chain in record["archive_time_stamp_sequence"]):
        raise EvidenceError("evidence record without archive timestamps")
    return record


def chain_algorithm(chain: ArchiveTimeStampChain) -> str:
    """A chain's hash algorithm: its first ATS's, else its timestamp's imprint's."""
    first = chain[0]
    if _present(first["digest_algorithm"]):
        return str(first["digest_algorithm"]["algorithm"].native)
    return str(tst_info(first["time_stamp"])["message_imprint"]["hash_algorithm"]
               ["algorithm"].native)


def last_timestamp(record: EvidenceRecord) -> cms.ContentInfo:
    token: cms.ContentInfo = record["archive_time_stamp_sequence"][-1][-1]["time_stamp"]
    return token


# -- renewal (RFC 4998 section 5) ------------------------------------------------------

def _hasher(algorithm: str) -> Callable[[bytes], bytes]:
    try:
        return hasher(algorithm)
    except ValueError as e:
        raise EvidenceError(str(e)) from e


def timestamp_renewal_value(record: EvidenceRecord) -> bytes:
    """What a timestamp renewal covers: the hash of the last ATS's timeStamp (5.2)."""
    chain = record["archive_time_stamp_sequence"][-1]
    return _hasher(chain_algorithm(chain))(chain[-1]["time_stamp"].dump())


def renew_timestamp(record: EvidenceRecord, reduced: Sequence[Sequence[bytes]] | None,
                    token: cms.ContentInfo) -> EvidenceRecord:
    """`record` with a new ATS at the end of its last chain (timestamp renewal)."""
    chains = [list(chain) for chain in record["archive_time_stamp_sequence"]]
    chains[-1].append(_ats(chain_algorithm(record["archive_time_stamp_sequence"][-1]),
                           reduced, token))
    return _with_chains(record, chains, None)


def hash_renewal_value(record: EvidenceRecord, data_hash: bytes, algorithm: str) -> bytes:
    """What a hash-tree renewal covers for one object: H(h(d) + H(atsc)), with `data_hash`
    = h(d) under the new algorithm and atsc the DER of every chain so far (5.3)."""
    h = _hasher(algorithm)
    return h(data_hash + h(record["archive_time_stamp_sequence"].dump()))


def renew_hash_tree(record: EvidenceRecord, algorithm: str,
                    reduced: Sequence[Sequence[bytes]] | None,
                    token: cms.ContentInfo) -> EvidenceRecord:
    """`record` with a new chain under `algorithm` (hash-tree renewal)."""
    chains = [list(chain) for chain in record["archive_time_stamp_sequence"]]
    chains.append([_ats(algorithm, reduced, token)])
    return _with_chains(record, chains, algorithm)


def _with_chains(record: EvidenceRecord, chains: list[list[ArchiveTimeStamp]],
                 new_algorithm: str | None) -> EvidenceRecord:
    algorithms = [a["algorithm"].native for a in record["digest_algorithms"]]
    if new_algorithm is not None and new_algorithm not in algorithms:
        algorithms.append(new_algorithm)
    fields: dict[str, object] = {
        "version": "v1",
        "digest_algorithms": [_algorithm(a) for a in algorithms],
        "archive_time_stamp_sequence": ArchiveTimeStampSequence(
            [ArchiveTimeStampChain(chain) for chain in chains]),
    }
    if _present(record["crypto_infos"]):
        fields["crypto_infos"] = record["crypto_infos"]
    return EvidenceRecord(fields)


def with_validation_data(token: cms.ContentInfo, certs: Sequence[x509.Certificate],
                         crls: Sequence[bytes], ocsps: Sequence[bytes]) -> cms.ContentInfo:
    """`token` with certificates and revocation data added to its SignedData's unsigned
    `certificates` and `crls` (RFC 4998 section 5.2 allows either this or cryptoInfos).
    The signature does not cover these fields; what is there already stays."""
    signed = token["content"]
    have_certs = {c.chosen.dump() for c in signed["certificates"]} \
        if _present(signed["certificates"]) else set()
    have_rev = {r.chosen.dump() for r in signed["crls"]} \
        if _present(signed["crls"]) else set()
    new_certs = [cms.CertificateChoices({"certificate": c}) for c in certs
                 if c.dump() not in have_certs]
    new_rev = [cms.RevocationInfoChoice({"crl": cms.CertificateList.load(c)})
               for c in crls if c not in have_rev]
    for raw in ocsps:
        other = cms.RevocationInfoChoice({"other": cms.OtherRevocationInfoFormat({
            "other_rev_info_format": "ocsp_response",
            "other_rev_info": ocsp.OCSPResponse.load(raw)})})
        if other.chosen.dump() not in have_rev:
            new_rev.append(other)
    if not new_certs and not new_rev:
        return token
    fields = {name: signed[name] for name in
              ("version", "digest_algorithms", "encap_content_info", "signer_infos")}
    fields["certificates"] = [*(signed["certificates"] if signed["certificates"].native
                                is not None else []), *new_certs]
    if _present(signed["crls"]) or new_rev:
        fields["crls"] = [*(signed["crls"] if _present(signed["crls"]) else []),
                          *new_rev]
    return cms.ContentInfo({"content_type": "signed_data",
                            "content": cms.SignedData(fields)})


def replace_last_timestamp(record: EvidenceRecord, token: cms.ContentInfo
                           ) -> EvidenceRecord:
    """`record` with its last ATS's timeStamp replaced by `token` (the same token with
    validation data added, before the renewal that will cover it)."""
    chains = [list(chain) for chain in record["archive_time_stamp_sequence"]]
    last = chains[-1][-1]
    fields = {name: last[name] for name in ("digest_algorithm", "attributes",
                                            "reduced_hashtree")
              if _present(last[name])}
    chains[-1][-1] = ArchiveTimeStamp({**fields, "time_stamp": token})
    return _with_chains(record, chains, None)


# -- checking --------------------------------------------------------------------------

@dataclass(frozen=True)
class ProvenTimestamp:
    """One archive timestamp of a record, in order: its token and what it proves."""

    chain: int
    position: int
    algorithm: str
    token: cms.ContentInfo
    gen_time: datetime


def check_hashes(record: EvidenceRecord, data: bytes | dict[str, bytes]
                 ) -> list[ProvenTimestamp]:
    """Every archive timestamp of `record`, in order, after checking that together they
    cover `data` (RFC 4998 section 5.3): bytes, or the object's hash per algorithm name.
    EvidenceError says which step fails."""
    try:
        return _check_hashes(record, data)
    except EvidenceError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise EvidenceError(f"malformed evidence record: {e}") from e


def _check_hashes(record: EvidenceRecord, data: bytes | dict[str, bytes]
                  ) -> list[ProvenTimestamp]:
    digests = data if isinstance(data, dict) else {}

    def data_hash(algorithm: str) -> bytes:
        if algorithm not in digests:
            if isinstance(data, dict):
                raise EvidenceError(f"no {algorithm} hash of the object to check")
            digests[algorithm] = hasher(algorithm)(data)
        return digests[algorithm]

    proven: list[ProvenTimestamp] = []
    chains = record["archive_time_stamp_sequence"]
    for c, chain in enumerate(chains):
        algorithm = chain_algorithm(chain)
        h = hasher(algorithm)
        if c == 0:
            expected = data_hash(algorithm)
        else:
            previous = ArchiveTimeStampSequence(list(chains)[:c])
            expected = h(data_hash(algorithm) + h(previous.dump()))
        for p, ats in enumerate(chain):
            own = ats["digest_algorithm"]
            if own.native is not None and own["algorithm"].native != algorithm:
                raise EvidenceError(f"chain {c}: archive timestamp {p} changes the hash "
                                    "algorithm within a chain")
            info = tst_info(ats["time_stamp"])
            imprint = info["message_imprint"]
            if imprint["hash_algorithm"]["algorithm"].native != algorithm:
                raise EvidenceError(f"chain {c}, timestamp {p}: its imprint is not "
                                    f"{algorithm}")
            reduced = [list(v.native) for v in ats["reduced_hashtree"]] \
                if _present(ats["reduced_hashtree"]) else None
            if not proves(reduced, expected, imprint["hashed_message"].native, h):
                what = "the object" if p == 0 else "the previous archive timestamp"
                raise EvidenceError(f"chain {c}, timestamp {p} does not cover {what}")
            gen_time = info["gen_time"].native
            if proven and gen_time < proven[-1].gen_time:
                raise EvidenceError(f"chain {c}, timestamp {p} is older than the one "
                                    "it renews")
            proven.append(ProvenTimestamp(c, p, algorithm, ats["time_stamp"], gen_time))
            expected = h(ats["time_stamp"].dump())
    return proven
