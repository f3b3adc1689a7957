"""Remote signing over the CSC API (signer/keys/csc.py) against the dev CSC server
(certs/csc_server.py: certomancer-csc-dummy plus OTP, one-time SADs and call counts) and
the TSA/OCSP/CRL responder, both started here on free ports over a state directory of
their own (provisioned under pytest's tmp dir, so parallel sessions never share one);
nothing is mocked."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.csc_signer import CSCServiceSessionInfo

from certs.provision import pki_config, provision
from signer.certrules import check_certificate
from signer.cli import wait_for_port
from signer.clients import load_clients
from signer.errors import DependencyError, HocbaError, InvalidInput, NotFound
from signer.keys import KeyRegistry
from signer.keys.csc import CscKey
from signer.pades.context import SigningServices
from signer.pades.sign import RoleSigning, sign_role
from signer.pades.validate import verify_pdf
from signer.policy import Policy, load_policies
from signer.settings import load_settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "fixtures" / "samples" / "hoc-ba-tieu-hoc-fpdf2.pdf"
SCHOOL = "DEMO-SCHOOL-1"
SCHOOL_NAME = "Trường Tiểu học Nguyễn Du"
KEY = "school-1-csc-teacher"
WAIT = 120  # seconds: no batch may hang the suite


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclasses.dataclass(frozen=True)
class Servers:
    state: Path
    responder_port: int
    csc_port: int

    @property
    def csc_url(self) -> str:
        return f"http://127.0.0.1:{self.csc_port}"

    @property
    def tsa_url(self) -> str:
        return f"http://127.0.0.1:{self.responder_port}/dev/tsa/tsa"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    responder_port, csc_port = _free_port(), _free_port()
    state = provision(tmp_path_factory.mktemp("csc") / "state", responder_port,
                      csc_port=csc_port)
    procs = [
        subprocess.Popen([sys.executable, "-m", "certs.responder", "--state", str(state),
                          "--port", str(responder_port)], cwd=REPO),
        subprocess.Popen([sys.executable, "-m", "certs.csc_server", "--state", str(state),
                          "--port", str(csc_port), "--responder-port", str(responder_port)],
                         cwd=REPO),
    ]
    try:
        wait_for_port(responder_port)
        wait_for_port(csc_port)
        yield Servers(state, responder_port, csc_port)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def otp(servers: Servers) -> str:
    return (servers.state / "csc-otp").read_text().strip()


@pytest.fixture(scope="module")
def registry(servers: Servers) -> KeyRegistry:
    clients_file = servers.state / "clients.json"
    settings = load_settings({"HOCBA_CLIENTS_FILE": str(clients_file),
                              "HOCBA_TSA_URL": servers.tsa_url})
    return KeyRegistry(settings, load_clients(clients_file))


@pytest.fixture(scope="module")
def key(registry: KeyRegistry) -> CscKey:
    backend = registry.get(KEY, frozenset({SCHOOL}))
    assert isinstance(backend, CscKey)
    return backend


@pytest.fixture(scope="module")
def services(servers: Servers) -> SigningServices:
    clients = load_clients(servers.state / "clients.json")
    return SigningServices(
        tsa_url=servers.tsa_url,
        trust_anchors=list(clients.trust_anchors),
        font_path=load_settings({}).stamp_font,
    )


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policies(REPO / "policies")["hoc_ba_tieu_hoc"]


@pytest.fixture(scope="module")
def job(policy: Policy) -> RoleSigning:
    role = policy.role("teacher")
    assert role is not None
    return RoleSigning(policy, role, SCHOOL_NAME, certify=True)


@pytest.fixture
def stats(servers: Servers) -> Any:
    """The CSC server's call counts, zeroed for this test."""
    requests.post(f"{servers.csc_url}/_test/reset", timeout=10).raise_for_status()

    def read() -> dict[str, Any]:
        resp = requests.get(f"{servers.csc_url}/_test/stats", timeout=10)
        resp.raise_for_status()
        doc: dict[str, Any] = resp.json()
        return doc

    return read


def _sample() -> bytes:
    return SAMPLE.read_bytes()


def _chain_text(e: BaseException | None) -> str:
    parts = []
    while e is not None:
        parts += [str(e), repr(e), repr(getattr(e, "args", ()))]
        if isinstance(e, HocbaError):
            parts += [e.detail, repr(e.problem())]
        e = e.__cause__ or e.__context__
    return "\n".join(parts)


# -- provisioning and the credential --------------------------------------------------------


def test_provision_writes_the_csc_signer_and_otp(servers: Servers, otp: str) -> None:
    assert len(otp) == 6 and otp.isdigit()
    assert (servers.state / "csc-otp").stat().st_mode & 0o777 == 0o600
    entry = load_clients(servers.state / "clients.json").signers[KEY]
    assert (entry.backend, entry.tenant, entry.role) == ("csc", SCHOOL, "teacher")
    assert entry.csc_service_url == servers.csc_url
    assert entry.csc_credential_id == "dev/csc-teacher-1"
    assert entry.certificate_chain_pem == ()


def test_state_provisioned_before_the_csc_key_still_loads(servers: Servers,
                                                           tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    shutil.copytree(servers.state / "pki" / "keys", keys)
    (keys / "csc-teacher-1.key.pem").unlink()
    arch = pki_config(servers.responder_port, keys).pki_archs["dev"]
    labels = {str(spec.label) for _iss, group in arch.enumerate_certs_by_issuer()
              for spec in group}
    assert "teacher-1" in labels and "csc-teacher-1" not in labels


def test_certificates_come_from_the_provider(key: CscKey, services: SigningServices,
                                             policy: Policy) -> None:
    subject = key.certificate.subject.native
    assert subject["common_name"] == "Ngô Thị Mai"
    assert subject["organization_name"] == SCHOOL_NAME
    assert subject["user_id"] == "CCCD:001188034567"
    assert [c.subject.native["common_name"] for c in key.chain] == [
        "hocba Dev Issuing CA", "hocba Dev Root CA (không dùng cho hồ sơ thật)"]
    assert key.max_batch_size >= 40
    role = policy.role("teacher")
    assert role is not None
    asyncio.run(check_certificate(key.certificate, key.chain, role, SCHOOL,
                                  services.validation_context()))


def test_registry_returns_csc_keys_and_still_refuses_client_keys(
        registry: KeyRegistry) -> None:
    assert registry.get(KEY, frozenset({SCHOOL})) is registry.get(KEY, frozenset({SCHOOL}))
    with pytest.raises(NotFound) as e:
        registry.get(KEY, frozenset({"DEMO-SCHOOL-2"}))
    assert e.value.code == "key_not_found"
    with pytest.raises(NotFound) as e:
        registry.get("school-1-client-teacher", frozenset({SCHOOL}))
    assert e.value.code == "key_not_server_held"


def test_a_csc_key_needs_an_authorization(key: CscKey) -> None:
    with pytest.raises(InvalidInput) as e:
        key.signer()
    assert e.value.code == "authorization_required"

    async def ask(authorization: object) -> None:
        async with key.signer_for(authorization, batch_size=1):
            pass

    for bad in (None, {}, {"otp": ""}, {"otp": 123456}, {"otp": "1", "user": "x"}, "123456"):
        with pytest.raises(InvalidInput) as e:
            asyncio.run(ask(bad))
        assert e.value.code == "authorization_required", bad
        assert e.value.status == 422


def test_batch_larger_than_the_provider_allows(key: CscKey, otp: str) -> None:
    async def ask() -> None:
        async with key.signer_for({"otp": otp}, batch_size=key.max_batch_size + 1):
            pass

    with pytest.raises(InvalidInput) as e:
        asyncio.run(ask())
    assert e.value.code == "batch_too_large"


# -- signing ------------------------------------------------------------------------------


def test_sign_teacher_role_and_verify(key: CscKey, otp: str, services: SigningServices,
                                      job: RoleSigning, policy: Policy, stats: Any,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def sign() -> bytes:
        async with key.signer_for({"otp": otp}, batch_size=1) as signer:
            return await asyncio.wait_for(sign_role(_sample(), signer, job, services), WAIT)

    signed = asyncio.run(sign())
    report = asyncio.run(verify_pdf(
        signed, trust_roots=services.trust,
        role_by_field={r.field.name: r.name for r in policy.roles}))
    (sig,) = report.as_dict()["signatures"]
    assert sig["field"] == job.role.field.name and sig["role"] == "teacher"
    assert sig["intact"] is True and sig["trusted"] is True
    assert sig["indication"] == "TOTAL_PASSED", sig
    assert "CN=Ngô Thị Mai" in sig["signer"]["subject"]
    s = stats()
    assert (s["authorize_calls"], s["authorize_hashes"]) == (1, [1])
    assert (s["sign_hash_calls"], s["sign_hash_hashes"]) == (1, [1])
    assert otp not in caplog.text


def test_five_records_one_authorization_one_sign_hash(
        key: CscKey, otp: str, services: SigningServices, job: RoleSigning, stats: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    async def sign_all() -> list[bytes]:
        async with key.signer_for({"otp": otp}, batch_size=5) as signer:
            async def one(i: int) -> bytes:
                with signer.slot():
                    other = dataclasses.replace(job, school_name=f"{SCHOOL_NAME} ({i})")
                    return await sign_role(_sample(), signer, other, services)

            return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(5))), WAIT)

    signed = asyncio.run(sign_all())
    s = stats()
    assert (s["authorize_calls"], s["authorize_hashes"]) == (1, [5])
    assert (s["sign_hash_calls"], s["sign_hash_hashes"]) == (1, [5])
    assert len(set(signed)) == 5
    for pdf in signed:
        report = asyncio.run(verify_pdf(pdf, trust_roots=services.trust))
        (sig,) = report.signatures
        assert sig.intact and sig.trusted, report.as_dict()
    assert otp not in caplog.text


def test_a_record_failing_before_signing_does_not_hold_the_batch(
        key: CscKey, otp: str, services: SigningServices, job: RoleSigning,
        stats: Any) -> None:
    async def sign_all() -> list[bytes | BaseException]:
        async with key.signer_for({"otp": otp}, batch_size=5) as signer:
            async def one(i: int) -> bytes:
                with signer.slot():
                    if i == 2:
                        await asyncio.sleep(0.2)  # the others are waiting by now
                        raise InvalidInput("record 2 cannot be signed", code="role_out_of_order")
                    return await sign_role(_sample(), signer, job, services)

            return await asyncio.wait_for(
                asyncio.gather(*(one(i) for i in range(5)), return_exceptions=True), WAIT)

    results = asyncio.run(sign_all())
    assert isinstance(results[2], InvalidInput)
    assert all(isinstance(r, bytes) for i, r in enumerate(results) if i != 2), results
    s = stats()
    assert (s["authorize_calls"], s["authorize_hashes"]) == (1, [4])
    assert (s["sign_hash_calls"], s["sign_hash_hashes"]) == (1, [4])


def test_withdraw_and_expect_by_hand(key: CscKey, otp: str, stats: Any) -> None:
    async def run() -> tuple[list[bytes], list[bytes]]:
        async with key.signer_for({"otp": otp}, batch_size=4) as signer:
            async def leave_later() -> None:
                await asyncio.sleep(0.2)
                signer.withdraw()

            first = await asyncio.wait_for(asyncio.gather(
                signer.async_sign_raw(b"record a", "sha256"),
                signer.async_sign_raw(b"record b", "sha256"),
                signer.async_sign_raw(b"record c", "sha256"),
                leave_later(),
            ), WAIT)
            assert signer.pending == 3 and signer.expected == 3
            with pytest.raises(SigningError, match="spent"):
                await signer.async_sign_raw(b"record d", "sha256")
        async with key.signer_for({"otp": otp}, batch_size=3) as signer:
            task = asyncio.ensure_future(signer.async_sign_raw(b"record e", "sha256"))
            await asyncio.sleep(0.2)
            assert not task.done()
            with pytest.raises(ValueError):
                signer.expect(0)  # fewer than pending
            signer.expect(1)
            second = [await asyncio.wait_for(task, WAIT)]
        return [r for r in first if r is not None], second

    first, second = asyncio.run(run())
    assert len(first) == 3 and len(second) == 1
    assert all(len(sig) == 256 for sig in first + second)  # RSA-2048
    s = stats()
    assert s["authorize_hashes"] == [3, 1] and s["sign_hash_hashes"] == [3, 1]


def test_closing_an_incomplete_batch_fails_its_waiters(key: CscKey, otp: str,
                                                      stats: Any) -> None:
    async def run() -> BaseException | bytes:
        signer = key.signer_for({"otp": otp}, batch_size=2)
        task = asyncio.ensure_future(signer.async_sign_raw(b"record", "sha256"))
        await asyncio.sleep(0.1)
        await signer.aclose()
        return (await asyncio.gather(task, return_exceptions=True))[0]

    result = asyncio.run(run())
    assert isinstance(result, InvalidInput) and result.code == "batch_incomplete"
    assert stats()["authorize_calls"] == 0


def test_wrong_otp_is_refused_with_a_stable_code(
        key: CscKey, otp: str, services: SigningServices, job: RoleSigning, stats: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"{(int(otp) + 1) % 10**6:06d}"

    async def sign_all() -> list[bytes | BaseException]:
        async with key.signer_for({"otp": wrong}, batch_size=2) as signer:
            async def one() -> bytes:
                with signer.slot():
                    return await sign_role(_sample(), signer, job, services)

            return list(await asyncio.wait_for(
                asyncio.gather(one(), one(), return_exceptions=True), WAIT))

    results = asyncio.run(sign_all())
    for err in results:
        assert isinstance(err, InvalidInput), err
        assert err.code == "authorization_invalid" and err.status == 422
        text = _chain_text(err)
        assert wrong not in text and otp not in text
    s = stats()
    assert (s["authorize_calls"], s["authorize_refused"]) == (1, 1)
    assert s["sign_hash_calls"] == 0
    for record in caplog.records:
        assert wrong not in record.getMessage()
        assert wrong not in repr(record.args)
    assert wrong not in caplog.text


def test_provider_unreachable(key: CscKey, otp: str) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(DependencyError) as e:
        CscKey(dataclasses.replace(key.entry, csc_service_url=dead))
    assert e.value.code == "csc_unavailable" and e.value.status == 503

    cut_off = copy.copy(key)
    cut_off.session_info = CSCServiceSessionInfo(dead, key.session_info.credential_id)

    async def sign() -> bytes:
        async with cut_off.signer_for({"otp": otp}, batch_size=1) as signer:
            return await asyncio.wait_for(signer.async_sign_raw(b"record", "sha256"), WAIT)

    with pytest.raises(DependencyError) as e:
        asyncio.run(sign())
    assert e.value.code == "csc_unavailable"
    assert otp not in _chain_text(e.value)


def test_only_the_remote_signing_credentials_are_served(key: CscKey,
                                                        servers: Servers) -> None:
    with pytest.raises(DependencyError) as e:
        CscKey(dataclasses.replace(key.entry, csc_credential_id="dev/root"))
    assert e.value.code == "csc_error"
    resp = requests.post(f"{servers.csc_url}/csc/v1/credentials/list", json={}, timeout=10)
    assert resp.json() == {"credentialIDs": ["dev/csc-teacher-1"]}


def test_v2_urls_serve_the_same_credential(key: CscKey, otp: str, stats: Any,
                                           servers: Servers) -> None:
    info = requests.post(f"{servers.csc_url}/csc/v2/credentials/info", timeout=10, json={
        "credentialID": "dev/csc-teacher-1", "certificates": "single"}).json()
    assert info["auth"]["mode"] == "explicit" and info["SCAL"] == "2"
    v2 = copy.copy(key)
    v2.session_info = dataclasses.replace(key.session_info, api_ver="v2")

    async def sign() -> bytes:
        async with v2.signer_for({"otp": otp}, batch_size=1) as signer:
            return await asyncio.wait_for(signer.async_sign_raw(b"record", "sha256"), WAIT)

    assert len(asyncio.run(sign())) == 256
    assert stats()["sign_hash_hashes"] == [1]
