"""Batches: a class of 40 records signed by one role, as a job with persisted progress.
CSC: exactly one authorization (counted at the CSC server). A record of another tenant
fails alone."""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from click.testing import CliRunner
from requests.structures import CaseInsensitiveDict

from tests.conftest import CSC_PORT
from tests.integration.helpers import auth, metadata, pupil_name, upload

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"


def make_records(http: Any, key: str, samples: dict[str, bytes], n: int, start: int,
                 school: str = "DEMO-SCHOOL-1") -> list[str]:
    ids = []
    for i in range(start, start + n):
        meta = metadata(SAMPLE, school=school,
                        student={"id_number": f"0012170{i:05d}", "full_name": pupil_name(i),
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


# -- one bad record never stops a batch; a CSC batch stays with its authorization -----

def _raise_for(monkeypatch: pytest.MonkeyPatch, app: Any, bad: str) -> None:
    """Signing record `bad` raises what no hocba layer names (as pyHanko's RecursionError
    on a page tree a thousand levels deep would), in the signing step's checks."""
    step = app.extensions["hocba"].step
    check = step.check_signer

    def check_signer(target: Any, *args: Any, **kwargs: Any) -> None:
        if target.row.id == bad:
            raise RecursionError("maximum recursion depth exceeded")
        check(target, *args, **kwargs)

    monkeypatch.setattr(step, "check_signer", check_signer)


def test_an_unexpected_exception_is_that_records_failure(
        app: Any, http: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    key = api_keys["school-1"]
    ids = make_records(http, key, samples, 3, 400)
    _raise_for(monkeypatch, app, ids[1])
    r = http.post("/v1/batches", headers=auth(key),
                  json={"role": "teacher", "key": "school-1-teacher", "record_ids": ids})
    assert r.status_code == 202
    job = wait_job(http, key, r.get_json()["job_id"], timeout=60)
    assert job["done"] == 2, job
    assert [(f["record_id"], f["code"]) for f in job["failed"]] == [(ids[1], "signing_failed")]
    assert "RecursionError" in job["failed"][0]["detail"]
    for rid, status in zip(ids, ("signed", "pending", "signed"), strict=True):
        rec = http.get(f"/v1/records/{rid}", headers=auth(key)).get_json()
        assert rec["signatures"][0]["status"] == status, rec
    logged = [r for r in caplog.records if r.exc_info and r.name == "hocba.jobs"]
    assert len(logged) == 1 and ids[1] in logged[0].getMessage()  # once, with traceback


def test_an_unexpected_exception_in_a_csc_batch(app: Any, http: Any, api_keys: dict[str, str],
                                                samples: dict[str, bytes],
                                                clients_doc: dict[str, Any],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    key = api_keys["school-1"]
    ids = make_records(http, key, samples, 3, 420)
    _raise_for(monkeypatch, app, ids[0])
    otp = next(s for s in clients_doc["signers"] if s["backend"] == "csc")["authorization"]["otp"]
    r = http.post("/v1/batches", headers=auth(key),
                  json={"role": "teacher", "key": "school-1-csc-teacher", "record_ids": ids,
                        "authorization": {"otp": otp}})
    assert r.status_code == 202, r.get_json()
    job = wait_job(http, key, r.get_json()["job_id"], timeout=60)
    assert job["done"] == 2, job
    assert [(f["record_id"], f["code"]) for f in job["failed"]] == [(ids[0], "signing_failed")]


def test_csc_batch_while_the_receiving_runner_is_busy(
        app: Any, http: Any, service_settings: Any, api_keys: dict[str, str],
        samples: dict[str, bytes], clients_doc: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two workers over one index and store: A's runner is busy with a long HSM batch when
    A receives a CSC batch; B is idle. The CSC batch is A's (it holds the one-time
    authorization): it runs at once and signs, B never claims it."""
    from signer.http import create_app

    key = api_keys["school-1"]
    long_ids = make_records(http, key, samples, 3, 500)
    csc_ids = make_records(http, key, samples, 2, 520)
    runner_a = app.extensions["hocba"].jobs()
    release = threading.Event()  # the HSM batch takes until the test says so
    one = runner_a._one

    def slow_one(job: Any, actor: Any, rid: str) -> None:
        release.wait(60)
        one(job, actor, rid)

    monkeypatch.setattr(runner_a, "_one", slow_one)
    worker_b = create_app(service_settings)
    try:
        r = http.post("/v1/batches", headers=auth(key),
                      json={"role": "teacher", "key": "school-1-teacher",
                            "record_ids": long_ids})
        long_job = r.get_json()["job_id"]
        deadline = time.monotonic() + 60
        while http.get(f"/v1/jobs/{long_job}", headers=auth(key)).get_json()["status"] \
                != "running":  # A's runner has it
            assert time.monotonic() < deadline, "A's runner never took the long batch"
            time.sleep(0.05)
        worker_b.extensions["hocba"].jobs().ensure_started()  # B: idle, polling
        otp = next(s for s in clients_doc["signers"]
                   if s["backend"] == "csc")["authorization"]["otp"]
        r = http.post("/v1/batches", headers=auth(key),
                      json={"role": "teacher", "key": "school-1-csc-teacher",
                            "record_ids": csc_ids, "authorization": {"otp": otp}})
        assert r.status_code == 202, r.get_json()
        job = wait_job(http, key, r.get_json()["job_id"], timeout=120)
        busy = http.get(f"/v1/jobs/{long_job}", headers=auth(key)).get_json()
        assert busy["status"] == "running" and busy["done"] == 0, busy  # A: still busy
        assert job["failed"] == [], job  # not authorization_lost
        assert job["done"] == 2, job
        row = app.extensions["hocba"].index.get_job(job["job_id"])
        assert row.lease_owner == runner_a.owner  # A ran it, not B
        release.set()
        assert wait_job(http, key, long_job)["done"] == 3
    finally:
        release.set()
        worker_b.extensions["hocba"].close()


def test_csc_batch_of_a_dead_worker_fails_fast(app: Any, http: Any, api_keys: dict[str, str],
                                               samples: dict[str, bytes]) -> None:
    """The worker holding the authorization died (its lease lapses): the worker that takes
    the job over fails each unsigned record with authorization_lost, and finishes it."""
    key = api_keys["school-1"]
    ids = make_records(http, key, samples, 2, 540)
    hocba = app.extensions["hocba"]
    job = hocba.index.create_job(
        tenant="DEMO-SCHOOL-1", kind="batch_csc", total=2, actor="client:school-1",
        params={"role": "teacher", "key": "school-1-csc-teacher", "record_ids": ids,
                "actor": "client:school-1", "client": "school-1"},
        lease_owner="a-worker-that-died", lease_seconds=1)
    runner = hocba.jobs()
    runner.ensure_started()
    time.sleep(0.5)
    assert hocba.index.get_job(job.id).status == "queued"  # its holder's, for now
    done = wait_job(http, key, job.id, timeout=30)
    assert [(f["record_id"], f["code"]) for f in done["failed"]] == [
        (rid, "authorization_lost") for rid in ids]
    assert hocba.index.get_job(job.id).lease_owner == runner.owner
