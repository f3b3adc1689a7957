"""Two-step signing through the API: the signature value is made outside hocba, by
`openssl` with the dev client-held key, or by the agent on a SoftHSM2 token."""

from __future__ import annotations

import base64
import dataclasses
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.helpers import auth, metadata, pupil_name, sign, upload

pytestmark = pytest.mark.integration
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"


def pem(path: Path) -> str:
    return path.read_text()


def openssl_sign(key: Path, data: bytes, tmp: Path) -> str:
    (tmp / "data.bin").write_bytes(data)
    out = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key), str(tmp / "data.bin")],
                         capture_output=True, check=True, timeout=30).stdout
    return base64.b64encode(out).decode()


def new_record(http: Any, key: str, samples: dict[str, bytes], **meta: Any) -> str:
    r = upload(http, key, samples[SAMPLE], metadata(SAMPLE, **meta))
    assert r.status_code == 201, r.get_json()
    return str(r.get_json()["id"])


def start(http: Any, key: str, rid: str, role: str, chain: list[str]) -> Any:
    return http.post(f"/v1/records/{rid}/signing-sessions", headers=auth(key),
                     json={"role": role, "certificate_chain": chain})


def complete(http: Any, key: str, sid: str, value: str) -> Any:
    return http.post(f"/v1/signing-sessions/{sid}/complete", headers=auth(key),
                     json={"signature_value": value})


@pytest.fixture
def client_teacher(test_state: Path) -> tuple[Path, list[str]]:
    certs = test_state / "pki" / "certs"
    return (test_state / "pki" / "keys" / "client-teacher-1.key.pem",
            [pem(certs / "client-teacher-1.pem"), pem(certs / "interm.pem")])


def test_teacher_two_step_with_openssl_then_server_keys(
        http: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        client_teacher: tuple[Path, list[str]], tmp_path: Path) -> None:
    key = api_keys["school-1"]
    rid = new_record(http, key, samples)
    keyfile, chain = client_teacher
    r = start(http, key, rid, "teacher", chain)
    assert r.status_code == 201, r.get_json()
    s = r.get_json()
    data = base64.b64decode(s["data_to_sign"])
    import hashlib
    assert base64.b64decode(s["digest"]) == hashlib.sha256(data).digest()
    before = http.get(f"/v1/records/{rid}", headers=auth(key)).get_json()
    assert before["signatures"][0]["status"] == "pending"

    done = complete(http, key, s["session_id"], openssl_sign(keyfile, data, tmp_path))
    assert done.status_code == 200, done.get_json()
    rec = done.get_json()
    assert rec["signatures"][0]["status"] == "signed"
    assert "Đỗ Thị Thu Hằng" in rec["signatures"][0]["signer"]["subject"]
    # completing twice is refused
    again = complete(http, key, s["session_id"], openssl_sign(keyfile, data, tmp_path))
    assert again.status_code == 409 and again.get_json()["code"] == "session_completed"

    for role in ("principal", "seal"):
        assert sign(http, key, rid, role, f"school-1-{role}").status_code == 200
    pdf = http.get(f"/v1/records/{rid}/document", headers=auth(key)).data
    report = http.post("/v1/verify", data={"document": (__import__("io").BytesIO(pdf), "x.pdf")},
                       content_type="multipart/form-data").get_json()
    assert report["indication"] == "TOTAL_PASSED", report
    assert report["level"] == "PAdES-B-LTA"


def test_wrong_key_is_signature_invalid_and_changes_nothing(
        http: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        client_teacher: tuple[Path, list[str]], test_state: Path, tmp_path: Path) -> None:
    key = api_keys["school-1"]
    rid = new_record(http, key, samples)
    _, chain = client_teacher
    s = start(http, key, rid, "teacher", chain).get_json()
    before = http.get(f"/v1/records/{rid}", headers=auth(key)).get_json()
    wrong = test_state / "pki" / "keys" / "teacher-1.key.pem"
    r = complete(http, key, s["session_id"],
                 openssl_sign(wrong, base64.b64decode(s["data_to_sign"]), tmp_path))
    assert r.status_code == 422 and r.get_json()["code"] == "signature_invalid"
    assert http.get(f"/v1/records/{rid}", headers=auth(key)).get_json() == before


def test_policy_checked_at_session_creation(
        http: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        client_teacher: tuple[Path, list[str]]) -> None:
    key = api_keys["school-1"]
    rid = new_record(http, key, samples)
    _, chain = client_teacher
    r = start(http, key, rid, "principal", chain)
    assert r.status_code == 409 and r.get_json()["code"] == "role_out_of_order"
    r = start(http, key, rid, "teacher", ["not a certificate"])
    assert r.status_code == 422 and r.get_json()["code"] == "certificate_chain_invalid"


def test_expired_session_is_gone(service_settings: Any, live_responder: Any,
                                 api_keys: dict[str, str], samples: dict[str, bytes],
                                 client_teacher: tuple[Path, list[str]],
                                 tmp_path: Path) -> None:
    from signer.http import create_app

    app = create_app(dataclasses.replace(service_settings, session_ttl_seconds=1))
    http = app.test_client()
    key = api_keys["school-1"]
    rid = new_record(http, key, samples)
    keyfile, chain = client_teacher
    s = start(http, key, rid, "teacher", chain).get_json()
    time.sleep(1.5)
    r = complete(http, key, s["session_id"],
                 openssl_sign(keyfile, base64.b64decode(s["data_to_sign"]), tmp_path))
    assert r.status_code == 410 and r.get_json()["code"] == "session_expired"


def test_restart_between_the_two_steps(service_settings: Any, live_responder: Any,
                                       api_keys: dict[str, str], samples: dict[str, bytes],
                                       client_teacher: tuple[Path, list[str]],
                                       tmp_path: Path) -> None:
    """A new service instance over the same index and store completes the session."""
    from signer.http import create_app

    key = api_keys["school-1"]
    first = create_app(service_settings).test_client()
    rid = new_record(first, key, samples)
    keyfile, chain = client_teacher
    s = start(first, key, rid, "teacher", chain).get_json()
    del first

    second = create_app(service_settings).test_client()
    r = complete(second, key, s["session_id"],
                 openssl_sign(keyfile, base64.b64decode(s["data_to_sign"]), tmp_path))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["signatures"][0]["status"] == "signed"


def test_batch_session_forty_digests_forty_signatures(
        http: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        client_teacher: tuple[Path, list[str]], tmp_path: Path) -> None:
    key = api_keys["school-1"]
    ids = [new_record(http, key, samples,
                      student={"id_number": f"0012170{i:05d}", "full_name": pupil_name(i),
                               "date_of_birth": "2017-11-20", "student_code": f"HS-{i}"})
           for i in range(40)]
    keyfile, chain = client_teacher
    r = http.post("/v1/batch-signing-sessions", headers=auth(key),
                  json={"role": "teacher", "certificate_chain": chain, "record_ids": ids})
    assert r.status_code == 201, r.get_json()
    batch = r.get_json()
    assert [i["record_id"] for i in batch["items"]] == ids
    sigs = [{"record_id": i["record_id"],
             "signature_value": openssl_sign(keyfile, base64.b64decode(i["data_to_sign"]),
                                             tmp_path)} for i in batch["items"]]
    r = http.post(f"/v1/batch-signing-sessions/{batch['session_id']}/complete",
                  headers=auth(key), json={"signatures": sigs})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["done"] == 40 and all(x["status"] == "signed" for x in body["results"])
    for rid in ids[:3]:
        rec = http.get(f"/v1/records/{rid}", headers=auth(key)).get_json()
        assert rec["next_role"] == "principal"
