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


def test_spec_is_valid_openapi_31() -> None:
    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_is_documented_and_every_documented_path_exists(app: Any) -> None:
    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    documented = {(path, method.upper()) for path, ops in doc["paths"].items()
                  for method in ops if method in {"get", "post", "put", "delete", "patch"}}
    served = set()
    for rule in app.url_map.iter_rules():  # every one: no route is left undocumented
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            served.add((path, method))
    assert served == documented


def test_every_json_body_is_checked_against_its_documented_schema(
        app: Any, http: Any, api_keys: dict[str, str]) -> None:
    """Each POST route that takes JSON refuses a non-object body before anything else
    (400 body_invalid_json); a route that reads JSON without a documented schema would
    answer 500 to `{}` (LookupError in check_body): none does."""
    from signer.http.schemas import json_schema

    documented, reached = set(), set()
    for client in ("school-1", "archivist", "admin"):
        headers = {"Authorization": f"Bearer {api_keys[client]}"}
        for rule in app.url_map.iter_rules():
            if "POST" not in rule.methods:
                continue
            url = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", "x0", rule.rule)
            r = http.post(url, data=b"[]", headers=headers, content_type="application/json")
            if json_schema(rule.rule, "POST") is not None:
                documented.add(rule.rule)
                if r.status_code not in (401, 403):
                    reached.add(rule.rule)
                    assert (r.status_code, r.get_json()["code"]) == \
                        (400, "body_invalid_json"), url
            r = http.post(url, json={}, headers=headers)
            assert r.status_code < 500, (url, r.get_json())
    assert len(documented) >= 7 and reached == documented


def test_the_served_document_names_no_fixed_host(http: Any) -> None:
    """The server is relative (`/`): the host that served the document, whichever
    instance or proxy that is."""
    resp = http.get("/openapi.yaml")
    assert resp.status_code == 200
    doc = yaml.safe_load(resp.get_data(as_text=True))
    assert doc["servers"] == [{"url": "/", "description": doc["servers"][0]["description"]}]
    assert "127.0.0.1" not in resp.get_data(as_text=True)


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    doc = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return [(path, method, op) for path, ops in doc["paths"].items()
            for method, op in ops.items() if method in {"get", "post", "put", "delete"}]


PROBLEM_REF = {"$ref": "#/components/responses/Problem"}


@pytest.mark.parametrize(("path", "method", "op"), _operations(),
                         ids=[f"{m.upper()} {p}" for p, m, _ in _operations()])
def test_each_operation_documents_the_problems_it_can_answer(
        path: str, method: str, op: dict[str, Any]) -> None:
    """401/403 behind an API key; 400/413/422 for a JSON or multipart body; 404 with a
    path parameter; 409/422 with Idempotency-Key (a conflict, a bad key). The HTML pages
    document theirs as pages."""
    responses = op["responses"]
    if any("text/html" in (r.get("content") or {}) for r in responses.values()):
        return
    want = set()
    if op.get("security") != []:
        want |= {"401", "403"}
    content = (op.get("requestBody") or {}).get("content") or {}
    if {"application/json", "multipart/form-data"} & set(content):
        want |= {"400", "413", "422"}
    if "{" in path:
        want.add("404")
    if any("IdempotencyKey" in p.get("$ref", "") for p in op.get("parameters", [])):
        want |= {"409", "422"}
    missing = {code for code in want if responses.get(code) != PROBLEM_REF}
    assert not missing, (method, path, sorted(missing))
