"""Certificate rules of a policy role, checked before a key may sign for that role.

Each rule is a small function over the certificate; `check_certificate` runs them all
and raises CertificateNotAllowed (422) naming the first rule that fails.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from asn1crypto import x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError, ValidationError

from archive.times import rfc3339
from signer.errors import CertificateNotAllowed
from signer.policy import RolePolicy

Rule = Callable[[x509.Certificate], str | None]


def key_usage_rule(required: frozenset[str]) -> Rule:
    def rule(cert: x509.Certificate) -> str | None:
        present = set(cert.key_usage_value.native) if cert.key_usage_value else set()
        missing = required - present
        return f"key usage lacks {sorted(missing)}" if missing else None

    return rule


def validity_rule(at: datetime) -> Rule:
    def rule(cert: x509.Certificate) -> str | None:
        validity = cert["tbs_certificate"]["validity"]
        not_before = validity["not_before"].native
        not_after = validity["not_after"].native
        if not not_before <= at <= not_after:
            return f"not valid at {rfc3339(at)} (valid {not_before} to {not_after})"
        return None

    return rule


def subject_attribute_rule(attribute: str, expected: str) -> Rule:
    def rule(cert: x509.Certificate) -> str | None:
        value = cert.subject.native.get(attribute)
        values = value if isinstance(value, list) else [value]
        if expected not in values:
            return (f"subject {attribute} is {value!r}, but the record belongs to school "
                    f"{expected!r}")
        return None

    return rule


def rules_for(role: RolePolicy, school_code: str, at: datetime) -> list[Rule]:
    rules = [key_usage_rule(role.key_usage), validity_rule(at)]
    if role.school_code_attribute:
        rules.append(subject_attribute_rule(role.school_code_attribute, school_code))
    return rules


class PathValidator(Protocol):
    async def validated_path(self, cert: x509.Certificate,
                             intermediates: list[x509.Certificate]) -> Any: ...


def check_rules(cert: x509.Certificate, role: RolePolicy, school_code: str,
                at: datetime | None = None) -> None:
    """The policy's own rules (no network): CertificateNotAllowed on the first failure."""
    at = at or datetime.now(UTC)
    for rule in rules_for(role, school_code, at):
        problem = rule(cert)
        if problem:
            raise CertificateNotAllowed(f"certificate not allowed for role {role.name}: {problem}")


async def check_certificate(cert: x509.Certificate, chain: list[x509.Certificate],
                            role: RolePolicy, school_code: str,
                            paths: ValidationContext | PathValidator, *,
                            at: datetime | None = None) -> None:
    """Policy rules, then the chain to a trust anchor (revocation checked), through a
    validation context or a `PathValidator` that may reuse a recent result."""
    check_rules(cert, role, school_code, at)
    try:
        if isinstance(paths, ValidationContext):
            validator = CertificateValidator(cert, intermediate_certs=chain,
                                             validation_context=paths)
            await validator.async_validate_usage(set(role.key_usage))
        else:
            await paths.validated_path(cert, chain)
    except PathBuildingError as e:
        raise CertificateNotAllowed(
            f"certificate for role {role.name} does not chain to a trusted anchor"
        ) from e
    except (PathValidationError, ValidationError) as e:
        raise CertificateNotAllowed(
            f"certificate for role {role.name} failed validation: {e}"
        ) from e
