"""signer.apiclient against a tiny HTTP server in a thread: headers, typed answers,
problem+json as ApiError, bad answers, no answer; secrets never in messages."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from signer.apiclient import (
    ApiBadAnswer,
    ApiClient,
    ApiClientError,
    ApiError,
    ApiUnreachable,
    FailedItem,
    ItemResult,
)
from signer.errors import FieldError, HocbaError

API_KEY = "k-secret-api-key"
OTP = "otp-123456"


@dataclass
class Stub:
    """Canned answers by (method, path); every request it got."""

    answers: dict[tuple[str, str], tuple[int, str, bytes]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0

    def answer(self, method: str, path: str, status: int, body: Any,
               content_type: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.answers[(method, path)] = (status, content_type, raw)


def _handler(stub: Stub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            stub.requests.append({"method": self.command, "path": self.path,
                                  "headers": dict(self.headers),
                                  "json": json.loads(body) if body else None})
            time.sleep(stub.delay)
            status, ctype, raw = stub.answers.get(
                (self.command, self.path), (404, "text/plain", b"no such route"))
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out

        do_GET = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def api(stub: tuple[Stub, str]) -> Iterator[ApiClient]:
    with ApiClient(stub[1] + "/", API_KEY, timeout=(2.0, 5.0), user_agent="hocba-test/1") as c:
        yield c


def _record(record_id: str) -> dict[str, Any]:
    return {"id": record_id, "status": "archived", "record_type": "hoc_ba_thcs",
            "policy": "hoc_ba_thcs@1", "signatures": [], "next_role": None,
            "document": {"sha256": "00" * 32, "size": 1},
            "created_at": "2030-01-01T00:00:00Z"}


def test_signing_session_round_trip(stub: tuple[Stub, str], api: ApiClient) -> None:
    server, _ = stub
    server.answer("POST", "/v1/records/r%2F1/signing-sessions", 201, {
        "session_id": "s-1", "digest_algorithm": "sha256", "data_to_sign": "AQI=",
        "digest": "AwQ=", "expires_at": "2030-01-01T00:00:00Z"})
    server.answer("POST", "/v1/signing-sessions/s-1/complete", 200, _record("r/1"))
    session = api.start_signing_session("r/1", "principal", ["PEM"])
    assert (session.session_id, session.data_to_sign, session.digest) == (
        "s-1", b"\x01\x02", b"\x03\x04")
    record = api.complete_signing_session("s-1", b"\xff", idempotency_key="idem-1")
    assert record["status"] == "archived" and record["id"] == "r/1"
    first, second = server.requests
    assert first["json"] == {"role": "principal", "certificate_chain": ["PEM"]}
    assert second["json"] == {"signature_value": "/w=="}
    for r in server.requests:
        assert r["headers"]["Authorization"] == f"Bearer {API_KEY}"
        assert r["headers"]["Accept"] == "application/json"
        assert r["headers"]["User-Agent"] == "hocba-test/1"
    assert "Idempotency-Key" not in first["headers"]
    assert second["headers"]["Idempotency-Key"] == "idem-1"


def test_batch_session_and_results(stub: tuple[Stub, str], api: ApiClient) -> None:
    server, _ = stub
    server.answer("POST", "/v1/batch-signing-sessions", 201, {
        "session_id": "b-1", "digest_algorithm": "sha256",
        "items": [{"record_id": "a", "digest": "AA==", "data_to_sign": "AQ=="}],
        "failed": [{"record_id": "b", "code": "role_out_of_order", "detail": "later"}],
        "expires_at": "2030-01-01T00:00:00Z"})
    server.answer("POST", "/v1/batch-signing-sessions/b-1/complete", 200, {
        "session_id": "b-1", "total": 2, "done": 1,
        "results": [{"record_id": "a", "status": "signed"},
                    {"record_id": "c", "status": "failed", "code": "signature_invalid",
                     "detail": "does not verify"}]})
    batch = api.start_batch_signing_session("teacher", ["a", "b"], ["PEM"])
    assert [(i.record_id, i.digest, i.data_to_sign) for i in batch.items] == [
        ("a", b"\x00", b"\x01")]
    assert batch.failed == [FailedItem("b", "role_out_of_order", "later")]
    done = api.complete_batch_signing_session("b-1", {"a": b"\x01", "c": b"\x02"})
    assert (done.total, done.done) == (2, 1)
    assert done.results == [ItemResult("a", "signed"),
                            ItemResult("c", "failed", "signature_invalid", "does not verify")]
    assert [r.ok for r in done.results] == [True, False]
    assert server.requests[0]["json"]["record_ids"] == ["a", "b"]
    assert server.requests[1]["json"] == {"signatures": [
        {"record_id": "a", "signature_value": "AQ=="},
        {"record_id": "c", "signature_value": "Ag=="}]}


def test_batch_and_job(stub: tuple[Stub, str], api: ApiClient) -> None:
    server, _ = stub
    server.answer("POST", "/v1/batches", 202, {"job_id": "j-1", "status": "queued",
                                               "total": 2})
    server.answer("GET", "/v1/jobs/j-1", 200, {
        "job_id": "j-1", "kind": "batch_sign", "status": "finished", "total": 2, "done": 1,
        "failed": [{"record_id": "r2", "code": "record_not_found", "detail": "no r2"}],
        "created_at": "2030-01-01T00:00:00Z", "finished_at": None})
    job = api.create_batch("teacher", "school-1-csc-teacher", ["r1", "r2"],
                           authorization={"otp": OTP})
    assert (job.job_id, job.status, job.total) == ("j-1", "queued", 2)
    assert server.requests[0]["json"] == {"role": "teacher", "key": "school-1-csc-teacher",
                                          "record_ids": ["r1", "r2"],
                                          "authorization": {"otp": OTP}}
    got = api.get_job("j-1")
    assert (got.status, got.total, got.done) == ("finished", 2, 1)
    assert got.failed == [FailedItem("r2", "record_not_found", "no r2")]
    api.create_batch("teacher", "k", ["r1"])
    assert "authorization" not in server.requests[-1]["json"]


def test_problem_is_api_error(stub: tuple[Stub, str], api: ApiClient) -> None:
    server, _ = stub
    server.answer("POST", "/v1/batches", 422, {
        "type": "https://hocba.example/problems/authorization_invalid",
        "title": "Unprocessable input", "status": 422, "code": "authorization_invalid",
        "detail": "the provider refused the one-time password",
        "errors": [{"field": "authorization/otp", "message": "refused"}]},
        content_type="application/problem+json")
    with pytest.raises(ApiError) as err:
        api.create_batch("teacher", "k", ["r1"], authorization={"otp": OTP})
    e = err.value
    assert isinstance(e, ApiClientError) and isinstance(e, HocbaError)
    assert (e.status, e.code, e.title) == (422, "authorization_invalid", "Unprocessable input")
    assert e.detail == "the provider refused the one-time password"
    assert e.errors == [FieldError("authorization/otp", "refused")]
    assert str(e) == ("POST /v1/batches -> 422 authorization_invalid: the provider refused "
                      "the one-time password (authorization/otp: refused)")
    for text in (str(e), repr(e), repr(vars(e)), repr(api)):
        assert API_KEY not in text and OTP not in text


def test_error_without_a_problem(stub: tuple[Stub, str], api: ApiClient) -> None:
    server, _ = stub
    server.answer("GET", "/v1/jobs/j-1", 502, b"<html>Bad  Gateway</html>", "text/html")
    with pytest.raises(ApiError) as err:
        api.get_job("j-1")
    assert (err.value.status, err.value.code) == (502, "http_502")
    assert err.value.detail == "<html>Bad Gateway</html>"
    server.answer("GET", "/v1/jobs/j-2", 500, {"error": "not a problem"})
    with pytest.raises(ApiError, match="500 http_500: "):
        api.get_job("j-2")


@pytest.mark.parametrize(("body", "message"), [
    (b"not json", r"GET /v1/jobs/j-1: the answer \(200\) is not JSON"),
    ([1, 2], "GET /v1/jobs/j-1: not a JSON object"),
    ({"job_id": "j-1", "kind": "batch_sign", "status": "running", "total": 2},
     "the answer lacks done"),
    ({"job_id": "j-1", "kind": "batch_sign", "status": "running", "total": "2", "done": 0,
      "failed": []}, "total is not an integer"),
    ({"job_id": "j-1", "kind": "batch_sign", "status": "running", "total": 2, "done": 0,
      "failed": [{"record_id": "r1", "code": "x"}]}, r"failed\[0\]: the answer lacks detail"),
])
def test_answer_not_in_the_documented_shape(stub: tuple[Stub, str], api: ApiClient,
                                            body: Any, message: str) -> None:
    stub[0].answer("GET", "/v1/jobs/j-1", 200, body)
    with pytest.raises(ApiBadAnswer, match=message):
        api.get_job("j-1")


def test_digest_not_base64_and_record_lacking_fields(stub: tuple[Stub, str],
                                                     api: ApiClient) -> None:
    server, _ = stub
    server.answer("POST", "/v1/records/r1/signing-sessions", 201, {
        "session_id": "s-1", "digest_algorithm": "sha256", "data_to_sign": "AQI=",
        "digest": "not base64!", "expires_at": "2030-01-01T00:00:00Z"})
    with pytest.raises(ApiBadAnswer, match="digest is not base64"):
        api.start_signing_session("r1", "principal", ["PEM"])
    server.answer("POST", "/v1/signing-sessions/s-1/complete", 200,
                  {"id": "r1", "status": "archived"})
    with pytest.raises(ApiBadAnswer, match="the answer lacks created_at, document"):
        api.complete_signing_session("s-1", b"\x01")


def test_no_answer(stub: tuple[Stub, str]) -> None:
    server, base = stub
    server.delay = 1.0
    server.answer("GET", "/v1/jobs/j-1", 200, {})
    with ApiClient(base, API_KEY, timeout=(2.0, 0.2)) as api, \
            pytest.raises(ApiUnreachable) as err:
        api.get_job("j-1")
    assert err.value.timed_out and err.value.reason == "ReadTimeout"
    assert str(err.value) == f"GET /v1/jobs/j-1: no answer from {base} within (2.0, 0.2) s"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with ApiClient(closed, API_KEY) as api, pytest.raises(ApiUnreachable) as err:
        api.get_job("j-1")
    assert not err.value.timed_out and err.value.reason == "ConnectionError"
    assert err.value.url == f"{closed}/v1/jobs/j-1"
    assert str(err.value) == f"GET /v1/jobs/j-1: cannot reach {closed} (ConnectionError)"
    assert API_KEY not in repr(vars(err.value))


def test_agent_errors_are_hocba_errors() -> None:
    from signer.agent import AgentError, KeyNotFound, TokenError

    assert issubclass(KeyNotFound, TokenError) and issubclass(TokenError, AgentError)
    e = KeyNotFound("no key")
    assert isinstance(e, HocbaError) and e.code == "token_key_not_found" and str(e) == "no key"
