"""What every blueprint shares: the service, the caller, the JSON body checked against
the endpoint's schema, query-string errors, PDF answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from flask import Response, current_app, g, request

from signer.clients import Client
from signer.errors import FieldError, RequestError
from signer.http.schemas import check_body
from signer.service import Actor, Hocba


def service() -> Hocba:
    return cast(Hocba, current_app.extensions["hocba"])


def client() -> Client:
    return cast(Client, g.client)


def actor() -> Actor:
    return Actor.of(client())


def json_body() -> dict[str, Any]:
    """The request's JSON object, valid under the endpoint's request schema in
    openapi.yaml (400 `body_invalid_json`, 422 with the schema's code)."""
    try:
        body = json.loads(request.get_data(cache=True) or b"null")
    except ValueError as e:
        raise RequestError("the body is not valid JSON", code="body_invalid_json") from e
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object", code="body_invalid_json")
    assert request.url_rule is not None
    check_body(request.url_rule.rule, request.method, body)
    return body


def query_error(field: str, message: str) -> RequestError:
    return RequestError(f"{field}: {message}", code="query_invalid",
                        errors=[FieldError(field, message)])


def pdf_response(read: Callable[[], bytes], sha256: str, filename: str, *,
                 inline: bool = False) -> Response:
    """A PDF with its SHA-256 as ETag (304 for a matching If-None-Match, unread)."""
    if request.if_none_match.contains(sha256):
        return Response(status=304, headers={"ETag": f'"{sha256}"'})
    resp = Response(read(), mimetype="application/pdf")
    resp.headers["ETag"] = f'"{sha256}"'
    disposition = "inline" if inline else "attachment"
    resp.headers["Content-Disposition"] = f'{disposition}; filename="{filename}"'
    return resp
