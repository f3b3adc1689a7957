"""Signature policies: policies/<record_type>.toml -> typed, validated rules.

A policy names the roles in signing order, the field each fills, the visible
appearance, the certificate rules per role, the hash algorithm and DocMDP.
Loading rejects unknown keys and bad values, so a typo stops start-up.
"""

from __future__ import annotations

import tomllib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from signer.errors import ConfigError

HASH_ALGORITHMS = {"sha256", "sha384", "sha512"}
DOCMDP_LEVELS = {"no_changes", "fill_forms", "annotate"}
KEY_USAGES = {"digital_signature", "non_repudiation"}
NAME_ATTRIBUTES = {
    "user_id", "organizational_unit_name", "organization_name", "common_name", "serial_number",
}
APPEARANCE_KEYS = {"signer", "ts", "school", "role"}
VERIFICATION_POSITIONS = {"top-right", "top-left", "bottom-right", "bottom-left"}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    page: int
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class RolePolicy:
    name: str
    title: str
    field: FieldSpec
    appearance: str
    key_usage: frozenset[str]
    school_code_attribute: str | None = None


@dataclass(frozen=True)
class VerificationSpec:
    """Where the record's QR code and printed verification code go
    (signer/pades/qrstamp.py): a corner of the page's crop box, as the page is shown.

    Default: the top right corner of the first page. The signature fields are at the
    bottom of the last page (y 40-130, the whole width), so for a one-page record any
    bottom corner would collide with them; records put their title centred at the top
    and write left-aligned lines below it, so the top right corner is the margin least
    likely to hold content (checked on every sample in tests/fixtures/samples)."""

    page: int = 1  # 1-based; negative counts from the end
    position: str = "top-right"
    size: int = 64  # side of the QR code in points, its quiet zone included
    margin: int = 18  # points from the crop box's edges (printers lose the outer ~5 mm)


@dataclass(frozen=True)
class Policy:
    id: str
    version: int
    title: str
    hash_algorithm: str
    docmdp: str
    roles: tuple[RolePolicy, ...]
    verification: VerificationSpec = VerificationSpec()
    grades: tuple[int, int] | None = None
    """The grades (lowest, highest) a record of this type holds; None: any of 1-12."""

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.roles)

    def role(self, name: str) -> RolePolicy | None:
        return next((r for r in self.roles if r.name == name), None)

    def next_role(self, signed: Collection[str]) -> RolePolicy | None:
        """The first role in order that has not signed yet; None when all have."""
        return next((r for r in self.roles if r.name not in signed), None)


class _Reader:
    """Pulls typed values out of one TOML table and rejects what is left over."""

    def __init__(self, where: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: expected a table")
        self.where = where
        self.table = dict(table)

    def take(self, key: str, kind: type, default: Any = ...) -> Any:
        if key not in self.table:
            if default is ...:
                raise ConfigError(f"{self.where}: missing key '{key}'")
            return default
        value = self.table.pop(key)
        if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
            raise ConfigError(f"{self.where}.{key}: expected {kind.__name__}, got {value!r}")
        return value

    def done(self) -> None:
        if self.table:
            raise ConfigError(f"{self.where}: unknown key(s) {sorted(self.table)}")


def _choice(where: str, value: str, allowed: set[str]) -> str:
    if value not in allowed:
        raise ConfigError(f"{where}: {value!r} is not one of {sorted(allowed)}")
    return value


def _field(where: str, raw: Any) -> FieldSpec:
    r = _Reader(where, raw)
    name = r.take("name", str)
    page = r.take("page", int)
    box = r.take("box", list)
    r.done()
    if len(box) != 4 or not all(isinstance(v, int) and not isinstance(v, bool) for v in box):
        raise ConfigError(f"{where}.box: expected four integers [x1, y1, x2, y2]")
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        raise ConfigError(f"{where}.box: x2 must exceed x1 and y2 must exceed y1")
    return FieldSpec(name=name, page=page, box=(x1, y1, x2, y2))


def _verification(where: str, raw: Any) -> VerificationSpec:
    default = VerificationSpec()
    r = _Reader(where, raw)
    page = r.take("page", int, default.page)
    position = _choice(f"{where}.position", r.take("position", str, default.position),
                       VERIFICATION_POSITIONS)
    size = r.take("size", int, default.size)
    margin = r.take("margin", int, default.margin)
    r.done()
    if page == 0:
        raise ConfigError(f"{where}.page: pages count from 1 (negative: from the end)")
    if not 36 <= size <= 216:
        raise ConfigError(f"{where}.size: {size} pt is not between 36 and 216 "
                          "(a smaller QR code does not scan from paper)")
    if not 0 <= margin <= 144:
        raise ConfigError(f"{where}.margin: {margin} pt is not between 0 and 144")
    return VerificationSpec(page=page, position=position, size=size, margin=margin)


def _appearance(where: str, text: str) -> str:
    try:
        text % {k: "" for k in APPEARANCE_KEYS}
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigError(
            f"{where}: bad placeholder ({e}); allowed: {sorted(APPEARANCE_KEYS)}"
        ) from e
    return text


def _role(where: str, raw: Any) -> RolePolicy:
    r = _Reader(where, raw)
    name = r.take("name", str)
    title = r.take("title", str)
    field = _field(f"{where}.field", r.take("field", dict))
    appearance = _appearance(f"{where}.appearance", r.take("appearance", str))
    key_usage = r.take("key_usage", list)
    for ku in key_usage:
        _choice(f"{where}.key_usage", ku, KEY_USAGES)
    attr = r.take("school_code_attribute", str, None)
    if attr is not None:
        _choice(f"{where}.school_code_attribute", attr, NAME_ATTRIBUTES)
    r.done()
    return RolePolicy(name=name, title=title, field=field, appearance=appearance,
                      key_usage=frozenset(key_usage), school_code_attribute=attr)


def parse_policy(where: str, raw: dict[str, Any]) -> Policy:
    r = _Reader(where, raw)
    pid = r.take("id", str)
    version = r.take("version", int)
    title = r.take("title", str)
    hash_algorithm = _choice(f"{where}.hash_algorithm", r.take("hash_algorithm", str),
                             HASH_ALGORITHMS)
    docmdp = _choice(f"{where}.docmdp", r.take("docmdp", str), DOCMDP_LEVELS)
    roles_raw = r.take("roles", list)
    verification = _verification(f"{where}.verification", r.take("verification", dict, {}))
    grades = _grades(f"{where}.grades", r.take("grades", list, None))
    r.done()
    roles = tuple(_role(f"{where}.roles[{i}]", x) for i, x in enumerate(roles_raw))
    if not roles:
        raise ConfigError(f"{where}: a policy needs at least one role")
    for attr, label in ((lambda x: x.name, "role names"),
                        (lambda x: x.field.name, "field names")):
        values = [attr(x) for x in roles]
        if len(set(values)) != len(values):
            raise ConfigError(f"{where}: duplicate {label}: {values}")
    if version < 1:
        raise ConfigError(f"{where}.version: must be >= 1")
    return Policy(id=pid, version=version, title=title, hash_algorithm=hash_algorithm,
                  docmdp=docmdp, roles=roles, verification=verification, grades=grades)


def _grades(where: str, raw: list[Any] | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    if (len(raw) != 2 or not all(isinstance(g, int) and not isinstance(g, bool) for g in raw)
            or not 1 <= raw[0] <= raw[1] <= 12):
        raise ConfigError(f"{where}: expected [lowest, highest] grades within 1-12, "
                          f"got {raw!r}")
    return raw[0], raw[1]


def load_policies(directory: Path) -> dict[str, Policy]:
    """Every policies/*.toml, keyed by id; the file name must equal the id."""
    if not directory.is_dir():
        raise ConfigError(f"policy directory {directory} does not exist")
    policies: dict[str, Policy] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path.name}: not valid TOML: {e}") from e
        policy = parse_policy(path.name, raw)
        if policy.id != path.stem:
            raise ConfigError(f"{path.name}: id {policy.id!r} must match the file name")
        policies[policy.id] = policy
    if not policies:
        raise ConfigError(f"no policies (*.toml) in {directory}")
    return policies
