"""Restart the service in the middle of a batch: it finishes, no record is signed twice,
none is lost. The real gunicorn (2 workers) is SIGKILLed, master and workers at once, while
its job runner signs a class; after a restart a worker takes the job over once its lease
(3 s here) has run out."""

from __future__ import annotations

import io
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pyhanko.pdf_utils.reader import PdfFileReader

from archive.index import Index
from tests.integration.gunicorn_service import (
    SAMPLE,
    Service,
    bearer,
    create_records,
    free_port,
    get_job,
    submit_batch,
    wait_job,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N = 12


@pytest.fixture
def service(service_env: dict[str, str], live_responder: Any,
            tmp_path: Path) -> Iterator[Service]:
    env = {**service_env, "HOCBA_STORE": str(tmp_path / "store"),
           "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}",
           "HOCBA_JOB_LEASE_SECONDS": "3"}
    svc = Service(env, free_port(), workers=2, log=tmp_path / "gunicorn.log")
    svc.start()
    yield svc
    svc.stop()


def test_sigkill_in_the_middle_of_a_batch(service: Service, api_keys: dict[str, str],
                                          samples: dict[str, bytes], tmp_path: Path) -> None:
    key = api_keys["school-1"]
    ids = create_records(service, key, samples[SAMPLE], N)
    job_id = submit_batch(service, key, "teacher", "school-1-teacher", ids)

    before = wait_job(service, key, job_id, timeout=120, min_done=3)
    service.kill9()
    assert before["status"] == "running", before
    assert 3 <= before["done"] < N, f"not in the middle of the batch: {before}"
    assert before["failed"] == [], before

    service.start()
    job = get_job(service, key, job_id)  # the contract's shape, also while unfinished
    assert {"status", "total", "done", "failed"} <= set(job), job
    assert job["status"] in ("queued", "running", "finished"), job
    job = wait_job(service, key, job_id, timeout=180)
    assert job["status"] == "finished", job
    assert job["total"] == N, job
    assert job["failed"] == [], job
    assert job["done"] == N, job  # none lost
    assert isinstance(job["done"], int) and isinstance(job["total"], int)

    # Through the API: every record signed once by the teacher, none further.
    for rid in ids:
        r = requests.get(f"{service.base}/v1/records/{rid}", headers=bearer(key), timeout=30)
        assert r.status_code == 200, r.text
        rec = r.json()
        teacher = [s for s in rec["signatures"] if s["role"] == "teacher"]
        assert len(teacher) == 1 and teacher[0]["status"] == "signed", rec
        assert teacher[0]["signer"]["key"] == "school-1-teacher", rec
        assert [s["status"] for s in rec["signatures"]][1:] == ["pending", "pending"], rec
        assert rec["next_role"] == "principal" and rec["status"] == "awaiting_signatures"
        doc = requests.get(f"{service.base}/v1/records/{rid}/document", headers=bearer(key),
                           timeout=30)
        assert doc.status_code == 200
        assert doc.headers["ETag"].strip('"') == rec["document"]["sha256"]
        sigs = PdfFileReader(io.BytesIO(doc.content)).embedded_signatures
        assert len(sigs) == 1, f"{rid}: {len(sigs)} signatures in the PDF"

    # The index and its audit trail agree: one teacher signature per record, no more.
    with sqlite3.connect(f"file:{tmp_path / 'index.sqlite3'}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT record_id, role FROM signatures").fetchall()
        signed = Counter(r for r, _role in
                         conn.execute("SELECT record_id, action FROM audit "
                                      "WHERE action = 'record.signed'").fetchall())
        item_failed = conn.execute("SELECT COUNT(*) FROM audit "
                                   "WHERE action = 'job.item_failed'").fetchone()[0]
    assert sorted(rows) == sorted((rid, "teacher") for rid in ids)
    assert signed == Counter(dict.fromkeys(ids, 1)), signed
    assert item_failed == 0

    index = Index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    try:
        assert index.verify_audit_chain() == (True, None)
    finally:
        index.close()
    log = service.log_text()
    assert "Traceback" not in log, log[-6000:]


def test_sigkill_while_a_csc_batch_holds_its_authorization(
        service: Service, csc_server: Any, api_keys: dict[str, str],
        samples: dict[str, bytes], clients_doc: dict[str, Any], tmp_path: Path) -> None:
    """The worker holding a CSC batch's one-time authorization dies with it: after the
    restart the batch is taken over once its lease lapses and finishes at once, each
    record signed (once) or failed with authorization_lost, never left running."""
    key = api_keys["school-1"]
    ids = create_records(service, key, samples[SAMPLE], 6, start=100)
    otp = next(s for s in clients_doc["signers"] if s["backend"] == "csc")["authorization"]["otp"]
    r = requests.post(f"{service.base}/v1/batches", headers=bearer(key), timeout=60,
                      json={"role": "teacher", "key": "school-1-csc-teacher",
                            "record_ids": ids, "authorization": {"otp": otp}})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    service.kill9()
    service.start()
    job = wait_job(service, key, job_id, timeout=60)
    assert job["kind"] == "batch_csc" and job["total"] == 6, job
    assert {f["code"] for f in job["failed"]} <= {"authorization_lost"}, job
    lost = {f["record_id"] for f in job["failed"]}
    assert job["done"] + len(lost) == 6, job
    with sqlite3.connect(f"file:{tmp_path / 'index.sqlite3'}?mode=ro", uri=True) as conn:
        signed = Counter(r for (r,) in conn.execute(
            "SELECT record_id FROM signatures WHERE role = 'teacher'").fetchall())
    assert set(signed) == set(ids) - lost, (signed, lost)
    assert all(n == 1 for n in signed.values()), signed
