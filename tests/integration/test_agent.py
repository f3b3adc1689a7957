"""The school-side signing agent against the real SoftHSM2 client token of var/test.

The token holds the key of client-principal-1 labelled "Private Key" (CKA_ID
b"client-principal-1") and its certificate labelled "client-principal-1", as Vietnamese CA
tokens label them. The HTTP half runs against a fake hocba, mounted as the requests
transport adapter, that answers in the shapes of openapi.yaml and checks each signature
with the certificate it was sent (test_two_step.py runs the agent against the service).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from signer.agent import (
    AgentError,
    KeyNotFound,
    TokenError,
    TokenKey,
    TokenSession,
    sign_records,
)
from signer.apiclient import ApiClient, ApiError, ApiUnreachable
from signer.cli import agent as agent_mod
from signer.cli.agent import agent

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PIN_ENV = "HOCBA_TEST_CLIENT_TOKEN_PIN"
CERT_LABEL = "client-principal-1"
KEY_LABEL = "Private Key"


@pytest.fixture(scope="session")
def client_token(test_state: Path) -> dict[str, Any]:
    doc = json.loads((test_state / "clients.json").read_text(encoding="utf-8"))
    token = dict(doc["client_token"])
    pin_file = Path(token["pin_file"])
    if not pin_file.is_absolute():
        pin_file = REPO / pin_file
    token["pin"] = pin_file.read_text().strip()
    # SoftHSM2 reads its configuration once per process, at C_Initialize.
    os.environ["SOFTHSM2_CONF"] = str(test_state / "softhsm2.conf")
    return token


@pytest.fixture
def pin(client_token: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(PIN_ENV, client_token["pin"])
    return str(client_token["pin"])


@pytest.fixture
def cert_pem_path(test_state: Path) -> Path:
    return test_state / "pki" / "certs" / f"{CERT_LABEL}.pem"


@pytest.fixture
def certificate(cert_pem_path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(cert_pem_path.read_bytes())


@pytest.fixture
def token_key(client_token: dict[str, Any], pin: str) -> Iterator[TokenKey]:
    with TokenKey(client_token["module"], pin_env=PIN_ENV,
                  token_label=client_token["token_label"]) as key:
        yield key


def _verify(cert: x509.Certificate, signature: bytes, digest: bytes) -> None:
    pk = cert.public_key()
    assert isinstance(pk, rsa.RSAPublicKey)
    pk.verify(signature, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


# --------------------------------------------------------------------------- key lookup


def test_key_found_by_certificate_although_labels_differ(
        token_key: TokenKey, certificate: x509.Certificate) -> None:
    assert token_key.certificate == certificate
    assert token_key.cert_label == CERT_LABEL
    assert token_key.key_label == KEY_LABEL
    assert token_key.key_id == CERT_LABEL.encode()
    assert token_key.matched_by == "cka_id"
    assert token_key.key_type == "rsa"


def test_key_found_for_certificate_by_label_and_by_pem(
        client_token: dict[str, Any], pin: str, cert_pem_path: Path) -> None:
    for selection in ({"cert_label": CERT_LABEL}, {"cert_pem": cert_pem_path}):
        with TokenKey(client_token["module"], pin_env=PIN_ENV,
                      token_label=client_token["token_label"], **selection) as key:
            assert key.key_label == KEY_LABEL
            assert key.matched_by == "cka_id"


def test_key_found_by_public_key_without_cka_id(
        client_token: dict[str, Any], pin: str, certificate: x509.Certificate) -> None:
    with TokenSession(client_token["module"], pin_env=PIN_ENV,
                      token_label=client_token["token_label"]) as token:
        match = token.find_key_for_certificate(certificate, cka_id=None)
        assert match is not None
        assert match.how == "public_key"
        assert match.label == KEY_LABEL
        # A CKA_ID nobody has falls through to the public key as well.
        match = token.find_key_for_certificate(certificate, cka_id=b"no-such-id")
        assert match is not None and match.how == "public_key"


def test_certificate_without_key_on_token_is_not_matched(
        client_token: dict[str, Any], pin: str, test_state: Path) -> None:
    other = x509.load_pem_x509_certificate(
        (test_state / "pki" / "certs" / "principal-1.pem").read_bytes())
    with TokenSession(client_token["module"], pin_env=PIN_ENV,
                      token_label=client_token["token_label"]) as token:
        assert token.find_key_for_certificate(other, cka_id=CERT_LABEL.encode()) is None


def test_label_only_lookup_with_certificate_label_fails_clearly(
        client_token: dict[str, Any], pin: str) -> None:
    with TokenSession(client_token["module"], pin_env=PIN_ENV,
                      token_label=client_token["token_label"]) as token:
        with pytest.raises(KeyNotFound) as err:
            token.find_private_key_by_label(CERT_LABEL)
        message = str(err.value)
        assert f"no private key labelled {CERT_LABEL!r}" in message
        assert repr(KEY_LABEL) in message  # the labels that do exist
        assert "--cert-label" in message and "CKA_ID" in message
        assert token.find_private_key_by_label(KEY_LABEL).how == "label"


def test_key_label_is_checked_against_the_certificate(
        client_token: dict[str, Any], pin: str, test_state: Path) -> None:
    foreign = test_state / "pki" / "certs" / "principal-1.pem"  # its key is not on the token
    with pytest.raises(KeyNotFound, match=f"no private key labelled {CERT_LABEL!r}"):
        TokenKey(client_token["module"], pin_env=PIN_ENV,
                 token_label=client_token["token_label"], cert_pem=foreign,
                 key_label=CERT_LABEL)
    with pytest.raises(KeyNotFound, match="does not belong to the certificate"):
        TokenKey(client_token["module"], pin_env=PIN_ENV,
                 token_label=client_token["token_label"], cert_pem=foreign,
                 key_label=KEY_LABEL)
    with pytest.raises(KeyNotFound, match="no private key matching the certificate"):
        TokenKey(client_token["module"], pin_env=PIN_ENV,
                 token_label=client_token["token_label"], cert_pem=foreign)


def test_unknown_certificate_and_token_labels(client_token: dict[str, Any], pin: str) -> None:
    with pytest.raises(KeyNotFound, match=f"certificate labels: {CERT_LABEL!r}"):
        TokenKey(client_token["module"], pin_env=PIN_ENV,
                 token_label=client_token["token_label"], cert_label=KEY_LABEL)
    with pytest.raises(TokenError, match=r"no token labelled 'no-such-token'.*hocba-school"):
        TokenKey(client_token["module"], pin_env=PIN_ENV, token_label="no-such-token")
    with pytest.raises(TokenError, match="cannot load the PKCS#11 module"):
        TokenKey("/nonexistent/libpkcs11.so", pin_env=PIN_ENV)


def test_certificate_chain_starts_with_the_signing_certificate(
        client_token: dict[str, Any], pin: str, test_state: Path,
        certificate: x509.Certificate) -> None:
    interm = test_state / "pki" / "certs" / "interm.pem"
    with TokenKey(client_token["module"], pin_env=PIN_ENV,
                  token_label=client_token["token_label"], chain_pems=[interm]) as key:
        chain = [x509.load_pem_x509_certificate(p.encode()) for p in key.certificate_chain()]
    assert chain[0] == certificate
    assert chain[1] == x509.load_pem_x509_certificate(interm.read_bytes())
    assert chain[1].subject == certificate.issuer


# --------------------------------------------------------------------------- signing


def test_sign_digest_verifies_with_the_certificate(
        token_key: TokenKey, certificate: x509.Certificate) -> None:
    data = b"signed attributes of a hoc ba record"
    digest = hashlib.sha256(data).digest()
    signature = token_key.sign_digest(digest, "sha256")
    assert len(signature) == 256
    _verify(certificate, signature, digest)
    pk = certificate.public_key()
    assert isinstance(pk, rsa.RSAPublicKey)
    pk.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    # Hash-and-sign on the token (CKM_SHA256_RSA_PKCS) gives the same PKCS#1 v1.5 value.
    assert token_key.sign_data(data) == signature
    with pytest.raises(InvalidSignature):
        _verify(certificate, signature, hashlib.sha256(b"other").digest())
    assert token_key.verify_digest(signature, digest)


def test_sign_digest_rejects_wrong_sizes_and_algorithms(token_key: TokenKey) -> None:
    with pytest.raises(AgentError, match="32 bytes"):
        token_key.sign_digest(b"short")
    with pytest.raises(AgentError, match="unsupported digest algorithm"):
        token_key.sign_digest(bytes(16), "md5")


# --------------------------------------------------------------------------- PIN


def test_wrong_pin_is_a_clear_error_without_the_pin(
        client_token: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "wrong-" + secrets.token_hex(6)
    monkeypatch.setenv(PIN_ENV, wrong)
    with pytest.raises(TokenError) as err:
        TokenKey(client_token["module"], pin_env=PIN_ENV,
                 token_label=client_token["token_label"])
    message = str(err.value)
    assert "CKR_PIN_INCORRECT" in message and PIN_ENV in message
    assert "hocba-school-client" in message
    text = "".join(traceback.format_exception(err.value))
    assert wrong not in text and client_token["pin"] not in text
    # The token is not left logged in: the right PIN still opens it.
    monkeypatch.setenv(PIN_ENV, client_token["pin"])
    with TokenKey(client_token["module"], pin_env=PIN_ENV,
                  token_label=client_token["token_label"]) as key:
        assert key.matched_by == "cka_id"


def test_missing_pin_names_the_variable(client_token: dict[str, Any],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PIN_ENV, raising=False)
    with pytest.raises(TokenError, match=f"environment variable {PIN_ENV}"):
        TokenKey(client_token["module"], pin_env=PIN_ENV,
                 token_label=client_token["token_label"])


def test_pin_never_in_logs_or_errors(client_token: dict[str, Any], pin: str,
                                     caplog: pytest.LogCaptureFixture,
                                     monkeypatch: pytest.MonkeyPatch,
                                     cert_pem_path: Path) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    with TokenKey(client_token["module"], pin_env=PIN_ENV,
                  token_label=client_token["token_label"], cert_pem=cert_pem_path) as key:
        key.sign_digest(hashlib.sha256(b"x").digest())
        assert not any(pin in repr(v) for v in vars(key).values())
        assert not any(pin in repr(v) for v in vars(key.token).values())
    for bad in ({"cert_label": "nope"}, {"key_label": CERT_LABEL, "cert_pem":
                                         cert_pem_path.parent / "principal-1.pem"}):
        with pytest.raises(AgentError) as err:
            TokenKey(client_token["module"], pin_env=PIN_ENV,
                     token_label=client_token["token_label"], **bad)
        messages.append("".join(traceback.format_exception(err.value)))
    wrong = "bad-" + secrets.token_hex(6)
    monkeypatch.setenv(PIN_ENV, wrong)
    with pytest.raises(TokenError) as err:
        TokenKey(client_token["module"], pin_env=PIN_ENV,
                 token_label=client_token["token_label"])
    messages.append("".join(traceback.format_exception(err.value)))
    result = CliRunner().invoke(agent, [
        "list-keys", "--pkcs11-module", client_token["module"],
        "--token-label", client_token["token_label"], "--pin-env", PIN_ENV])
    assert result.exit_code == 1
    messages.append(result.output)

    records = caplog.records
    assert any("logged in to token" in r.getMessage() for r in records)
    for r in records:
        text = r.getMessage() + repr(r.args) + (r.exc_text or "")
        assert pin not in text and wrong not in text
    for text in messages:
        assert pin not in text and wrong not in text


# --------------------------------------------------------------------------- CLI (token)


def test_cli_list_keys(client_token: dict[str, Any], pin: str) -> None:
    result = CliRunner().invoke(agent, [
        "list-keys", "--pkcs11-module", client_token["module"],
        "--token-label", client_token["token_label"], "--pin-env", PIN_ENV])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith(CERT_LABEL))
    assert f"id={CERT_LABEL.encode().hex()}" in line
    assert "CN=Vũ Đức Thắng" in line
    assert f"key {KEY_LABEL!r} (by cka_id)" in line
    assert pin not in result.output


# --------------------------------------------------------------------------- HTTP


def _response(status: int, body: dict[str, Any], problem: bool = False) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = json.dumps(body).encode()
    resp.headers["Content-Type"] = ("application/problem+json" if problem
                                    else "application/json")
    return resp


def _record(record_id: str, status: str) -> dict[str, Any]:
    """components/schemas/Record, its required fields."""
    return {"id": record_id, "status": status, "record_type": "hoc_ba_thcs",
            "policy": "hoc_ba_thcs@1", "signatures": [], "next_role": None,
            "document": {"sha256": "00" * 32, "size": 1},
            "created_at": "2030-01-01T00:00:00Z"}


class FakeHocba(requests.adapters.BaseAdapter):
    """hocba's signing-session endpoints, in process, as the transport of every
    requests.Session: checks each signature value against the first certificate of the
    chain it was given, answers problem+json on errors."""

    def __init__(self, base_url: str, api_key: str) -> None:
        super().__init__()
        self.base_url = base_url
        self.api_key = api_key
        self.calls: list[dict[str, Any]] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self.fail_start: dict[str, Any] | None = None
        self.tamper = False

    def problem(self, status: int, code: str, detail: str) -> requests.Response:
        return _response(status, {"type": f"https://hocba.example/problems/{code}",
                                  "title": "Error", "status": status,
                                  "detail": detail, "code": code}, problem=True)

    def _item(self, record_id: str) -> dict[str, Any]:
        data = b"\x31\x00" + record_id.encode() + secrets.token_bytes(16)
        digest = hashlib.sha256(data).digest()
        if self.tamper:
            digest = hashlib.sha256(b"something else").digest()
        return {"record_id": record_id, "data": data, "digest": digest,
                "data_to_sign": base64.b64encode(data).decode(),
                "digest_b64": base64.b64encode(digest).decode()}

    def _verifies(self, chain: list[str], digest: bytes, signature_b64: str) -> bool:
        cert = x509.load_pem_x509_certificate(chain[0].encode())
        try:
            _verify(cert, base64.b64decode(signature_b64), digest)
        except InvalidSignature:
            return False
        return True

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: Any = None, verify: Any = True, cert: Any = None,
             proxies: Any = None) -> requests.Response:
        assert timeout is not None, "every request needs a timeout"
        url = str(request.url)
        assert url.startswith(self.base_url)
        resp = self._answer(request.method or "", url[len(self.base_url):],
                            json.loads(request.body or b"null"), dict(request.headers),
                            timeout)
        resp.request, resp.url = request, url
        return resp

    def close(self) -> None:
        pass

    def _answer(self, method: str, path: str, body: Any, headers: dict[str, str],
                timeout: Any) -> requests.Response:
        self.calls.append({"method": method, "path": path, "json": body,
                           "headers": headers, "timeout": timeout})
        if headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.problem(401, "unauthorized", "unknown API key")
        body = body or {}
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "records"] and parts[3:] == ["signing-sessions"]:
            if self.fail_start:
                return self.problem(**self.fail_start)
            item = self._item(parts[2])
            sid = f"s-{len(self.sessions) + 1}"
            self.sessions[sid] = {"chain": body["certificate_chain"], "items": [item],
                                  "role": body["role"]}
            return _response(201, {
                "session_id": sid, "digest_algorithm": "sha256",
                "data_to_sign": item["data_to_sign"], "digest": item["digest_b64"],
                "expires_at": "2030-01-01T00:00:00Z"})
        if parts[:2] == ["v1", "signing-sessions"] and parts[3:] == ["complete"]:
            session = self.sessions[parts[2]]
            item = session["items"][0]
            if not self._verifies(session["chain"], item["digest"], body["signature_value"]):
                return self.problem(422, "signature_invalid", "the signature does not verify")
            return _response(200, _record(item["record_id"], "archived"))
        if path == "/v1/batch-signing-sessions":
            if self.fail_start:
                return self.problem(**self.fail_start)
            items = [self._item(rid) for rid in body["record_ids"]]
            sid = f"b-{len(self.sessions) + 1}"
            self.sessions[sid] = {"chain": body["certificate_chain"], "items": items,
                                  "role": body["role"]}
            return _response(201, {"session_id": sid, "digest_algorithm": "sha256",
                                   "items": [{"record_id": i["record_id"],
                                              "digest": i["digest_b64"],
                                              "data_to_sign": i["data_to_sign"]}
                                             for i in items],
                                   "failed": [], "expires_at": "2030-01-01T00:00:00Z"})
        if parts[:2] == ["v1", "batch-signing-sessions"] and parts[3:] == ["complete"]:
            session = self.sessions[parts[2]]
            by_id = {i["record_id"]: i for i in session["items"]}
            results = []
            for sig in body["signatures"]:
                item = by_id[sig["record_id"]]
                if self._verifies(session["chain"], item["digest"], sig["signature_value"]):
                    results.append({"record_id": item["record_id"], "status": "signed"})
                else:
                    results.append({"record_id": item["record_id"], "status": "failed",
                                    "code": "signature_invalid", "detail": "does not verify"})
            return _response(200, {"session_id": parts[2], "total": len(results),
                                   "done": sum(r["status"] == "signed" for r in results),
                                   "results": results})
        return self.problem(404, "not_found", f"no route {path}")


def _mount(monkeypatch: pytest.MonkeyPatch, adapter: requests.adapters.BaseAdapter) -> None:
    """Every requests.Session (the agent's ApiClient too) sends through adapter."""
    monkeypatch.setattr(requests.Session, "get_adapter", lambda self, url: adapter)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeHocba:
    server = FakeHocba("http://hocba.test:8080", "k-" + secrets.token_hex(8))
    _mount(monkeypatch, server)
    return server


@pytest.fixture
def client(fake: FakeHocba) -> Iterator[ApiClient]:
    with ApiClient(fake.base_url, fake.api_key) as c:
        yield c


class Answers(requests.adapters.BaseAdapter):
    """Records each request and answers with the next of `answers` (or raises it)."""

    def __init__(self, *answers: dict[str, Any] | Exception | requests.Response) -> None:
        super().__init__()
        self.answers = iter(answers)
        self.calls: list[dict[str, Any]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.calls.append({"url": request.url, "json": json.loads(request.body or b"null"),
                           "headers": dict(request.headers), "timeout": kwargs["timeout"]})
        answer = next(self.answers)
        if isinstance(answer, Exception):
            raise answer
        resp = answer if isinstance(answer, requests.Response) else _response(200, answer)
        resp.request, resp.url = request, request.url
        return resp

    def close(self) -> None:
        pass


def test_session_requests_follow_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = Answers(
        {"session_id": "s-1", "digest_algorithm": "sha256", "digest": "AA==",
         "data_to_sign": "AA==", "expires_at": "2030-01-01T00:00:00Z"},
        _record("rec/1 x", "awaiting_signatures"),
        {"session_id": "b-1", "digest_algorithm": "sha256",
         "items": [{"record_id": "a", "digest": "AA==", "data_to_sign": "AA=="},
                   {"record_id": "b", "digest": "AA==", "data_to_sign": "AA=="}],
         "failed": [], "expires_at": "2030-01-01T00:00:00Z"},
        {"session_id": "b-1", "total": 2, "done": 2,
         "results": [{"record_id": "a", "status": "signed"},
                     {"record_id": "b", "status": "signed"}]},
    )
    _mount(monkeypatch, answers)
    chain = ["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"]
    with ApiClient("http://hocba.test:8080/", "the-key") as api:
        session = api.start_signing_session("rec/1 x", "principal", chain)
        assert session.session_id == "s-1" and session.digest == b"\x00"
        assert api.complete_signing_session("s-1", b"\x01\x02",
                                            idempotency_key="agent-complete-s-1"
                                            )["status"] == "awaiting_signatures"
        batch = api.start_batch_signing_session("teacher", ["a", "b"], chain)
        assert [i.record_id for i in batch.items] == ["a", "b"]
        done = api.complete_batch_signing_session("b-1", {"a": b"\x01", "b": b"\x02"},
                                                  idempotency_key="agent-complete-b-1")
        assert [r.ok for r in done.results] == [True, True]

    calls = answers.calls
    assert [c["url"] for c in calls] == [
        "http://hocba.test:8080/v1/records/rec%2F1%20x/signing-sessions",
        "http://hocba.test:8080/v1/signing-sessions/s-1/complete",
        "http://hocba.test:8080/v1/batch-signing-sessions",
        "http://hocba.test:8080/v1/batch-signing-sessions/b-1/complete",
    ]
    assert [c["json"] for c in calls] == [
        {"role": "principal", "certificate_chain": chain},
        {"signature_value": base64.b64encode(b"\x01\x02").decode()},
        {"role": "teacher", "certificate_chain": chain, "record_ids": ["a", "b"]},
        {"signatures": [
            {"record_id": "a", "signature_value": base64.b64encode(b"\x01").decode()},
            {"record_id": "b", "signature_value": base64.b64encode(b"\x02").decode()}]},
    ]
    for c in calls:
        assert c["headers"]["Authorization"] == "Bearer the-key"
        assert c["timeout"]
    assert calls[1]["headers"]["Idempotency-Key"] == "agent-complete-s-1"
    assert calls[3]["headers"]["Idempotency-Key"] == "agent-complete-b-1"


def test_sign_one_record(fake: FakeHocba, client: ApiClient, token_key: TokenKey) -> None:
    results = sign_records(client, "principal", ["r1"], token_key)
    assert [(r.record_id, r.ok, r.status) for r in results] == [("r1", True, "archived")]
    assert [c["path"] for c in fake.calls] == ["/v1/records/r1/signing-sessions",
                                               "/v1/signing-sessions/s-1/complete"]
    assert fake.calls[0]["json"]["certificate_chain"] == token_key.certificate_chain()
    assert fake.calls[1]["headers"]["Idempotency-Key"] == "agent-complete-s-1"


def test_sign_batch(fake: FakeHocba, client: ApiClient, token_key: TokenKey) -> None:
    done: list[str] = []
    results = sign_records(client, "principal", ["r1", "r2", "r3", "r2"], token_key,
                           progress=done.append)
    assert [(r.record_id, r.ok) for r in results] == [("r1", True), ("r2", True), ("r3", True)]
    assert done == ["r1", "r2", "r3"]
    assert [c["path"] for c in fake.calls] == ["/v1/batch-signing-sessions",
                                               "/v1/batch-signing-sessions/b-1/complete"]
    assert fake.calls[1]["headers"]["Idempotency-Key"] == "agent-complete-b-1"


def test_sign_records_one_by_one_when_not_batched(fake: FakeHocba, client: ApiClient,
                                                  token_key: TokenKey) -> None:
    results = sign_records(client, "principal", ["r1", "r2"], token_key, batch=False)
    assert all(r.ok for r in results)
    assert len(fake.calls) == 4


def test_digest_not_matching_data_is_not_signed(fake: FakeHocba, client: ApiClient,
                                                token_key: TokenKey) -> None:
    fake.tamper = True
    with pytest.raises(AgentError, match="refusing to sign"):
        sign_records(client, "principal", ["r1", "r2"], token_key)
    assert len(fake.calls) == 1


def test_server_problem_shows_code_and_detail(fake: FakeHocba, client: ApiClient,
                                              token_key: TokenKey) -> None:
    fake.fail_start = {"status": 409, "code": "role_out_of_order",
                       "detail": "the teacher signs first"}
    with pytest.raises(ApiError) as err:
        sign_records(client, "principal", ["r1", "r2"], token_key)
    assert (err.value.status, err.value.code) == (409, "role_out_of_order")
    assert "role_out_of_order: the teacher signs first" in str(err.value)
    results = sign_records(client, "principal", ["r1"], token_key)
    assert [r.line() for r in results] == ["r1\tfailed\trole_out_of_order: the teacher "
                                           "signs first"]


def test_timeouts_and_unreachable_server(monkeypatch: pytest.MonkeyPatch) -> None:
    _mount(monkeypatch, Answers(requests.ReadTimeout("read timed out"),
                                requests.ConnectionError("refused")))
    with ApiClient("http://x", "key", timeout=0.5) as api, \
            pytest.raises(ApiUnreachable, match="no answer from http://x within"):
        api.start_signing_session("r1", "principal", [])
    with ApiClient("http://x", "key") as api, \
            pytest.raises(ApiUnreachable, match="cannot reach http://x"):
        api.start_signing_session("r1", "principal", [])


def test_non_json_error_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    resp = requests.Response()
    resp.status_code = 502
    resp._content = b"<html>Bad Gateway</html>"
    resp.headers["Content-Type"] = "text/html"
    _mount(monkeypatch, Answers(resp))
    with ApiClient("http://x", "key") as api, \
            pytest.raises(ApiError, match="502 http_502: <html>Bad Gateway</html>"):
        api.start_signing_session("r1", "principal", [])


# --------------------------------------------------------------------------- CLI (HTTP)


def _sign_args(client_token: dict[str, Any], fake: FakeHocba, *records: str) -> list[str]:
    args = ["sign", "--url", fake.base_url, "--api-key-env", "HOCBA_TEST_API_KEY",
            "--role", "principal", "--pkcs11-module", client_token["module"],
            "--token-label", client_token["token_label"], "--pin-env", PIN_ENV]
    for rid in records:
        args += ["--record", rid]
    return args


def test_cli_sign_batch(fake: FakeHocba, client_token: dict[str, Any], pin: str,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOCBA_TEST_API_KEY", fake.api_key)
    result = CliRunner().invoke(agent, _sign_args(client_token, fake, "r1", "r2", "r3"))
    assert result.exit_code == 0, result.output
    # a batch's results say "signed" per record, not the record's status
    assert result.stdout.splitlines() == [f"r{i}\tsigned\tsigned" for i in (1, 2, 3)]
    assert "matched by cka_id" in result.output
    assert pin not in result.output and fake.api_key not in result.output


def test_cli_sign_one_record_with_cert_pem(fake: FakeHocba, client_token: dict[str, Any],
                                           pin: str, cert_pem_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOCBA_TEST_API_KEY", fake.api_key)
    result = CliRunner().invoke(agent, [*_sign_args(client_token, fake, "r9"),
                                        "--cert-pem", str(cert_pem_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["r9\tsigned\tarchived"]


def test_cli_sign_server_error_exits_non_zero(fake: FakeHocba, client_token: dict[str, Any],
                                              pin: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOCBA_TEST_API_KEY", fake.api_key)
    fake.fail_start = {"status": 422, "code": "certificate_not_allowed",
                       "detail": "not a principal's certificate"}
    result = CliRunner().invoke(agent, _sign_args(client_token, fake, "r1", "r2"))
    assert result.exit_code == 1
    assert "certificate_not_allowed: not a principal's certificate" in result.output
    result = CliRunner().invoke(agent, _sign_args(client_token, fake, "r1"))
    assert result.exit_code == 1
    assert "r1\tfailed\tcertificate_not_allowed" in result.stdout
    assert "1 of 1 records not signed" in result.output


def test_cli_sign_needs_api_key_and_one_certificate_choice(
        fake: FakeHocba, client_token: dict[str, Any], pin: str, cert_pem_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOCBA_TEST_API_KEY", raising=False)
    result = CliRunner().invoke(agent, _sign_args(client_token, fake, "r1"))
    assert result.exit_code == 1
    assert "HOCBA_TEST_API_KEY" in result.output
    monkeypatch.setenv("HOCBA_TEST_API_KEY", fake.api_key)
    result = CliRunner().invoke(agent, [*_sign_args(client_token, fake, "r1"),
                                        "--cert-label", CERT_LABEL,
                                        "--cert-pem", str(cert_pem_path)])
    assert result.exit_code == 2
    assert not fake.calls


# --------------------------------------------------------------------------- EC token


EC_SCRIPT = r"""
import hashlib, json, sys
import pkcs11
from pkcs11 import Attribute, CertificateType, ObjectClass
from cryptography import x509
from signer.agent import TokenKey

module, cert_path = sys.argv[1], sys.argv[2]
from cryptography.hazmat.primitives.serialization import Encoding
cert = x509.load_pem_x509_certificate(open(cert_path, "rb").read())
der = cert.public_bytes(Encoding.DER)
token = pkcs11.lib(module).get_token(token_label="ec-client")
with token.open(rw=True, user_pin="123456") as s:
    s.create_object({Attribute.CLASS: ObjectClass.CERTIFICATE,
                     Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                     Attribute.TOKEN: True, Attribute.LABEL: "Chứng thư số",
                     Attribute.ID: b"cert-id-differs", Attribute.VALUE: der,
                     Attribute.SUBJECT: cert.subject.public_bytes()})
digest = hashlib.sha256(b"ec data").digest()
with TokenKey(module, pin_env="EC_PIN", token_label="ec-client") as key:
    sig = key.sign_digest(digest)
    print(json.dumps({"how": key.matched_by, "label": key.key_label, "type": key.key_type,
                      "sig": sig.hex(), "digest": digest.hex()}))
"""


def test_ec_key_matched_by_ec_point_and_signature_der(
        client_token: dict[str, Any], tmp_path: Path) -> None:
    """A separate SoftHSM2 state (own process): EC P-256 key labelled "Private Key",
    certificate with another CKA_ID, so only the EC point can pair them."""
    import datetime

    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    (tmp_path / "tokens").mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tmp_path / 'tokens'}\n"
                    "objectstore.backend = file\nlog.level = ERROR\n")
    env = {**os.environ, "SOFTHSM2_CONF": str(conf), "EC_PIN": "123456"}
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EC Hiệu trưởng")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "ec-client",
                    "--pin", "123456", "--so-pin", "654321"],
                   env=env, check=True, capture_output=True)
    subprocess.run(["softhsm2-util", "--import", str(tmp_path / "key.pem"), "--token",
                    "ec-client", "--label", "Private Key", "--id", "0a0b", "--pin", "123456"],
                   env=env, check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-c", EC_SCRIPT, client_token["module"],
                           str(tmp_path / "cert.pem")],
                          env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (out["how"], out["label"], out["type"]) == ("public_key", "Private Key", "ec")
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(bytes.fromhex(out["sig"]), bytes.fromhex(out["digest"]),
                  ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_module_exports_click_group() -> None:
    import click

    assert isinstance(agent_mod.agent, click.Group)
    assert {"sign", "list-keys"} <= set(agent_mod.agent.commands)
