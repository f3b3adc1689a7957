"""Shared fixtures: the test PKI and SoftHSM2 token (var/test), the real TSA/OCSP/CRL
responder over HTTP on 127.0.0.1, and the hocba app over them. Nothing is mocked here."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from certs.provision import provision
from signer import fixes
from signer.cli import dev_environment, wait_for_port

if not os.environ.get("HOCBA_TEST_UNPATCHED"):  # set by tests/unpatched.py
    fixes.apply()

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "fixtures" / "samples"
# Another test session on this machine? Give it its own port (and so its own state).
RESPONDER_PORT = int(os.environ.get("HOCBA_TEST_RESPONDER_PORT", "9781"))
TEST_STATE = REPO / "var" / ("test" if RESPONDER_PORT == 9781 else f"test-{RESPONDER_PORT}")
CSC_PORT = RESPONDER_PORT + 2


@dataclass
class Responder:
    """A dev server process (the TSA/OCSP/CRL responder, the CSC server); tests may stop
    the responder to prove offline validation."""

    state: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    module: str = "certs.responder"
    extra: tuple[str, ...] = ()

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                raise RuntimeError(
                    f"port {self.port} is taken (another test session?); set "
                    "HOCBA_TEST_RESPONDER_PORT to run this one on its own port")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--state", str(self.state),
             "--port", str(self.port), *self.extra], cwd=REPO)
        try:
            wait_for_port(self.port)
        except Exception:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture(scope="session")
def test_state() -> Path:
    return provision(TEST_STATE, RESPONDER_PORT, csc_port=CSC_PORT)


@pytest.fixture(scope="session")
def responder(test_state: Path) -> Iterator[Responder]:
    r = Responder(test_state, RESPONDER_PORT)
    r.start()
    yield r
    r.stop()


@pytest.fixture(scope="session")
def csc_server(test_state: Path, responder: Responder) -> Iterator[Responder]:
    """The dev CSC remote signing server (certomancer-csc-dummy with OTP checks)."""
    r = Responder(test_state, CSC_PORT, module="certs.csc_server",
                  extra=("--responder-port", str(RESPONDER_PORT)))
    r.start()
    yield r
    r.stop()


@pytest.fixture
def live_responder(responder: Responder) -> Responder:
    """The responder, (re)started if an earlier test stopped it."""
    responder.start()
    return responder


@pytest.fixture(scope="session")
def clients_doc(test_state: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((test_state / "clients.json").read_text(encoding="utf-8"))
    return doc


@pytest.fixture(scope="session")
def api_keys(clients_doc: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["api_key"] for c in clients_doc["clients"]}


@pytest.fixture(scope="session")
def service_env(test_state: Path) -> dict[str, str]:
    env = dev_environment(test_state, RESPONDER_PORT)
    os.environ["SOFTHSM2_CONF"] = env["SOFTHSM2_CONF"]
    return env


@pytest.fixture
def service_settings(service_env: dict[str, str], tmp_path: Path) -> Any:
    from signer.settings import load_settings

    env = {**service_env, "HOCBA_STORE": str(tmp_path / "store"),
           "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}"}
    return load_settings(env)


@pytest.fixture
def app(service_settings: Any, live_responder: Responder, csc_server: Responder) -> Iterator[Any]:
    from signer.http import create_app

    flask_app = create_app(service_settings)
    flask_app.testing = True
    yield flask_app
    flask_app.extensions["hocba"].close()  # stops its job runner too


@pytest.fixture
def http(app: Any) -> Any:
    return app.test_client()


@pytest.fixture(scope="session")
def samples() -> dict[str, bytes]:
    found = {p.name: p.read_bytes() for p in sorted(SAMPLES.glob("*.pdf"))}
    assert len(found) >= 2, f"sample records missing in {SAMPLES}"
    return found


PG_ADMIN_URL = os.environ.get("HOCBA_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def skip_or_fail(reason: str, require_env: str) -> None:
    """Skip, unless `require_env`=1 (CI sets it): there a missing real part is a failure."""
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{reason} ({require_env}=1)")
    pytest.skip(reason)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test module, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 3})
    name = f"hocba_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as e:
        admin.dispose()
        skip_or_fail(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {e.orig}",
                     "HOCBA_REQUIRE_POSTGRES")
    try:
        yield str(sa.engine.make_url(PG_ADMIN_URL).set(database=name)
                  .render_as_string(hide_password=False))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
