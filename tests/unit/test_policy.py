"""Policies load from data and refuse unknown keys and bad values with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from signer.errors import ConfigError
from signer.policy import load_policies

REPO = Path(__file__).resolve().parents[2]
GOOD = (REPO / "policies" / "hoc_ba_tieu_hoc.toml").read_text(encoding="utf-8")


def test_shipped_policies_load_in_order() -> None:
    policies = load_policies(REPO / "policies")
    assert {"hoc_ba_tieu_hoc", "hoc_ba_thcs", "hoc_ba_thpt"} <= set(policies)
    for policy in policies.values():
        assert policy.role_names == ("teacher", "principal", "seal")
        assert policy.docmdp == "fill_forms"
        assert policy.role("seal").school_code_attribute == "user_id"  # type: ignore[union-attr]
        assert policy.next_role(set()).name == "teacher"  # type: ignore[union-attr]
        assert policy.next_role({"teacher"}).name == "principal"  # type: ignore[union-attr]
        assert policy.next_role({"teacher", "principal", "seal"}) is None


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.replace('docmdp = "fill_forms"', 'docmdp = "fill_forms"\ncolour = "red"'),
     "unknown key(s) ['colour']"),
    (lambda s: s.replace('hash_algorithm = "sha256"', 'hash_algorithm = "md5"'),
     "'md5' is not one of"),
    (lambda s: s.replace('"digital_signature", "non_repudiation"]',
                         '"digital_signature", "key_encipherment"]', 1),
     "'key_encipherment' is not one of"),
    (lambda s: s.replace("box = [40, 40, 205, 130]", "box = [205, 40, 40, 130]"),
     "x2 must exceed x1"),
    (lambda s: s.replace("version = 1", 'version = "one"'), "expected int"),
    (lambda s: s.replace('name = "principal"', 'name = "teacher"'), "duplicate role names"),
    (lambda s: s.replace("%(signer)s", "%(pupil)s", 1), "bad placeholder"),
    (lambda s: s.replace('school_code_attribute = "user_id"',
                         'school_code_attribute = "favourite_colour"'), "is not one of"),
    (lambda s: s.replace('id = "hoc_ba_tieu_hoc"', 'id = "other"'), "must match the file name"),
    (lambda s: s + "\n[[[broken", "not valid TOML"),
])
def test_bad_policy_stops_loading(tmp_path: Path, edit: object, message: str) -> None:
    (tmp_path / "hoc_ba_tieu_hoc.toml").write_text(edit(GOOD), encoding="utf-8")  # type: ignore[operator]
    with pytest.raises(ConfigError) as err:
        load_policies(tmp_path)
    assert message in str(err.value)
    assert "hoc_ba_tieu_hoc.toml" in str(err.value)


def test_empty_policy_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no policies"):
        load_policies(tmp_path)
