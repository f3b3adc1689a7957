"""openapi.yaml is a valid OpenAPI 3.1 document and matches the routes the app serves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

pytestmark = pytest.mark.integration
SPEC = Path(__file__).resolve().parents[2] / "openapi.yaml"
UNDOCUMENTED = {"/static/<path:filename>", "/verify/<record_id>/document"}


def test_spec_is_valid_openapi_31() -> None:
    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_is_documented_and_every_documented_path_exists(app: Any) -> None:
    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    documented = {(path, method.upper()) for path, ops in doc["paths"].items()
                  for method in ops if method in {"get", "post", "put", "delete", "patch"}}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule in UNDOCUMENTED:
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method))
    assert served == documented
