"""Every signing path goes through one function, `SigningStep.sign`: a server-held key,
CSC for one record and for a batch, two-step for one record and for a batch, and a
server-held batch. A spy counts what passes through it; every signature the index holds
was committed inside it."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from signer.service.signing import SigningStep
from tests.integration.helpers import auth, metadata, pupil_name, sign, upload
from tests.integration.test_batches import wait_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"


class Spy:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str]]] = []  # (producer type, record ids)
        self.commits: list[tuple[str, bool]] = []  # (record id, inside sign())
        self._inside = threading.local()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        sign_fn, commit_fn = SigningStep.sign, SigningStep.commit
        spy = self

        def spied_sign(step: SigningStep, actor: Any, targets: Any, producer: Any) -> Any:
            spy.calls.append((type(producer).__name__, [t.row.id for t in targets]))
            spy._inside.depth = getattr(spy._inside, "depth", 0) + 1
            try:
                return sign_fn(step, actor, targets, producer)
            finally:
                spy._inside.depth -= 1

        def spied_commit(step: SigningStep, actor: Any, target: Any, *args: Any,
                         **kwargs: Any) -> Any:
            spy.commits.append((target.row.id, getattr(spy._inside, "depth", 0) > 0))
            return commit_fn(step, actor, target, *args, **kwargs)

        monkeypatch.setattr(SigningStep, "sign", spied_sign)
        monkeypatch.setattr(SigningStep, "commit", spied_commit)


def _records(http: Any, key: str, samples: dict[str, bytes], n: int, start: int) -> list[str]:
    ids = []
    for i in range(start, start + n):
        meta = metadata(SAMPLE, student={"id_number": f"0012179{i:05d}",
                                         "full_name": pupil_name(i),
                                         "date_of_birth": "2017-11-20",
                                         "student_code": f"HS-{i}"})
        r = upload(http, key, samples[SAMPLE], meta)
        assert r.status_code == 201, r.get_json()
        ids.append(r.get_json()["id"])
    return ids


def _sign_value(keyfile: Path, data_b64: str) -> str:
    key = serialization.load_pem_private_key(keyfile.read_bytes(), password=None)
    value = key.sign(base64.b64decode(data_b64), padding.PKCS1v15(),  # type: ignore[union-attr,call-arg]
                     hashes.SHA256())
    return base64.b64encode(value).decode()


def test_every_signing_path_uses_the_one_step(
        app: Any, http: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        clients_doc: dict[str, Any], test_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy()
    spy.install(monkeypatch)
    key = api_keys["school-1"]
    otp = next(s for s in clients_doc["signers"] if s["backend"] == "csc")["authorization"]["otp"]
    pki = test_state / "pki"
    chain = [(pki / "certs" / "client-principal-1.pem").read_text(),
             (pki / "certs" / "interm.pem").read_text()]
    principal_key = pki / "keys" / "client-principal-1.key.pem"
    single, batch = _records(http, key, samples, 1, 1)[0], _records(http, key, samples, 2, 10)

    # CSC, one record; two-step, one record; server-held key (HSM), one record
    r = http.post(f"/v1/records/{single}/signatures", headers=auth(key),
                  json={"role": "teacher", "key": "school-1-csc-teacher",
                        "authorization": {"otp": otp}})
    assert r.status_code == 200, r.get_json()
    s = http.post(f"/v1/records/{single}/signing-sessions", headers=auth(key),
                  json={"role": "principal", "certificate_chain": chain}).get_json()
    r = http.post(f"/v1/signing-sessions/{s['session_id']}/complete", headers=auth(key),
                  json={"signature_value": _sign_value(principal_key, s["data_to_sign"])})
    assert r.status_code == 200, r.get_json()
    r = sign(http, key, single, "seal", "school-1-seal")
    assert r.status_code == 200 and r.get_json()["status"] == "archived", r.get_json()

    # CSC batch (one authorization); two-step batch; server-held batch
    r = http.post("/v1/batches", headers=auth(key),
                  json={"role": "teacher", "key": "school-1-csc-teacher", "record_ids": batch,
                        "authorization": {"otp": otp}})
    assert r.status_code == 202, r.get_json()
    assert wait_job(http, key, r.get_json()["job_id"])["failed"] == []
    s = http.post("/v1/batch-signing-sessions", headers=auth(key),
                  json={"role": "principal", "certificate_chain": chain,
                        "record_ids": batch}).get_json()
    r = http.post(f"/v1/batch-signing-sessions/{s['session_id']}/complete", headers=auth(key),
                  json={"signatures": [{"record_id": i["record_id"],
                                        "signature_value": _sign_value(principal_key,
                                                                       i["data_to_sign"])}
                                       for i in s["items"]]})
    assert r.status_code == 200 and r.get_json()["done"] == 2, r.get_json()
    r = http.post("/v1/batches", headers=auth(key),
                  json={"role": "seal", "key": "school-1-seal", "record_ids": batch})
    assert wait_job(http, key, r.get_json()["job_id"])["failed"] == []

    assert spy.calls == [
        ("KeyProducer", [single]), ("SignatureValues", [single]), ("KeyProducer", [single]),
        ("KeyProducer", batch),  # the CSC batch: all its records in one call
        ("SignatureValues", batch),
        ("KeyProducer", [batch[0]]), ("KeyProducer", [batch[1]]),  # record by record
    ]
    index = app.extensions["hocba"].index
    signatures = [s.record_id for rid in (single, *batch) for s in index.list_signatures(rid)]
    assert sorted(signatures) == sorted(rid for rid, _ in spy.commits)
    assert all(inside for _, inside in spy.commits), spy.commits
    for rid in (single, *batch):
        assert http.get(f"/v1/records/{rid}", headers=auth(key)).get_json()["status"] == \
            "archived"
