"""Batches: a class of 40 records signed by one role, as a job with persisted progress.
CSC: exactly one authorization (counted at the CSC server). A record of another tenant
fails alone."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from tests.conftest import CSC_PORT
from tests.integration.helpers import auth, metadata, upload

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"


def make_records(http: Any, key: str, samples: dict[str, bytes], n: int, start: int,
                 school: str = "DEMO-SCHOOL-1") -> list[str]:
    ids = []
    for i in range(start, start + n):
        meta = metadata(SAMPLE, school=school,
                        student={"id_number": f"0012170{i:05d}", "full_name": f"Học Sinh {i}",
                                 "date_of_birth": "2017-11-20", "student_code": f"HS-{i}"})
        r = upload(http, key, samples[SAMPLE], meta)
        assert r.status_code == 201, r.get_json()
        ids.append(r.get_json()["id"])
    return ids


def wait_job(http: Any, key: str, job_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}", headers=auth(key)).get_json()
        if job["status"] == "finished":
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def csc_stats() -> dict[str, Any]:
    stats: dict[str, Any] = requests.get(f"http://127.0.0.1:{CSC_PORT}/_test/stats",
                                         timeout=5).json()
    return stats


def test_csc_class_of_40_with_one_authorization(http: Any, api_keys: dict[str, str],
                                                samples: dict[str, bytes],
                                                clients_doc: dict[str, Any]) -> None:
    key = api_keys["school-1"]
    ids = make_records(http, key, samples, 40, 100)
    other = make_records(http, api_keys["school-2"], samples, 1, 900, school="DEMO-SCHOOL-2")
    otp = next(s for s in clients_doc["signers"] if s["backend"] == "csc")["authorization"]["otp"]
    requests.post(f"http://127.0.0.1:{CSC_PORT}/_test/reset", timeout=5)
    r = http.post("/v1/batches", headers=auth(key),
                  json={"role": "teacher", "key": "school-1-csc-teacher",
                        "record_ids": [*ids[:20], *other, *ids[20:]],
                        "authorization": {"otp": otp}})
    assert r.status_code == 202, r.get_json()
    job = wait_job(http, key, r.get_json()["job_id"])
    assert job["total"] == 41
    assert job["done"] == 40
    assert job["failed"] == [{"record_id": other[0], "code": "record_not_found",
                              "detail": job["failed"][0]["detail"]}]
    stats = csc_stats()
    assert stats["authorize_calls"] == 1, stats
    assert stats["authorize_hashes"] == [40], stats
    assert stats["sign_hash_calls"] == 1, stats
    assert stats["sign_hash_hashes"] == [40], stats
    for rid in ids[:2]:
        rec = http.get(f"/v1/records/{rid}", headers=auth(key)).get_json()
        assert rec["signatures"][0]["status"] == "signed"


def test_hsm_batch_progress_and_per_record_failure(http: Any, api_keys: dict[str, str],
                                                   samples: dict[str, bytes]) -> None:
    key = api_keys["school-1"]
    ids = make_records(http, key, samples, 5, 200)
    r = http.post("/v1/batches", headers=auth(key),
                  json={"role": "principal", "key": "school-1-principal", "record_ids": ids})
    assert r.status_code == 202
    job = wait_job(http, key, r.get_json()["job_id"])
    # the teacher has not signed: every record fails alone, with its own code
    assert job["done"] == 0 and len(job["failed"]) == 5
    assert {f["code"] for f in job["failed"]} == {"role_out_of_order"}
    r = http.post("/v1/batches", headers=auth(key),
                  json={"role": "teacher", "key": "school-1-teacher", "record_ids": ids})
    job = wait_job(http, key, r.get_json()["job_id"])
    assert job["done"] == 5 and job["failed"] == []
    other = http.get(f"/v1/jobs/{r.get_json()['job_id']}",
                     headers=auth(api_keys["school-2"]))
    assert other.status_code == 404
