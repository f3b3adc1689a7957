"""Evidence records (RFC 4998): hash trees over archived objects, one timestamp per
batch, a small proof per object, renewed for ever."""

from archive.evidence.records import (
    BatchEncoder,
    EvidenceError,
    ProvenTimestamp,
    appended_timestamp,
    appended_timestamp_der,
    check_hashes,
    first_record,
    hash_renewal_value,
    parse,
    renew_hash_tree,
    renew_timestamp,
    renewal_ats,
    replace_last_timestamp,
    timestamp_renewal_value,
    tst_info,
    with_validation_data,
)
from archive.evidence.syntax import EvidenceRecord
from archive.evidence.tree import HashTree, hasher

__all__ = [
    "BatchEncoder",
    "EvidenceError",
    "EvidenceRecord",
    "HashTree",
    "ProvenTimestamp",
    "appended_timestamp",
    "appended_timestamp_der",
    "check_hashes",
    "first_record",
    "hash_renewal_value",
    "hasher",
    "parse",
    "renew_hash_tree",
    "renew_timestamp",
    "renewal_ats",
    "replace_last_timestamp",
    "timestamp_renewal_value",
    "tst_info",
    "with_validation_data",
]
