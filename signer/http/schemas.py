"""Request bodies checked against the schemas of the served OpenAPI document, one per
endpoint, so the API and its document cannot drift.

A schema names the problem code of its failures with `x-error-code` (inherited by what
it contains) and, per keyword, `x-error-codes` (e.g. `{maxItems: batch_too_large}`); the
default is `body_invalid`. Messages name the rule broken, never the value sent (it may
be a one-time password).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from signer.errors import FieldError, InvalidInput

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
DEFAULT_CODE = "body_invalid"
_FLASK_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@cache
def openapi_document() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    return doc


def openapi_path(rule: str) -> str:
    """'/v1/records/<record_id>/signatures' -> '/v1/records/{record_id}/signatures'."""
    return _FLASK_PARAM.sub(r"{\1}", rule)


def _resolved(node: Any, doc: dict[str, Any]) -> Any:
    """`node` with every local `$ref` replaced by what it names."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/"):
            target: Any = doc
            for part in ref[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return _resolved(target, doc)
        return {k: _resolved(v, doc) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolved(v, doc) for v in node]
    return node


def json_schema(rule: str, method: str) -> dict[str, Any] | None:
    """The JSON request body schema the document gives the endpoint, if any."""
    doc = openapi_document()
    op = doc.get("paths", {}).get(openapi_path(rule), {}).get(method.lower())
    content = ((op or {}).get("requestBody") or {}).get("content") or {}
    schema = (content.get("application/json") or {}).get("schema")
    return _resolved(schema, doc) if schema is not None else None


@cache
def _validator(rule: str, method: str) -> tuple[Draft202012Validator, dict[str, Any]] | None:
    schema = json_schema(rule, method)
    if schema is None:
        return None
    return Draft202012Validator(schema), schema


def check_body(rule: str, method: str, body: Any) -> None:
    """InvalidInput (422) listing every rule `body` breaks, with the code the schema
    gives the first (in the order of the schema's properties)."""
    found = _validator(rule, method)
    if found is None:
        raise LookupError(f"openapi.yaml has no JSON request body for {method} {rule}")
    validator, schema = found
    errors = list(validator.iter_errors(body))
    if not errors:
        return
    order = list(schema.get("properties") or {})
    located = sorted((_locate(e, schema) for e in errors),
                     key=lambda x: (order.index(x[0][0]) if x[0] and x[0][0] in order
                                    else len(order), x[0]))
    fields = [FieldError("/".join(path) or "(body)", message) for path, message, _ in located]
    raise InvalidInput("; ".join(f"{f.field}: {f.message}" for f in fields),
                       code=located[0][2], errors=fields)


def _locate(error: ValidationError, schema: dict[str, Any]) -> tuple[list[str], str, str]:
    """(path of the field, message, problem code) of one failure."""
    path = [str(p) for p in error.absolute_path]
    code = DEFAULT_CODE
    node: Any = schema
    for key in list(error.absolute_schema_path)[:-1]:
        if isinstance(node, dict):
            code = node.get("x-error-code", code)
        node = node[key]
    if isinstance(node, dict):
        code = node.get("x-error-codes", {}).get(error.validator,
                                                 node.get("x-error-code", code))
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = next(p for p in error.validator_value if p not in error.instance)
        prop = (node.get("properties") or {}).get(missing) or {}
        return [*path, missing], "is required", prop.get("x-error-code", code)
    return path, _message(error), code


_MESSAGES = {
    "type": "must be of type {}",
    "minLength": "must have at least {} character(s)",
    "maxLength": "must have at most {} characters",
    "minItems": "must have at least {} item(s)",
    "maxItems": "must have at most {} items",
    "uniqueItems": "must not repeat an item",
    "minimum": "must be at least {}",
    "maximum": "must be at most {}",
    "enum": "must be one of {}",
    "additionalProperties": "has a member the schema does not allow",
    "minProperties": "must have at least {} member(s)",
}


def _message(error: ValidationError) -> str:
    value = error.validator_value
    if error.validator == "enum":
        value = ", ".join(map(str, value))
    template = _MESSAGES.get(str(error.validator))
    return template.format(value) if template else f"does not satisfy `{error.validator}`"
