"""Batches: a class of 40 records signed by one role, as a job with persisted progress.
CSC: exactly one authorization (counted at the CSC server). A record of another tenant
fails alone."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner
from requests.structures import CaseInsensitiveDict

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


class FlaskTransport(requests.adapters.BaseAdapter):
    """Sends requests.Session requests to the app's test client (the ApiClient of
    `hocba batch` against the real routes, no server process)."""

    def __init__(self, http: Any) -> None:
        super().__init__()
        self.http = http

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        assert kwargs.get("timeout"), "every request needs a timeout"
        url = urlsplit(str(request.url))
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length")}
        answer = self.http.open(url.path + (f"?{url.query}" if url.query else ""),
                                method=request.method, headers=headers, data=request.body)
        resp = requests.Response()
        resp.status_code = answer.status_code
        resp._content = answer.get_data()
        resp.headers = CaseInsensitiveDict(dict(answer.headers))
        resp.request, resp.url = request, request.url
        return resp

    def close(self) -> None:
        pass


def test_batch_cli_over_the_api_client(http: Any, api_keys: dict[str, str],
                                       samples: dict[str, bytes],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    key = api_keys["school-1"]
    ids = make_records(http, key, samples, 2, 300)
    other = make_records(http, api_keys["school-2"], samples, 1, 901, school="DEMO-SCHOOL-2")
    base = "http://hocba.test"
    transport = FlaskTransport(http)
    get_adapter = requests.Session.get_adapter
    monkeypatch.setattr(requests.Session, "get_adapter", lambda self, url: (
        transport if url.startswith(base) else get_adapter(self, url)))
    monkeypatch.setenv("HOCBA_TEST_API_KEY", key)

    from signer.cli import main

    args = ["batch", "sign", "--url", base, "--api-key-env", "HOCBA_TEST_API_KEY",
            "--role", "teacher", "--key", "school-1-teacher"]
    result = CliRunner().invoke(main, [*args, *(f"--record={r}" for r in [*ids, *other])])
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "2 signed, 1 failed of 3"
    assert lines[1].startswith(f"{other[0]}\tfailed\trecord_not_found: ")
    assert key not in result.output
    result = CliRunner().invoke(main, [*args, "--record", "no-such-record"])
    assert result.exit_code == 1 and "0 signed, 1 failed of 1" in result.stdout
    assert "job " in result.output  # the progress bar, on stderr
    result = CliRunner().invoke(main, [*args, "--key", "no-such-key", "--record", ids[0]])
    assert result.exit_code == 1
    assert "404 key_not_found: " in result.output
