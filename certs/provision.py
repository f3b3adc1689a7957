"""Provision the dev/test PKI and SoftHSM2 token under a state directory.

    python -m certs.provision --state var/dev --port 9780 --csc-port 9782

Idempotent: a finished state directory (marker file) is left alone. Layout:
    <state>/pki/keys/*.pem       software keys (dev only) and seal public keys
    <state>/pki/certs/*.pem      every certificate, by certomancer label
    <state>/pki/root.pem         the trust anchor (2020-2070)
    <state>/pki/root-g2.pem      its successor (2052-2110; cross-signed: certs/root-g2-cross.pem)
    <state>/trust.toml           the trust store: both anchors, their SHA-256 and periods
    <state>/softhsm2.conf, <state>/tokens/   the SoftHSM2 token holding the seal keys
    <state>/hsm-pin              the token's user PIN (dev only)
    <state>/csc-otp              the OTP the dev CSC server (certs/csc_server.py) accepts
    <state>/clients.json         API keys and signer keys (see CONTRACT.md)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

CERTS_DIR = Path(__file__).resolve().parent
PKI_CONFIG = CERTS_DIR / "dev-pki.yml"
MARKER = ".provisioned"
TOKEN_LABEL = "hocba-dev"  # noqa: S105 - a label
CLIENT_TOKEN_LABEL = "hocba-school-client"  # noqa: S105 - a label
SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)
# Remote signing credentials (CSC) the dev CSC server holds: signer key ->
# (school, role, certomancer label); the CSC credential ID is "dev/<label>".
CSC_CREDENTIALS = {"school-1-csc-teacher": ("DEMO-SCHOOL-1", "teacher", "csc-teacher-1")}
# Keys added to dev-pki.yml after state directories were first provisioned: a state
# directory provisioned before has no key file for them, and its PKI simply lacks
# their certificates (re-provision with --force to get them).
LATER_KEYS = frozenset(label for _school, _role, label in CSC_CREDENTIALS.values())
DEFAULT_CSC_PORT = 9782
SOFTWARE_KEYS = (
    "root", "interm", "tsa", "ocsp",
    "tsa-ca", "tsa-ca-2033", "tsa-ca-2043", "tsa-ca-2053", "tsa-ca-2063",
    "ocsp-tsa-ca", "ocsp-tsa-ca-2033", "ocsp-tsa-ca-2043", "ocsp-tsa-ca-2053",
    "ocsp-tsa-ca-2063",
    # later eras (dev-pki.yml's timeline)
    "root-g2", "interm-g2", "tsa-2033", "tsa-2043", "tsa-2053", "tsa-2063",
    "ocsp-2033", "ocsp-2043", "ocsp-2053", "ocsp-g2-2052", "ocsp-g2-2064",
    "teacher-1", "principal-1", "teacher-2", "principal-2",
    "client-teacher-1", "client-principal-1", "bad-ku-1",
    "foreign-root", "foreign-signer",
    *(label for _school, _role, label in CSC_CREDENTIALS.values()),
)
# Keys whose signatures are checked for decades (CAs, TSAs, OCSP responders): ECDSA P-256,
# acceptable under policies/crypto/algorithms.toml after 2030 (RSA-2048 is not) and fast
# to load (the responder loads every key at start); signers' keys sign once.
LONG_LIVED_KEYS = frozenset(k for k in SOFTWARE_KEYS if k.split("-")[0] in
                            {"root", "interm", "tsa", "ocsp"})
SEALS = {"seal-1": "DEMO-SCHOOL-1", "seal-2": "DEMO-SCHOOL-2"}
SCHOOLS = {"DEMO-SCHOOL-1": "1", "DEMO-SCHOOL-2": "2"}
DEPT = "DEMO-DEPT"
# trust.toml anchors: id -> (certificate label, note)
TRUST_ANCHORS = {
    "hocba-dev-root": ("root", None),
    "hocba-dev-root-g2": (
        "root-g2", "rollover: cross-signed by hocba-dev-root (pki/certs/root-g2-cross.pem)"),
}
TRUST_STORE = "trust.toml"


def find_softhsm_module() -> str:
    env = os.environ.get("HOCBA_PKCS11_MODULE")
    if env:
        return env
    for cand in SOFTHSM_MODULE_CANDIDATES:
        if Path(cand).exists():
            return cand
    raise SystemExit("libsofthsm2.so not found: install the softhsm2 package (make deps)")


def pki_config(port: int, key_dir: Path) -> Any:
    from certomancer.registry import CertomancerConfig

    with open(PKI_CONFIG, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    dev = cfg["pki-architectures"]["dev"]
    for label in LATER_KEYS:
        if not (key_dir / cfg["keysets"]["dev"]["keys"][label]["path"]).exists():
            del cfg["keysets"]["dev"]["keys"][label]
            del dev["entities"][label]
            del dev["certs"][label]
    return CertomancerConfig(
        cfg, key_search_dir=str(key_dir), external_url_prefix=f"http://127.0.0.1:{port}"
    )


def _write_private_key(path: Path, *, long_lived: bool = False) -> None:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        ec.generate_private_key(ec.SECP256R1()) if long_lived
        else rsa.generate_private_key(public_exponent=65537, key_size=2048))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def softhsm_env(state: Path) -> dict[str, str]:
    return {**os.environ, "SOFTHSM2_CONF": str(state / "softhsm2.conf")}


def _init_token(state: Path, label: str, pin: str) -> None:
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", label,
         "--pin", pin, "--so-pin", secrets.token_hex(8)],
        env=softhsm_env(state), check=True, capture_output=True,
    )


def _generate_seal_keys(module: str, state: Path, pin: str, key_dir: Path) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType

    os.environ["SOFTHSM2_CONF"] = str(state / "softhsm2.conf")
    lib = pkcs11.lib(module)
    token = lib.get_token(token_label=TOKEN_LABEL)
    with token.open(rw=True, user_pin=pin) as session:
        for label in SEALS:
            pub, _priv = session.generate_keypair(
                KeyType.RSA, 2048, id=label.encode(), label=label, store=True,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
            )
            n = pub[Attribute.MODULUS]
            e = pub[Attribute.PUBLIC_EXPONENT]
            spki = asn1_keys.PublicKeyInfo.wrap(
                asn1_keys.RSAPublicKey(
                    {"modulus": int.from_bytes(n, "big"),
                     "public_exponent": int.from_bytes(e, "big")}
                ),
                "rsa",
            )
            (key_dir / f"{label}.pub.pem").write_bytes(_pem("PUBLIC KEY", spki.dump()))


def _import_certificates(module: str, state: Path, token_label: str, pin: str,
                         entries: dict[str, bytes]) -> None:
    import pkcs11
    from pkcs11 import Attribute, CertificateType, ObjectClass

    os.environ["SOFTHSM2_CONF"] = str(state / "softhsm2.conf")
    lib = pkcs11.lib(module)
    token = lib.get_token(token_label=token_label)
    from asn1crypto import x509

    with token.open(rw=True, user_pin=pin) as session:
        for label, der in entries.items():
            cert = x509.Certificate.load(der)
            session.create_object({
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.LABEL: label,
                Attribute.ID: label.encode(),
                Attribute.SUBJECT: cert.subject.dump(),
                Attribute.ISSUER: cert.issuer.dump(),
                Attribute.SERIAL_NUMBER: cert["tbs_certificate"]["serial_number"].dump(),
                Attribute.VALUE: der,
            })


def _import_client_key(state: Path, pin: str, key_pem: Path, label: str, key_id: str) -> None:
    """The client-held test token (a school's USB token): key imported, label != cert label."""
    subprocess.run(
        ["softhsm2-util", "--import", str(key_pem), "--token", CLIENT_TOKEN_LABEL,
         "--label", label, "--id", key_id.encode().hex(), "--pin", pin],
        env=softhsm_env(state), check=True, capture_output=True,
    )


def _fingerprint(port: int, csc_port: int) -> str:
    """What the state was provisioned from: the PKI definition, this script, the ports."""
    h = hashlib.sha256(PKI_CONFIG.read_bytes())
    h.update(Path(__file__).read_bytes())
    h.update(f"{port}:{csc_port}".encode())
    return h.hexdigest()


def _marker_matches(state: Path, port: int, csc_port: int) -> bool:
    try:
        return (state / MARKER).read_text().strip() == _fingerprint(port, csc_port)
    except OSError:
        return False


def provision(state: Path, port: int, *, force: bool = False,
              csc_port: int = DEFAULT_CSC_PORT) -> Path:
    """Provision `state` unless it is up to date. The work runs in a child process: the
    SoftHSM2 library reads its configuration once per process, so a process that already
    uses a token (a test session, the service) cannot set up another one itself."""
    state = state.resolve()
    if _marker_matches(state, port, csc_port) and not force:
        return state
    subprocess.run([sys.executable, "-m", "certs.provision", "--state", str(state),
                    "--port", str(port), "--csc-port", str(csc_port),
                    *(["--force"] if force else [])],
                   check=True, cwd=Path(__file__).resolve().parent.parent)
    return state


def _provision_here(state: Path, port: int, *, force: bool, csc_port: int) -> Path:
    state = state.resolve()
    if _marker_matches(state, port, csc_port) and not force:
        return state
    if (state / MARKER).exists():
        print(f"{state}: the dev PKI definition changed; provisioning it anew "
              "(records signed with the old dev PKI no longer chain to the new root)",
              file=sys.stderr)
    if shutil.which("softhsm2-util") is None:
        raise SystemExit("softhsm2-util not found: install the softhsm2 package (make deps)")
    if state.exists():
        shutil.rmtree(state)
    module = find_softhsm_module()
    key_dir = state / "pki" / "keys"
    cert_dir = state / "pki" / "certs"
    for d in (key_dir, cert_dir, state / "tokens"):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(key_dir, 0o700)

    for name in SOFTWARE_KEYS:
        _write_private_key(key_dir / f"{name}.key.pem", long_lived=name in LONG_LIVED_KEYS)

    (state / "softhsm2.conf").write_text(
        f"directories.tokendir = {state / 'tokens'}\n"
        "objectstore.backend = file\nlog.level = ERROR\n"
    )
    pin = secrets.token_hex(8)
    client_pin = secrets.token_hex(8)
    _init_token(state, TOKEN_LABEL, pin)
    _init_token(state, CLIENT_TOKEN_LABEL, client_pin)
    (state / "hsm-pin").write_text(pin)
    (state / "client-token-pin").write_text(client_pin)
    os.chmod(state / "hsm-pin", 0o600)
    os.chmod(state / "client-token-pin", 0o600)
    _generate_seal_keys(module, state, pin, key_dir)

    cfg = pki_config(port, key_dir)
    certs: dict[str, bytes] = {}
    for arch_label, arch in cfg.pki_archs.items():
        specs = [spec for _iss, group in arch.enumerate_certs_by_issuer() for spec in group]
        for spec in specs:
            label = str(spec.label)
            name = label if str(arch_label) == "dev" else f"{arch_label}-{label}"
            der = arch.get_cert(spec.label).dump()
            (cert_dir / f"{name}.pem").write_bytes(_pem("CERTIFICATE", der))
            certs[name] = der
    shutil.copyfile(cert_dir / "root.pem", state / "pki" / "root.pem")
    shutil.copyfile(cert_dir / "root-g2.pem", state / "pki" / "root-g2.pem")
    _write_trust_store(state, certs)

    _import_certificates(module, state, TOKEN_LABEL, pin,
                         {label: certs[label] for label in SEALS})
    # On the client token the key and its certificate carry different labels, as
    # Vietnamese CA tokens do; the agent must match by CKA_ID / public key.
    _import_client_key(state, client_pin, key_dir / "client-principal-1.key.pem",
                       "Private Key", "client-principal-1")
    _import_certificates(module, state, CLIENT_TOKEN_LABEL, client_pin,
                         {"client-principal-1": certs["client-principal-1"]})

    otp_fd = os.open(state / "csc-otp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(otp_fd, "w") as f:
        f.write(f"{secrets.randbelow(10**6):06d}")

    _write_clients(state, module, csc_port)
    (state / MARKER).write_text(_fingerprint(port, csc_port) + "\n")
    return state


def _pem(kind: str, der: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN " + kind.encode() + b"-----\n" + b"\n".join(lines) + \
        b"\n-----END " + kind.encode() + b"-----\n"


def _toml_value(value: str | list[str] | datetime) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def _write_trust_store(state: Path, certs: dict[str, bytes]) -> None:
    """<state>/trust.toml: one [[anchor]] per root, certificate paths relative to it."""
    from asn1crypto import x509

    lines = ['description = "hocba dev PKI (never for real records)"']
    for anchor_id, (label, note) in TRUST_ANCHORS.items():
        der = certs[label]
        cert = x509.Certificate.load(der)
        validity = cert["tbs_certificate"]["validity"]
        entry: dict[str, str | list[str] | datetime] = {
            "id": anchor_id,
            "name": cert.subject.native["common_name"],
            "certificate": f"pki/{label}.pem",
            "sha256": hashlib.sha256(der).hexdigest(),
            "purposes": ["signing", "timestamping"],
            "trusted_from": validity["not_before"].native,
            "trusted_until": validity["not_after"].native,
            "source": "generated by certs/provision.py",
        }
        if note:
            entry["note"] = note
        lines += ["", "[[anchor]]", *(f"{k} = {_toml_value(v)}" for k, v in entry.items())]
    (state / TRUST_STORE).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _display_path(path: Path) -> str:
    """Repo-relative when under the working directory (var/dev/...), else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _write_clients(state: Path, module: str, csc_port: int) -> None:
    def rel(*parts: str) -> str:
        return _display_path(state.joinpath(*parts))

    def chain(*labels: str) -> list[str]:
        return [rel("pki", "certs", f"{label}.pem") for label in labels]

    def local(key: str, tenant: str, role: str, label: str, issuer: str = "interm",
              backend: str = "local") -> dict[str, Any]:
        return {"key": key, "tenant": tenant, "role": role, "backend": backend,
                "private_key_pem": rel("pki", "keys", f"{label}.key.pem"),
                "certificate_chain_pem": chain(label, issuer)}

    clients: list[dict[str, Any]] = []
    signers: list[dict[str, Any]] = []
    for school, n in SCHOOLS.items():
        clients.append({
            "name": f"school-{n}", "api_key": secrets.token_urlsafe(24), "tenant": school,
            "scopes": ["records:write", "records:sign"],
        })
        for role in ("teacher", "principal"):
            signers.append(local(f"school-{n}-{role}", school, role, f"{role}-{n}"))
        signers.append({
            "key": f"school-{n}-seal", "tenant": school, "role": "seal", "backend": "pkcs11",
            "pkcs11_key_label": f"seal-{n}",
            "certificate_chain_pem": chain(f"seal-{n}", "interm"),
        })
    signers += [
        local("school-1-teacher-badku", "DEMO-SCHOOL-1", "teacher", "bad-ku-1"),
        local("school-1-teacher-foreign", "DEMO-SCHOOL-1", "teacher", "foreign-signer",
              issuer="foreign-root"),
        local("school-1-client-teacher", "DEMO-SCHOOL-1", "teacher", "client-teacher-1",
              backend="client"),
        # the same key is on the client token (hocba-school-client), for the agent
        local("school-1-client-principal", "DEMO-SCHOOL-1", "principal",
              "client-principal-1", backend="client"),
    ]
    # Remote signing: the key stays with the (dev) CSC server, the certificates come from
    # its credentials/info; "authorization" is the OTP a caller sends (dev only).
    otp = (state / "csc-otp").read_text().strip()
    signers += [
        {"key": key, "tenant": school, "role": role, "backend": "csc",
         "csc_service_url": f"http://127.0.0.1:{csc_port}",
         "csc_credential_id": f"dev/{label}", "authorization": {"otp": otp}}
        for key, (school, role, label) in CSC_CREDENTIALS.items()
    ]
    clients += [
        {"name": "platform", "api_key": secrets.token_urlsafe(24), "tenant": DEPT,
         "scopes": ["records:write", "records:sign"]},
        {"name": "archivist", "api_key": secrets.token_urlsafe(24), "tenant": DEPT,
         "scopes": ["archive:read"]},
        {"name": "admin", "api_key": secrets.token_urlsafe(24), "tenant": DEPT,
         "scopes": ["archive:admin", "stats:read"]},
    ]
    doc = {
        "clients": clients,
        "tenants": {DEPT: sorted(SCHOOLS)},
        "signers": signers,
        "trust_anchor": rel("pki", "root.pem"),
        # both roots with purposes and periods; like every path here, relative to the
        # working directory (signer.clients.load_clients)
        "trust_store": rel(TRUST_STORE),
        "pkcs11": {"module": module, "token_label": TOKEN_LABEL,
                   "pin_file": rel("hsm-pin"), "softhsm2_conf": rel("softhsm2.conf")},
        "client_token": {"module": module, "token_label": CLIENT_TOKEN_LABEL,
                         "pin_file": rel("client-token-pin")},
    }
    path = state / "clients.json"
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.chmod(path, 0o600)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--state", type=Path, default=Path("var/dev"))
    ap.add_argument("--port", type=int, default=9780, help="port of the TSA/OCSP/CRL responder")
    ap.add_argument("--csc-port", type=int, default=DEFAULT_CSC_PORT,
                    help="port of the dev CSC server (certs/csc_server.py), for clients.json")
    ap.add_argument("--force", action="store_true", help="re-provision from scratch")
    args = ap.parse_args(argv)
    state = _provision_here(args.state, args.port, force=args.force, csc_port=args.csc_port)
    print(f"dev PKI and SoftHSM2 token ready in {state}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
