"""Issue #3, acceptance 1: teacher via CSC (real CSC server), principal two-step (the
signature value made by the school agent on a SoftHSM2 token), seal via PKCS#11."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import assert_each_certificate_once, auth, metadata, sign, upload

pytestmark = pytest.mark.integration
SAMPLE = "hoc-ba-thcs-libreoffice-pdfa.pdf"
PYHANKO = str(Path(sys.executable).parent / "pyhanko")


def csc_otp(clients_doc: dict[str, Any]) -> str:
    entry = next(s for s in clients_doc["signers"] if s["backend"] == "csc")
    return str(entry["authorization"]["otp"])


def record_view(http: Any, key: str, rid: str) -> dict[str, Any]:
    body: dict[str, Any] = http.get(f"/v1/records/{rid}", headers=auth(key)).get_json()
    return body


def test_wrong_otp_is_refused_and_changes_nothing(http: Any, api_keys: dict[str, str],
                                                  samples: dict[str, bytes],
                                                  clients_doc: dict[str, Any]) -> None:
    key = api_keys["school-1"]
    rid = upload(http, key, samples[SAMPLE], metadata(SAMPLE)).get_json()["id"]
    before = record_view(http, key, rid)
    wrong = "000000" if csc_otp(clients_doc) != "000000" else "111111"
    r = http.post(f"/v1/records/{rid}/signatures", headers=auth(key),
                  json={"role": "teacher", "key": "school-1-csc-teacher",
                        "authorization": {"otp": wrong}})
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["code"] == "authorization_invalid"
    assert wrong not in r.get_data(as_text=True)
    assert record_view(http, key, rid) == before
    r = http.post(f"/v1/records/{rid}/signatures", headers=auth(key),
                  json={"role": "teacher", "key": "school-1-csc-teacher"})
    assert r.status_code == 422 and r.get_json()["code"] == "authorization_required"


def test_csc_then_agent_two_step_then_hsm_is_b_lta(
        app: Any, http: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        clients_doc: dict[str, Any], test_state: Path, tmp_path: Path) -> None:
    key = api_keys["school-1"]
    rid = upload(http, key, samples[SAMPLE], metadata(SAMPLE)).get_json()["id"]

    r = http.post(f"/v1/records/{rid}/signatures", headers=auth(key),
                  json={"role": "teacher", "key": "school-1-csc-teacher",
                        "authorization": {"otp": csc_otp(clients_doc)}})
    assert r.status_code == 200, r.get_json()
    assert "Ngô Thị Mai" in r.get_json()["signatures"][0]["signer"]["subject"]

    # the principal's key is on the school's USB token (SoftHSM2): the agent signs
    from signer.agent import TokenKey

    token = clients_doc["client_token"]
    pin = Path(token["pin_file"]).read_text().strip()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOCBA_TOKEN_PIN", pin)
        with TokenKey(token["module"], pin_env="HOCBA_TOKEN_PIN",
                      token_label=token["token_label"], cert_label="client-principal-1",
                      chain_pems=[test_state / "pki/certs/interm.pem"]) as tk:
            chain = tk.certificate_chain()
            session = _via_test_client(http, key, "start", rid, "principal", chain)
            value = tk.sign_digest(__import__("base64").b64decode(session["digest"]))
            done = _via_test_client(http, key, "complete", session["session_id"], value)
    assert done["signatures"][1]["status"] == "signed"
    from asn1crypto import pem, x509

    token_cert = x509.Certificate.load(pem.unarmor(chain[0].encode())[2])
    principal = done["signatures"][1]["signer"]
    assert principal["subject"] == token_cert.subject.human_friendly, principal

    r = sign(http, key, rid, "seal", "school-1-seal")
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "archived"

    pdf = http.get(f"/v1/records/{rid}/document", headers=auth(key)).data
    assert_each_certificate_once(pdf)  # CSC, two-step and PKCS#11 signatures alike
    out = tmp_path / "final.pdf"
    out.write_bytes(pdf)
    res = subprocess.run([PYHANKO, "sign", "adesverify", "--trust",
                          str(test_state / "pki" / "root.pem"), "--trust-replace", str(out)],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("Sig_")]
    assert len(lines) == 3 and all(":INTACT:TRUSTED" in ln for ln in lines), res.stdout
    report = http.post("/v1/verify", data={"document": (io.BytesIO(pdf), "x.pdf")},
                       content_type="multipart/form-data").get_json()
    assert report["indication"] == "TOTAL_PASSED", json.dumps(report, indent=1)
    assert report["level"] == "PAdES-B-LTA"


def _via_test_client(http: Any, key: str, step: str, ident: str, *args: Any) -> Any:
    import base64

    if step == "start":
        role, chain = args
        r = http.post(f"/v1/records/{ident}/signing-sessions", headers=auth(key),
                      json={"role": role, "certificate_chain": chain})
        assert r.status_code == 201, r.get_json()
        return r.get_json()
    (value,) = args
    r = http.post(f"/v1/signing-sessions/{ident}/complete", headers=auth(key),
                  json={"signature_value": base64.b64encode(value).decode()})
    assert r.status_code == 200, r.get_json()
    return r.get_json()
