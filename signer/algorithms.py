"""The dated algorithm policy (policies/crypto/algorithms.toml) as pyHanko's algorithm
usage policy: which hash functions and key sizes are acceptable at a moment, and until
when.

pyHanko asks with the moment of each check, so in past validation an algorithm counts
as of the proof of existence, as ETSI EN 319 102-1 wants. ``weakens_before`` tells the
renewal policy when a timestamp's algorithms stop being acceptable."""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asn1crypto import algos, keys, x509
from pyhanko_certvalidator.policy_decl import AlgorithmUsageConstraint, AlgorithmUsagePolicy

from signer.errors import ConfigError

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "policies" / "crypto" \
    / "algorithms.toml"
_KEY_TYPES = {"rsassa_pss": "rsa"}


@dataclass(frozen=True)
class KeyRule:
    type: str
    min_bits: int
    until: datetime | None


class DatedAlgorithmPolicy(AlgorithmUsagePolicy):
    def __init__(self, digests: dict[str, datetime | None], key_rules: list[KeyRule],
                 description: str | None = None) -> None:
        self.digests = digests
        self.key_rules = key_rules
        self.description = description

    # -- when does something stop being acceptable ---------------------------------------

    def digest_until(self, name: str) -> tuple[bool, datetime | None]:
        """(listed, acceptable until); until None = no end date."""
        if name not in self.digests:
            return False, None
        return True, self.digests[name]

    def key_until(self, public_key: keys.PublicKeyInfo) -> tuple[bool, datetime | None]:
        kind = _KEY_TYPES.get(public_key.algorithm, public_key.algorithm)
        try:
            bits = public_key.bit_size
        except Exception:  # an unknown curve: no size to compare
            bits = 0
        rules = [r for r in self.key_rules if r.type == kind and bits >= r.min_bits]
        if not rules:
            return False, None
        if any(r.until is None for r in rules):
            return True, None
        return True, max(r.until for r in rules if r.until is not None)

    def weakens_before(self, cert: x509.Certificate) -> datetime | None:
        """When the certificate's key or its signature's hash stops being acceptable
        (None: no end date foreseen). Unknown algorithms: already."""
        ends: list[datetime] = []
        for listed, until in (self.key_until(cert.public_key),
                              self.digest_until(_hash_name(cert["signature_algorithm"]))):
            if not listed:
                return datetime.min.replace(tzinfo=UTC)
            if until is not None:
                ends.append(until)
        return min(ends) if ends else None

    # -- pyHanko's interface --------------------------------------------------------------

    def digest_algorithm_allowed(self, algo: algos.DigestAlgorithm,
                                 moment: datetime | None) -> AlgorithmUsageConstraint:
        name = str(algo["algorithm"].native)
        listed, until = self.digest_until(name)
        if not listed:
            return AlgorithmUsageConstraint(False, failure_reason=f"{name} is not in the "
                                            "algorithm policy")
        return _judge(name, until, moment)

    def signature_algorithm_allowed(self, algo: algos.SignedDigestAlgorithm,
                                    moment: datetime | None,
                                    public_key: keys.PublicKeyInfo | None
                                    ) -> AlgorithmUsageConstraint:
        hash_name = _hash_name(algo)
        if hash_name:
            digest = self.digest_algorithm_allowed(
                algos.DigestAlgorithm({"algorithm": hash_name}), moment)
            if not digest.allowed:
                return digest
        if public_key is None:
            return AlgorithmUsageConstraint(True)
        listed, until = self.key_until(public_key)
        what = f"{public_key.algorithm} key of {_bits(public_key)} bits"
        if not listed:
            return AlgorithmUsageConstraint(False, failure_reason=f"a {what} is not "
                                            "acceptable under the algorithm policy")
        return _judge(f"a {what}", until, moment)


def _judge(what: str, until: datetime | None, moment: datetime | None
           ) -> AlgorithmUsageConstraint:
    if until is None:
        return AlgorithmUsageConstraint(True)
    if moment is not None and moment >= until:
        return AlgorithmUsageConstraint(
            False, not_allowed_after=until,
            failure_reason=f"{what} is acceptable only until {until:%Y-%m-%d}")
    return AlgorithmUsageConstraint(True, not_allowed_after=until)


def _hash_name(algo: Any) -> str:
    try:
        return str(algo.hash_algo)
    except (ValueError, KeyError):
        return ""


def _bits(public_key: keys.PublicKeyInfo) -> int | str:
    try:
        return int(public_key.bit_size)
    except Exception:
        return "?"


@functools.cache
def load_algorithm_policy(path: Path = DEFAULT_POLICY) -> DatedAlgorithmPolicy:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        digests = {str(d["name"]): _utc(d.get("until")) for d in doc["digest"]}
        rules = [KeyRule(str(k["type"]), int(k["min_bits"]), _utc(k.get("until")))
                 for k in doc["key"]]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"algorithm policy {path}: {e!r}") from e
    return DatedAlgorithmPolicy(digests, rules, doc.get("description"))


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise ValueError(f"{value!r} is not a TOML datetime")
    return value if value.tzinfo else value.replace(tzinfo=UTC)
