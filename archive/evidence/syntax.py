"""RFC 4998 Evidence Record Syntax, on asn1crypto's definitions.

asn1crypto.tsp (1.5.1) defines ERS for RFC 5544 but gets one level wrong:
`ArchiveTimeStampSequence` is a SEQUENCE OF `ArchiveTimeStampChain` (itself a SEQUENCE OF
`ArchiveTimeStamp`), not a SEQUENCE OF `ArchiveTimeStamp`, so it parses no RFC 4998
record. The classes below reuse asn1crypto's `ArchiveTimeStamp` and `PartialHashtree`
and add the missing level (docs/upstream/asn1crypto-ers.md).
"""

from __future__ import annotations

from typing import ClassVar

from asn1crypto import cms, tsp
from asn1crypto.core import Integer, SequenceOf

ArchiveTimeStamp = tsp.ArchiveTimeStamp
PartialHashtree = tsp.PartialHashtree
PartialHashtrees = tsp.PartialHashtrees


class ArchiveTimeStampChain(SequenceOf):
    _child_spec = ArchiveTimeStamp


class ArchiveTimeStampSequence(SequenceOf):
    _child_spec = ArchiveTimeStampChain


class CryptoInfos(SequenceOf):
    _child_spec = cms.CMSAttribute


class ERSVersion(Integer):
    _map: ClassVar[dict[int, str]] = {1: "v1"}


class EvidenceRecord(tsp.Sequence):
    _fields: ClassVar[list[tuple[object, ...]]] = [
        ("version", ERSVersion),
        ("digest_algorithms", tsp.DigestAlgorithms),
        ("crypto_infos", CryptoInfos, {"implicit": 0, "optional": True}),
        ("encryption_info", tsp.EncryptionInfo, {"implicit": 1, "optional": True}),
        ("archive_time_stamp_sequence", ArchiveTimeStampSequence),
    ]
