"""A typed client of hocba's HTTP API (openapi.yaml), for `hocba agent` and `hocba batch`.

Answers are parsed into the shapes openapi.yaml documents; an error answer becomes
ApiError (status, code, title, detail from the problem+json). The API key lives only in
the session's auth hook: never in a message, a repr or a log.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Required, TypedDict, cast
from urllib.parse import quote

import requests

from signer.errors import FieldError, HocbaError

DEFAULT_TIMEOUT = (10.0, 120.0)  # (connect, read) seconds, on every request
Timeout = float | tuple[float, float]


# --------------------------------------------------------------------------- errors


class ApiClientError(HocbaError):
    """A call to hocba failed, seen from the client (never raised by the service)."""

    status = 502
    code = "api_client_error"
    title = "hocba API call failed"


class ApiError(ApiClientError):
    """hocba answered with an error status; its problem+json says why."""

    def __init__(self, status: int, code: str, detail: str, *, title: str = "",
                 method: str = "", path: str = "",
                 errors: Sequence[FieldError] = ()) -> None:
        super().__init__(detail, code=code, status=status, title=title or code,
                         errors=list(errors))
        self.method = method
        self.path = path

    def __str__(self) -> str:
        where = f"{self.method} {self.path} -> " if self.method else ""
        fields = "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        return (f"{where}{self.status} {self.code}: {self.detail}"
                + (f" ({fields})" if fields else ""))

    @classmethod
    def from_response(cls, resp: requests.Response, method: str, path: str) -> ApiError:
        body: Any = None
        if "json" in resp.headers.get("Content-Type", ""):
            try:
                body = resp.json()
            except ValueError:
                body = None
        if (isinstance(body, dict) and isinstance(body.get("code"), str)
                and isinstance(body.get("detail"), str)):
            errors = body.get("errors")
            return cls(resp.status_code, body["code"], body["detail"],
                       title=str(body.get("title") or ""), method=method, path=path,
                       errors=[FieldError(str(e.get("field")), str(e.get("message")))
                               for e in errors if isinstance(e, dict)]
                       if isinstance(errors, list) else [])
        # Not a hocba problem (a proxy's page, say): its first words.
        text = " ".join((resp.text or "").split())[:200]
        return cls(resp.status_code, f"http_{resp.status_code}", text or str(resp.reason or ""),
                   title=str(resp.reason or ""), method=method, path=path)


class ApiUnreachable(ApiClientError):
    """No answer: the connection failed or timed out."""

    status = 503
    code = "api_unreachable"
    title = "hocba unreachable"

    def __init__(self, method: str, path: str, base_url: str, *, reason: str,
                 timeout: Timeout | None = None) -> None:
        if timeout is not None:
            detail = f"{method} {path}: no answer from {base_url} within {timeout} s"
        else:
            detail = f"{method} {path}: cannot reach {base_url} ({reason})"
        super().__init__(detail)
        self.method = method
        self.path = path
        self.url = base_url + path
        self.reason = reason  # the requests exception's class name
        self.timed_out = timeout is not None


class ApiBadAnswer(ApiClientError):
    """A success answer that is not the shape openapi.yaml documents."""

    code = "api_bad_answer"
    title = "Unexpected answer from hocba"


# --------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class FailedItem:
    record_id: str
    code: str
    detail: str


@dataclass(frozen=True)
class SigningSession:
    """POST /v1/records/{record_id}/signing-sessions (201)."""

    session_id: str
    digest_algorithm: str
    data_to_sign: bytes
    digest: bytes
    expires_at: str


@dataclass(frozen=True)
class SessionItem:
    record_id: str
    digest: bytes
    data_to_sign: bytes


@dataclass(frozen=True)
class BatchSigningSession:
    """POST /v1/batch-signing-sessions (201): one item per record that can be signed."""

    session_id: str
    digest_algorithm: str
    items: list[SessionItem]
    failed: list[FailedItem]
    expires_at: str


@dataclass(frozen=True)
class ItemResult:
    record_id: str
    status: str  # "signed" | "failed"
    code: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "signed"


@dataclass(frozen=True)
class BatchSigningResult:
    """POST /v1/batch-signing-sessions/{session_id}/complete (200)."""

    session_id: str
    total: int
    done: int
    results: list[ItemResult]


@dataclass(frozen=True)
class BatchJob:
    """POST /v1/batches (202)."""

    job_id: str
    status: str
    total: int


@dataclass(frozen=True)
class Job:
    """GET /v1/jobs/{job_id}; `done` counts records signed."""

    job_id: str
    kind: str
    status: str  # "queued" | "running" | "finished"
    total: int
    done: int
    failed: list[FailedItem]


class Record(TypedDict, total=False):
    """components/schemas/Record."""

    id: Required[str]
    status: Required[str]  # "awaiting_signatures" | "archived"
    record_type: Required[str]
    policy: Required[str]
    signatures: Required[list[dict[str, Any]]]
    next_role: Required[str | None]
    document: Required[dict[str, Any]]
    created_at: Required[str]
    school: dict[str, Any]
    school_year: str
    supersedes: str | None
    superseded_by: str | None
    updated_at: str
    archive: dict[str, Any]


# Record's required keys (Record.__required_keys__ misses them under postponed annotations)
_RECORD_REQUIRED = ("id", "status", "record_type", "policy", "signatures", "next_role",
                    "document", "created_at")


class _Answer:
    """Typed reads of one JSON object of an answer; a bad field is ApiBadAnswer."""

    def __init__(self, doc: Any, what: str) -> None:
        if not isinstance(doc, dict):
            raise ApiBadAnswer(f"{what}: not a JSON object")
        self.doc: dict[str, Any] = doc
        self.what = what

    def _get(self, key: str) -> Any:
        if key not in self.doc:
            raise ApiBadAnswer(f"{self.what}: the answer lacks {key}")
        return self.doc[key]

    def text(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise ApiBadAnswer(f"{self.what}: {key} is not a string")
        return value

    def opt_text(self, key: str) -> str | None:
        return None if self.doc.get(key) is None else self.text(key)

    def integer(self, key: str) -> int:
        value = self._get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ApiBadAnswer(f"{self.what}: {key} is not an integer")
        return value

    def b64(self, key: str) -> bytes:
        try:
            return base64.b64decode(self.text(key), validate=True)
        except (binascii.Error, ValueError):
            raise ApiBadAnswer(f"{self.what}: {key} is not base64") from None

    def objects(self, key: str) -> list[_Answer]:
        value = self._get(key)
        if not isinstance(value, list):
            raise ApiBadAnswer(f"{self.what}: {key} is not a list")
        return [_Answer(v, f"{self.what}: {key}[{i}]") for i, v in enumerate(value)]

    def failed(self, key: str = "failed") -> list[FailedItem]:
        return [FailedItem(f.text("record_id"), f.text("code"), f.text("detail"))
                for f in self.objects(key)]


class _BearerAuth(requests.auth.AuthBase):
    """Authorization: Bearer <API key>, as signer/http/auth.py reads it."""

    def __init__(self, api_key: str) -> None:
        self._header = f"Bearer {api_key}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "<_BearerAuth>"


# --------------------------------------------------------------------------- client


class ApiClient:
    """hocba's API at base_url, over one requests.Session (one connection pool)."""

    def __init__(self, base_url: str, api_key: str, *, timeout: Timeout = DEFAULT_TIMEOUT,
                 user_agent: str | None = None, verify: bool | str = True,
                 session: requests.Session | None = None) -> None:
        """`verify`: TLS certificate checks (requests' meaning: True, or a CA bundle's
        path; REQUESTS_CA_BUNDLE applies when True)."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.verify = verify
        self.session.auth = _BearerAuth(api_key)
        self.session.headers["Accept"] = "application/json"
        if user_agent:
            self.session.headers["User-Agent"] = user_agent

    def __repr__(self) -> str:
        return f"ApiClient({self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *,
              idempotency_key: str | None = None) -> _Answer:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        try:
            resp = self.session.request(method, self.base_url + path, json=body,
                                        headers=headers, timeout=self.timeout)
        except requests.Timeout as e:
            raise ApiUnreachable(method, path, self.base_url, reason=type(e).__name__,
                                 timeout=self.timeout) from None
        except requests.RequestException as e:
            raise ApiUnreachable(method, path, self.base_url,
                                 reason=type(e).__name__) from None
        if resp.status_code >= 400:
            raise ApiError.from_response(resp, method, path)
        try:
            doc = resp.json()
        except ValueError:
            raise ApiBadAnswer(f"{method} {path}: the answer ({resp.status_code}) is "
                               "not JSON") from None
        return _Answer(doc, f"{method} {path}")

    # -- two-step signing (client-held keys)

    def start_signing_session(self, record_id: str, role: str,
                              certificate_chain: Sequence[str], *,
                              idempotency_key: str | None = None) -> SigningSession:
        path = f"/v1/records/{_seg(record_id)}/signing-sessions"
        a = self._call("POST", path, {"role": role, "certificate_chain": list(certificate_chain)},
                       idempotency_key=idempotency_key)
        return SigningSession(session_id=a.text("session_id"),
                              digest_algorithm=a.text("digest_algorithm"),
                              data_to_sign=a.b64("data_to_sign"), digest=a.b64("digest"),
                              expires_at=a.text("expires_at"))

    def complete_signing_session(self, session_id: str, signature_value: bytes, *,
                                 idempotency_key: str | None = None) -> Record:
        path = f"/v1/signing-sessions/{_seg(session_id)}/complete"
        a = self._call("POST", path, {"signature_value": _b64(signature_value)},
                       idempotency_key=idempotency_key)
        missing = sorted(k for k in _RECORD_REQUIRED if k not in a.doc)
        if missing:
            raise ApiBadAnswer(f"{a.what}: the answer lacks {', '.join(missing)}")
        a.text("id")
        a.text("status")
        return cast(Record, a.doc)

    def start_batch_signing_session(self, role: str, record_ids: Sequence[str],
                                    certificate_chain: Sequence[str], *,
                                    idempotency_key: str | None = None
                                    ) -> BatchSigningSession:
        a = self._call("POST", "/v1/batch-signing-sessions",
                       {"role": role, "certificate_chain": list(certificate_chain),
                        "record_ids": list(record_ids)}, idempotency_key=idempotency_key)
        return BatchSigningSession(
            session_id=a.text("session_id"), digest_algorithm=a.text("digest_algorithm"),
            items=[SessionItem(i.text("record_id"), i.b64("digest"), i.b64("data_to_sign"))
                   for i in a.objects("items")],
            failed=a.failed(), expires_at=a.text("expires_at"))

    def complete_batch_signing_session(self, session_id: str,
                                       signatures: Mapping[str, bytes], *,
                                       idempotency_key: str | None = None
                                       ) -> BatchSigningResult:
        path = f"/v1/batch-signing-sessions/{_seg(session_id)}/complete"
        body = {"signatures": [{"record_id": rid, "signature_value": _b64(sig)}
                               for rid, sig in signatures.items()]}
        a = self._call("POST", path, body, idempotency_key=idempotency_key)
        return BatchSigningResult(
            session_id=a.text("session_id"), total=a.integer("total"), done=a.integer("done"),
            results=[ItemResult(r.text("record_id"), r.text("status"), r.opt_text("code"),
                                r.opt_text("detail")) for r in a.objects("results")])

    # -- batches with server-held or remote keys, and jobs

    def create_batch(self, role: str, key: str, record_ids: Sequence[str], *,
                     authorization: Mapping[str, str] | None = None,
                     idempotency_key: str | None = None) -> BatchJob:
        """`authorization` is the remote provider's one-time {"otp": ...} or {"pin": ...}."""
        body: dict[str, Any] = {"role": role, "key": key, "record_ids": list(record_ids)}
        if authorization:
            body["authorization"] = dict(authorization)
        a = self._call("POST", "/v1/batches", body, idempotency_key=idempotency_key)
        return BatchJob(job_id=a.text("job_id"), status=a.text("status"), total=a.integer("total"))

    def get_job(self, job_id: str) -> Job:
        a = self._call("GET", f"/v1/jobs/{_seg(job_id)}")
        return Job(job_id=a.text("job_id"), kind=a.text("kind"), status=a.text("status"),
                   total=a.integer("total"), done=a.integer("done"), failed=a.failed())


def _seg(value: str) -> str:
    return quote(value, safe="")


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")
