"""What every blueprint shares: the service, the caller, the JSON body checked against
the endpoint's schema, multipart text parts as sent, query-string errors, PDF answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import IO, Any, cast

import flask
from flask import Response, current_app, g, request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser, MultiPartParser

from signer.clients import Client
from signer.errors import FieldError, HocbaError, RequestError
from signer.http.schemas import check_body
from signer.service import Actor, Hocba

# A JSON body (every JSON POST): far below the PDF limit, far above the largest valid
# one (a 500-record batch completion with 4096-bit signatures is ~400 KB).
JSON_MAX_BYTES = 1024 * 1024
# Nesting of a JSON body: the deepest documented body nests 4 levels.
JSON_MAX_DEPTH = 32
# A multipart text part (`metadata`): a valid one is a few KB.
FORM_TEXT_MAX_BYTES = 64 * 1024
# What Werkzeug may hold of any one part while parsing (its MAX_FORM_MEMORY_SIZE): over
# its 64 KiB read buffer, or a large file part would trip it.
FORM_PART_MEMORY_BYTES = 4 * FORM_TEXT_MAX_BYTES


def service() -> Hocba:
    return cast(Hocba, current_app.extensions["hocba"])


def client() -> Client:
    return cast(Client, g.client)


def actor() -> Actor:
    return Actor.of(client())


def body_too_large() -> HocbaError:
    return HocbaError(f"a JSON body is at most {JSON_MAX_BYTES} bytes", code="body_too_large",
                      status=413, title="Payload too large")


def json_bytes() -> bytes:
    """The request body, read only up to the JSON limit (413 `body_too_large`). One byte
    more is allowed to be read: Werkzeug stops a chunked body (no Content-Length) at its
    limit without an error, so a longer read is how the excess shows."""
    request.max_content_length = JSON_MAX_BYTES + 1
    try:
        data = request.get_data(cache=True)
    except RequestEntityTooLarge as e:
        raise body_too_large() from e
    if len(data) > JSON_MAX_BYTES:
        raise body_too_large()
    return data


def json_body() -> dict[str, Any]:
    """The request's JSON object, valid under the endpoint's request schema in
    openapi.yaml (400 `body_invalid_json`, 400 `body_too_deep`, 413 `body_too_large`,
    422 with the schema's code)."""
    data = json_bytes()
    try:
        body = json.loads(data or b"null", parse_constant=_no_constant)
    except RecursionError as e:  # the decoder's own guard, not the stack
        raise _too_deep() from e
    except ValueError as e:
        raise RequestError("the body is not valid JSON", code="body_invalid_json") from e
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object", code="body_invalid_json")
    if _nests_deeper(body, JSON_MAX_DEPTH):
        raise _too_deep()
    assert request.url_rule is not None
    check_body(request.url_rule.rule, request.method, body)
    return body


def _too_deep() -> RequestError:
    return RequestError(f"the JSON body nests deeper than {JSON_MAX_DEPTH} levels",
                        code="body_too_deep")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _nests_deeper(value: Any, most: int) -> bool:
    """Whether `value` has arrays or objects more than `most` levels deep (iterative)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > most:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


# -- multipart -------------------------------------------------------------------------


class FormPartTooLarge(RequestEntityTooLarge):
    """A text part of a multipart body over FORM_TEXT_MAX_BYTES (not the whole body)."""


def form_part_too_large() -> HocbaError:
    return HocbaError(f"a text part of the form (metadata) exceeds {FORM_TEXT_MAX_BYTES} "
                      "bytes, or the form has too many parts", code="metadata_too_large",
                      status=413, title="Payload too large")


class _BytesPreservingParser(MultiPartParser):
    """Text parts decoded as Latin-1, byte for byte, whatever charset they name, so the
    view sees the bytes sent (Werkzeug would replace bytes that are not UTF-8)."""

    def get_part_charset(self, headers: Headers) -> str:
        return "latin-1"


class _FormDataParser(FormDataParser):
    def _parse_multipart(self, stream: IO[bytes], mimetype: str, content_length: int | None,
                         options: dict[str, str]) -> Any:
        # as FormDataParser._parse_multipart (Werkzeug 3.1), with the parser above, and
        # the files spooled so far closed when parsing stops half-way
        spooled: list[IO[bytes]] = []

        def spool(total_content_length: int | None, content_type: str | None,
                  filename: str | None, content_length: int | None = None) -> IO[bytes]:
            spooled.append(self.stream_factory(total_content_length=total_content_length,
                                               content_type=content_type, filename=filename,
                                               content_length=content_length))
            return spooled[-1]

        parser = _BytesPreservingParser(
            stream_factory=spool, max_form_memory_size=self.max_form_memory_size,
            max_form_parts=self.max_form_parts, cls=self.cls)
        boundary = options.get("boundary", "").encode("ascii")
        if not boundary:
            raise ValueError("Missing boundary")
        try:
            form, files = parser.parse(stream, boundary, content_length)
        except BaseException as e:
            for f in spooled:
                f.close()
            if not isinstance(e, RequestEntityTooLarge):
                raise
            if content_length is None and getattr(stream, "is_exhausted", False):
                raise  # a streamed body over the request limit
            raise FormPartTooLarge() from e
        return stream, form, files


class Request(flask.Request):
    """The app's request class (`MAX_FORM_MEMORY_SIZE` is FORM_PART_MEMORY_BYTES)."""

    form_data_parser_class = _FormDataParser


def form_text(name: str) -> bytes | None:
    """A multipart text part (or a file part of that name, within the same limit) as the
    bytes sent; decoding them is the caller's (413 `metadata_too_large`)."""
    text = request.form.get(name)
    if text is not None:
        data = text.encode("latin-1")  # see _BytesPreservingParser
    elif (part := request.files.get(name)) is not None:
        data = part.read(FORM_TEXT_MAX_BYTES + 1)
    else:
        return None
    if len(data) > FORM_TEXT_MAX_BYTES:
        raise FormPartTooLarge()
    return data


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
