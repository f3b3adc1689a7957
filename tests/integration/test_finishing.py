"""Finishing what was started: a record signed by every role but not archived (here the
TSA went down between the seal's signature and the document timestamp) is archived by
the service itself once the TSA is back, with no client action; meanwhile its status
says `archiving`. The real gunicorn (2 workers) over the real dev TSA, behind a gate
this test opens and closes; nothing is mocked."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import RESPONDER_PORT
from tests.integration.gunicorn_service import Service, bearer, free_port
from tests.integration.helpers import metadata

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"
GRACE = 2  # HOCBA_FINISH_GRACE_SECONDS (the default, 30 s, where Settings lacks it)
WAIT = 180  # seconds: the longest this test waits for the service to act by itself


class TsaGate:
    """A proxy in front of the dev TSA. Closed for a record (`close_after`): refuses
    (503) every timestamp once that record has `signatures` signatures in the index, so
    its last signature gets its signature timestamp and its archive gets none."""

    def __init__(self, upstream: str, index_file: Path) -> None:
        self.upstream = upstream
        self.index_file = index_file
        self.record_id: str | None = None
        self.signatures = 0
        self.refused = 0
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if gate.closed():
                    gate.refused += 1
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                answer = requests.post(gate.upstream, data=body, timeout=30, headers={
                    "Content-Type": self.headers.get("Content-Type",
                                                     "application/timestamp-query")})
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("Content-Type", ""))
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/dev/tsa/tsa"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close_after(self, record_id: str, signatures: int) -> None:
        self.record_id, self.signatures = record_id, signatures

    def open(self) -> None:
        self.record_id = None

    def closed(self) -> bool:
        if self.record_id is None:
            return False
        with sqlite3.connect(f"file:{self.index_file}?mode=ro", uri=True) as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM signatures WHERE record_id = ?",
                                    (self.record_id,)).fetchone()
        return bool(count >= self.signatures)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gate(live_responder: Any, tmp_path: Path) -> Iterator[TsaGate]:
    g = TsaGate(f"http://127.0.0.1:{RESPONDER_PORT}/dev/tsa/tsa", tmp_path / "index.sqlite3")
    yield g
    g.stop()


@pytest.fixture
def service(service_env: dict[str, str], gate: TsaGate, tmp_path: Path) -> Iterator[Service]:
    env = {**service_env, "HOCBA_STORE": str(tmp_path / "store"),
           "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}",
           "HOCBA_TSA_URL": gate.url, "HOCBA_JOB_LEASE_SECONDS": "5",
           "HOCBA_FINISH_GRACE_SECONDS": str(GRACE)}
    svc = Service(env, free_port(), workers=2, log=tmp_path / "gunicorn.log")
    svc.start()
    yield svc
    svc.stop()


def call(svc: Service, key: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{svc.base}{path}", headers=bearer(key),
                            timeout=120, **kwargs)


def audit_rows(index_file: Path, record_id: str, action: str) -> list[tuple[str, dict[str, Any]]]:
    with sqlite3.connect(f"file:{index_file}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT actor, detail_json FROM audit WHERE record_id = ? "
                            "AND action = ? ORDER BY seq", (record_id, action)).fetchall()
    return [(actor, json.loads(detail)) for actor, detail in rows]


def wait_for(what: str, check: Any, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout}s")


def test_signed_not_archived_is_finished_by_the_service(
        service: Service, gate: TsaGate, api_keys: dict[str, str],
        samples: dict[str, bytes], tmp_path: Path) -> None:
    key = api_keys["school-1"]
    index_file = tmp_path / "index.sqlite3"
    meta = metadata(SAMPLE)
    r = call(service, key, "POST", "/v1/records", files={
        "document": ("r.pdf", samples[SAMPLE], "application/pdf"),
        "metadata": (None, json.dumps(meta, ensure_ascii=False))})
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    for role in ("teacher", "principal"):
        r = call(service, key, "POST", f"/v1/records/{rid}/signatures",
                 json={"role": role, "key": f"school-1-{role}"})
        assert r.status_code == 200, r.text

    # The seal gets its signature timestamp; then the TSA is gone: no document timestamp.
    gate.close_after(rid, 3)
    r = call(service, key, "POST", f"/v1/records/{rid}/signatures",
             json={"role": "seal", "key": "school-1-seal"})
    assert r.status_code == 503, r.text
    problem = r.json()
    assert problem["code"] == "tsa_unavailable", problem
    assert "hocba archives the record by itself" in problem["detail"], problem
    assert gate.refused >= 1
    rec = call(service, key, "GET", f"/v1/records/{rid}").json()
    assert rec["status"] == "archiving", rec
    assert rec["next_role"] is None and "archive" not in rec, rec
    assert [s["status"] for s in rec["signatures"]] == ["signed"] * 3, rec

    # The last signer asking again still archives (here: still no TSA; same answer).
    r = call(service, key, "POST", f"/v1/records/{rid}/signatures",
             json={"role": "seal", "key": "school-1-seal"})
    assert r.status_code == 503 and r.json()["code"] == "tsa_unavailable", r.text

    # The service tries by itself, fails (TSA still down), and says when it tries again.
    failures = wait_for("a failed finishing attempt", lambda: audit_rows(
        index_file, rid, "record.archiving_failed"))
    actor, detail = failures[0]
    assert actor == "hocba-finisher"
    assert detail["code"] == "tsa_unavailable" and detail["attempt"] == 1, detail
    assert detail["next_attempt_at"], detail
    rec = call(service, key, "GET", f"/v1/records/{rid}").json()
    assert rec["status"] == "archiving", rec
    if "archiving" in rec:  # once signer/service/records.py passes the attempts in
        assert rec["archiving"]["last_error"] == "tsa_unavailable", rec
        assert rec["archiving"]["attempts"] >= 1, rec
    job = call(service, key, "GET", f"/v1/jobs/{detail['job_id']}").json()
    assert job["kind"] == "finish", job
    assert {(f["record_id"], f["code"]) for f in job["failed"]} == {(rid, "tsa_unavailable")}
    other = call(service, api_keys["school-2"], "GET", f"/v1/jobs/{detail['job_id']}")
    assert other.status_code == 404  # a tenant's finish job is its own

    # The TSA is back: the service archives the record, nobody asks it to.
    gate.open()
    seen: list[str] = []

    def archived() -> dict[str, Any] | None:
        now = call(service, key, "GET", f"/v1/records/{rid}").json()
        if not seen or seen[-1] != now["status"]:
            seen.append(now["status"])
        return now if now["status"] == "archived" else None

    rec = wait_for("archived by the service", archived)
    assert seen == ["archiving", "archived"], seen
    assert rec["archive"]["version"] == 1, rec
    done = audit_rows(index_file, rid, "record.archived")
    assert [a for a, _ in done] == ["hocba-finisher"], done

    pdf = call(service, key, "GET", f"/v1/records/{rid}/document").content
    report = requests.post(f"{service.base}/v1/verify",
                           files={"document": ("x.pdf", pdf, "application/pdf")},
                           timeout=120).json()
    assert report["indication"] == "TOTAL_PASSED", report
    assert report["level"] == "PAdES-B-LTA", report
    assert report["document_timestamps"], report
    assert report["archived"]["version"] == 1, report  # the archived final itself
    log = service.log_text()
    assert "Traceback" not in log, log[-6000:]


# -- the index's side, on SQLite and PostgreSQL ------------------------------------------

from tests.conftest import postgres_database  # noqa: E402
from tests.unit.archive.conftest import StepClock  # noqa: E402
from tests.unit.archive.test_index import PRINCIPAL, TEACHER, new_record, sign  # noqa: E402


@pytest.fixture(params=["sqlite", "postgresql"])
def indexed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, StepClock]]:
    """An index on each backend, with a clock that moves one second per reading."""
    from archive.index import Index

    clock = StepClock(datetime(2025, 5, 20, 8, 0, tzinfo=UTC))
    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'finish.sqlite3'}" if request.param == "sqlite"
               else stack.enter_context(postgres_database()))
        idx = Index(url, clock=clock)
        idx.migrate()
        stack.callback(idx.close)
        yield idx, clock


def test_records_to_finish_and_their_attempts(indexed: tuple[Any, StepClock]) -> None:
    index, clock = indexed
    from archive.index.records import ARCHIVING_FAILED

    last = {"hoc_ba_tieu_hoc": "seal"}
    signed = new_record(index)
    signed = sign(index, signed, TEACHER, "teacher")
    signed = sign(index, signed, PRINCIPAL, "principal")
    half = new_record(index, student_id_number="001215099999")
    half = sign(index, half, TEACHER + b" other", "teacher")
    assert index.records_to_finish(last, clock.now) == []  # the seal has not signed
    signed = sign(index, signed, PRINCIPAL + b" +seal", "seal")
    assert index.records_to_finish(last, signed.updated_at) == []  # within the grace
    assert index.records_to_finish({"other_type": "seal"}, clock.now + timedelta(1)) == []
    (found,) = index.records_to_finish(last, clock.now + timedelta(seconds=1))
    assert (found.row.id, found.attempts, found.last_attempt_at) == (signed.id, 0, None)
    assert index.archiving_attempts(signed.id) == (0, None)

    for attempt in (1, 2):
        index.append_audit("hocba-finisher", signed.tenant, ARCHIVING_FAILED, signed.id,
                           {"code": "tsa_unavailable", "attempt": attempt})
    (found,) = index.records_to_finish(last, clock.now + timedelta(seconds=1))
    attempts = index.archiving_attempts(signed.id)
    assert found.attempts == attempts.attempts == 2
    assert attempts.last is not None and attempts.last.detail["attempt"] == 2
    assert found.last_attempt_at == attempts.last.at
    assert found.last_attempt_at.tzinfo is not None

    new_record(index, supersedes=signed.id)  # a correction closes it: nothing to finish
    assert index.records_to_finish(last, clock.now + timedelta(1)) == []


def test_a_job_born_leased_waits_for_its_owner(indexed: tuple[Any, StepClock]) -> None:
    index, clock = indexed
    job = index.create_job(tenant="t", kind="batch_csc", total=1, params={}, actor="a",
                           lease_owner="holder", lease_seconds=30)
    assert job.status == "queued" and job.lease_owner == "holder"
    assert index.claim_job("other", 30) is None  # the holder lives
    assert index.renew_job_lease(job.id, "holder", 30)
    assert not index.renew_job_lease(job.id, "other", 30)
    clock.now += timedelta(seconds=31)  # the holder died: its lease lapsed
    taken = index.claim_job("other", 30)
    assert taken is not None and taken.id == job.id and taken.lease_owner == "other"
    assert not index.renew_job_lease(job.id, "holder", 30)


def test_finish_jobs_one_per_tenant(indexed: tuple[Any, StepClock]) -> None:
    index, _ = indexed
    args = {"kind": "finish", "total": 1, "params": {}, "actor": "hocba-finisher",
            "per_tenant": True}
    first = index.create_job_unless_active(tenant="a", **args)
    assert first is not None
    assert index.create_job_unless_active(tenant="a", **args) is None
    assert index.create_job_unless_active(tenant="b", **args) is not None
