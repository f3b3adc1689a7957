"""Request bodies checked against openapi.yaml's schemas: codes, fields, messages."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from signer.errors import InvalidInput
from signer.http.schemas import check_body, json_schema, openapi_document, openapi_path

SIGN = "/v1/records/<record_id>/signatures"
BATCH_SESSION = "/v1/batch-signing-sessions"
BODY_METHODS = ("post", "put", "patch")


def _fails(rule: str, body: Any) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        check_body(rule, "POST", body)
    return caught.value


def test_flask_rules_become_openapi_paths() -> None:
    assert openapi_path("/v1/records/<record_id>/signatures") == \
        "/v1/records/{record_id}/signatures"
    assert openapi_path("/static/<path:filename>") == "/static/{filename}"
    assert openapi_path("/v1/stats") == "/v1/stats"


def test_every_json_request_schema_is_a_valid_json_schema() -> None:
    checked = set()
    for path, ops in openapi_document()["paths"].items():
        for method in set(ops) & set(BODY_METHODS):
            schema = json_schema(path, method)
            if schema is not None:
                Draft202012Validator.check_schema(schema)
                checked.add(path)
    assert {"/v1/records/{record_id}/signatures", "/v1/records/{record_id}/signing-sessions",
            "/v1/signing-sessions/{session_id}/complete", "/v1/batch-signing-sessions",
            "/v1/batch-signing-sessions/{session_id}/complete", "/v1/batches",
            "/v1/archive/records/{record_id}/share"} <= checked


def test_a_valid_body_passes() -> None:
    check_body(SIGN, "POST", {"role": "teacher", "key": "school-1-teacher"})


def test_missing_member_names_the_field_with_its_code() -> None:
    e = _fails(SIGN, {"key": "school-1-teacher"})
    assert e.code == "body_invalid"
    assert [(f.field, f.message) for f in e.errors] == [("role", "is required")]
    e = _fails(BATCH_SESSION, {"record_ids": ["r1"], "certificate_chain": ["PEM"]})
    assert e.code == "role_unknown"  # the code the schema gives `role`
    assert [(f.field, f.message) for f in e.errors] == [("role", "is required")]


def test_every_broken_rule_is_listed_in_the_schema_order() -> None:
    e = _fails(SIGN, {"key": 7, "role": "", "authorization": {"colour": "red"}})
    assert [f.field for f in e.errors] == ["role", "key", "authorization"]
    assert [f.message for f in e.errors][:2] == ["must have at least 1 character(s)",
                                                "must be of type string"]
    assert e.code == "body_invalid" and e.status == 422


def test_keyword_codes_from_the_schema() -> None:
    ids = [f"r{n}" for n in range(501)]
    schema = json_schema(BATCH_SESSION, "post")
    assert schema is not None and "record_ids" in schema["properties"]
    e = _fails(BATCH_SESSION, {"record_ids": ids, "role": "teacher",
                               "certificate_chain": ["PEM"]})
    assert e.code == "batch_too_large"
    e = _fails(BATCH_SESSION, {"record_ids": ["r1", "r1"], "role": "teacher",
                               "certificate_chain": ["PEM"]})
    assert e.code == "body_invalid"


def test_messages_never_carry_the_value_sent() -> None:
    secret = "9" * 300  # an OTP longer than the schema allows
    e = _fails(SIGN, {"role": "teacher", "key": "k", "authorization": {"otp": secret}})
    assert e.code == "authorization_required"
    assert secret not in str(e) and secret not in repr(e.problem())
    assert all(secret not in f.message for f in e.errors)


def test_an_endpoint_without_a_json_body_is_a_programming_error() -> None:
    with pytest.raises(LookupError):
        check_body("/v1/stats", "GET", {})
