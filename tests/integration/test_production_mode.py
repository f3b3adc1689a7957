"""HOCBA_ENV=production refuses every dev part, each on its own: a production setup that
starts (its own root, hashed API keys, a PKCS#11 seal key, remote TSA and public URL),
then that setup with exactly one dev part, refused with a ConfigError naming the part."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from signer.errors import ConfigError
from signer.service import Hocba
from signer.settings import load_settings

pytestmark = pytest.mark.integration
Doc = dict[str, Any]


def self_signed_root(path: Path, name: str) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                         x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def production(tmp_path: Path) -> tuple[Doc, dict[str, str]]:
    """A production clients file and environment that start: no dev part in them."""
    root = self_signed_root(tmp_path / "prod-root.pem", "Bộ GD&ĐT Production Root (test)")
    doc: Doc = {
        "clients": [{"name": "school-1", "tenant": "DEMO-SCHOOL-1",
                     "api_key_sha256": hashlib.sha256(b"a key kept elsewhere").hexdigest(),
                     "scopes": ["records:write", "records:sign"]}],
        "signers": [{"key": "school-1-seal", "tenant": "DEMO-SCHOOL-1", "role": "seal",
                     "backend": "pkcs11", "pkcs11_key_label": "seal-1",
                     "certificate_chain_pem": [str(root)]},
                    {"key": "school-1-csc", "tenant": "DEMO-SCHOOL-1", "role": "teacher",
                     "backend": "csc", "csc_service_url": "https://csc.example.vn",
                     "csc_credential_id": "teacher-1"}],
        "trust_anchor": str(root),
        "pkcs11": {"module": "/usr/lib/softhsm/libsofthsm2.so",
                   "token_label": "so-gddt-seal"},
    }
    env = {"HOCBA_ENV": "production", "HOCBA_TSA_URL": "https://tsa.example.vn/tsa",
           "HOCBA_PUBLIC_BASE_URL": "https://hocba.example.vn",
           "HOCBA_STORE": str(tmp_path / "store"),
           "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}"}
    return doc, env


def start(doc: Doc, env: dict[str, str], clients_file: Path) -> None:
    clients_file.parent.mkdir(parents=True, exist_ok=True)
    clients_file.write_text(json.dumps(doc), encoding="utf-8")
    service = Hocba(load_settings({**env, "HOCBA_CLIENTS_FILE": str(clients_file)}))
    service.close()


def test_the_production_setup_starts(production: tuple[Doc, dict[str, str]],
                                     tmp_path: Path) -> None:
    doc, env = production
    start(doc, env, tmp_path / "etc" / "clients.json")  # no ConfigError


def _signer(doc: Doc, **entry: Any) -> Doc:
    doc["signers"].append({"tenant": "DEMO-SCHOOL-1", "role": "teacher", **entry})
    return doc


# (dev part named in the error, change to the production setup: doc, env, test state)
DEV_PARTS: dict[str, tuple[str, Callable[[Doc, dict[str, str], Path], None]]] = {
    "dev TSA URL": ("the dev TSA", lambda d, e, s: e.update(
        HOCBA_TSA_URL="http://127.0.0.1:9780/dev/tsa/tsa")),
    "TSA on localhost": ("the dev TSA", lambda d, e, s: e.update(
        HOCBA_TSA_URL="http://localhost:8000/tsa")),
    "dev public base URL": ("the dev public base URL", lambda d, e, s: e.update(
        HOCBA_PUBLIC_BASE_URL="http://127.0.0.1:8080")),
    "plain http public base URL": ("the dev public base URL", lambda d, e, s: e.update(
        HOCBA_PUBLIC_BASE_URL="http://hocba.example.vn")),
    "local key": ("software (local) signer keys", lambda d, e, s: _signer(
        d, key="school-1-teacher", backend="local",
        private_key_pem=str(s / "pki/keys/teacher-1.key.pem"),
        certificate_chain_pem=[str(s / "pki/certs/teacher-1.pem")])),
    "private key file on a client entry": ("software (local) signer keys",
                                           lambda d, e, s: _signer(
        d, key="school-1-client", backend="client",
        private_key_pem=str(s / "pki/keys/client-teacher-1.key.pem"),
        certificate_chain_pem=[str(s / "pki/certs/client-teacher-1.pem")])),
    "plain api_key": ("plain API keys", lambda d, e, s: d["clients"].append(
        {"name": "platform", "tenant": "SO-GDDT", "api_key": "dev-key",
         "scopes": ["records:write"]})),
    "dev root as trust anchor": ("the dev root", lambda d, e, s: d.update(
        trust_anchor=str(s / "pki/root.pem"))),
    "dev root among the anchors": ("the dev root", lambda d, e, s: d.update(
        trust_anchor=[d["trust_anchor"], str(s / "pki/root-g2.pem")])),
    "dev trust store": ("the dev root", lambda d, e, s: d.update(
        trust_store=str(s / "trust.toml"))),
    "dev CSC server": ("the dev CSC server", lambda d, e, s: d["signers"][1].update(
        csc_service_url="http://127.0.0.1:9782")),
    "stored CSC authorization": ("a stored CSC authorization",
                                 lambda d, e, s: d["signers"][1].update(
                                     authorization={"otp": "123456"})),
    "dev SoftHSM2 token": ("the dev PKCS#11 token", lambda d, e, s: d["pkcs11"].update(
        token_label="hocba-dev")),
    "PIN in a file": ("the dev PKCS#11 token", lambda d, e, s: d["pkcs11"].update(
        pin_file=str(s / "hsm-pin"), softhsm2_conf=str(s / "softhsm2.conf"))),
}


@pytest.mark.parametrize("case", sorted(DEV_PARTS))
def test_production_refuses_each_dev_part(case: str, production: tuple[Doc, dict[str, str]],
                                          test_state: Path, tmp_path: Path) -> None:
    part, change = DEV_PARTS[case]
    doc, env = copy.deepcopy(production)
    change(doc, env, test_state)
    with pytest.raises(ConfigError, match=f"^production refuses {re.escape(part)}: "):
        start(doc, env, tmp_path / "etc" / "clients.json")


@pytest.mark.parametrize("where", ["var/dev/clients.json", "provisioned/clients.json"])
def test_production_refuses_the_dev_clients_file(where: str,
                                                 production: tuple[Doc, dict[str, str]],
                                                 tmp_path: Path) -> None:
    doc, env = production
    clients_file = tmp_path / where
    clients_file.parent.mkdir(parents=True)
    (clients_file.parent / ".provisioned").touch()
    if where.startswith("var/"):
        (clients_file.parent / ".provisioned").unlink()  # the path alone says it
    with pytest.raises(ConfigError, match=r"^production refuses the dev clients file: "):
        start(doc, env, clients_file)


def test_production_refuses_the_provisioned_test_state(service_env: dict[str, str],
                                                       tmp_path: Path) -> None:
    """The dev state as `hocba dev` makes it: refused (for the first dev part checked)."""
    settings = load_settings({**service_env, "HOCBA_ENV": "production",
                              "HOCBA_STORE": str(tmp_path / "s"),
                              "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'i.sqlite3'}"})
    with pytest.raises(ConfigError, match=r"^production refuses the dev clients file"):
        Hocba(settings)
