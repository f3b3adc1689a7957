"""Bearer API keys -> Client; scopes per endpoint."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import g, request

from signer.errors import Forbidden, Unauthorized
from signer.http.common import service

F = TypeVar("F", bound=Callable[..., Any])

def require(*scopes: str) -> Callable[[F], F]:
    """Bearer API key with at least one of `scopes` (401 without a known key, 403 without
    the scope)."""
    def deco(fn: F) -> F:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("send Authorization: Bearer <api key>", code="unauthorized")
            found = service().clients.authenticate(token.strip())
            if found is None:
                raise Unauthorized("unknown API key", code="unauthorized")
            g.client = found
            g.tenant = found.tenant
            if not found.scopes & set(scopes):
                raise Forbidden(f"this API key lacks the scope {' or '.join(scopes)}",
                                code="scope_missing")
            return fn(*args, **kwargs)

        wrapper.required_scopes = scopes  # type: ignore[attr-defined]  # read by the tests
        return cast(F, wrapper)

    return deco
