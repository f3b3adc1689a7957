"""4 gunicorn workers x 50 concurrent seal signatures through PKCS#11: all succeed, all
validate. The seal key lives in the SoftHSM2 token; each worker process holds one PKCS#11
session (shared by its threads under a lock, in the gthread run)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.gunicorn_service import (
    SAMPLE,
    Service,
    bearer,
    create_records,
    free_port,
    submit_batch,
    wait_job,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PYHANKO = str(Path(sys.executable).parent / "pyhanko")
N = 50
WORKERS = 4
# What must never show in the service log: PKCS#11 session misuse between threads or
# processes, a worker killed for a hung request, any unhandled error.
BAD_LOG = ("CKR_OPERATION_ACTIVE", "CKR_USER_ALREADY_LOGGED_IN", "UserAlreadyLoggedIn",
           "OperationActive", "Traceback", "WORKER TIMEOUT", "CKR_", "PKCS#11 signing failed")


@pytest.fixture(params=[1, 4], ids=["sync", "gthread-4"])
def service(request: pytest.FixtureRequest, service_env: dict[str, str],
            live_responder: Any, tmp_path: Path) -> Iterator[Service]:
    env = {**service_env, "HOCBA_STORE": str(tmp_path / "store"),
           "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}"}
    svc = Service(env, free_port(), workers=WORKERS, threads=request.param,
                  log=tmp_path / "gunicorn.log")
    svc.start()
    yield svc
    svc.stop()


def sign_role_in_batches(svc: Service, key: str, role: str, signer: str,
                         ids: list[str]) -> None:
    """One batch job per worker so the workers' job runners share the preparation."""
    chunks = [ids[i::WORKERS] for i in range(WORKERS)]
    jobs = [submit_batch(svc, key, role, signer, chunk) for chunk in chunks]
    for job_id, chunk in zip(jobs, chunks, strict=True):
        job = wait_job(svc, key, job_id, timeout=240)
        assert job["failed"] == [] and job["done"] == len(chunk), job


def test_50_concurrent_seals_over_4_workers(service: Service, api_keys: dict[str, str],
                                            samples: dict[str, bytes],
                                            test_state: Path, tmp_path: Path) -> None:
    key = api_keys["school-1"]
    t0 = time.monotonic()
    ids = create_records(service, key, samples[SAMPLE], N)
    sign_role_in_batches(service, key, "teacher", "school-1-teacher", ids)
    sign_role_in_batches(service, key, "principal", "school-1-principal", ids)
    t_prep = time.monotonic() - t0

    barrier = threading.Barrier(N)
    results: dict[str, requests.Response | BaseException] = {}

    def seal(rid: str) -> None:
        barrier.wait(timeout=60)
        try:
            results[rid] = requests.post(f"{service.base}/v1/records/{rid}/signatures",
                                         headers=bearer(key),
                                         json={"role": "seal", "key": "school-1-seal"},
                                         timeout=300)
        except requests.RequestException as e:
            results[rid] = e

    t1 = time.monotonic()
    threads = [threading.Thread(target=seal, args=(rid,)) for rid in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=330)
    t_seal = time.monotonic() - t1

    assert len(results) == N
    errors = {rid: r for rid, r in results.items() if isinstance(r, BaseException)}
    assert not errors, errors
    answers = {rid: r for rid, r in results.items() if isinstance(r, requests.Response)}
    bad = [(r.status_code, r.text[:400]) for r in answers.values() if r.status_code != 200]
    assert not bad, (f"{len(bad)} of {N} seals failed; statuses "
                     f"{sorted(Counter(st for st, _ in bad).items())}; first: {bad[0][1]}")
    for rid, r in answers.items():
        body = r.json()
        assert body["id"] == rid
        assert body["status"] == "archived", body
        assert [s["status"] for s in body["signatures"]] == ["signed"] * 3, body
        assert body["signatures"][2]["signer"]["key"] == "school-1-seal", body

    log = service.log_text()
    found = [m for m in BAD_LOG if m in log]
    assert not found, f"{found} in the gunicorn log:\n{log[-6000:]}"

    # Every final PDF validates: TOTAL_PASSED, PAdES-B-LTA, three trusted signatures.
    t2 = time.monotonic()

    def verify(rid: str) -> tuple[str, bytes, str, dict[str, Any]]:
        doc = requests.get(f"{service.base}/v1/records/{rid}/document", headers=bearer(key),
                           timeout=60)
        assert doc.status_code == 200, doc.text
        view = requests.get(f"{service.base}/v1/records/{rid}", headers=bearer(key),
                            timeout=60)
        assert view.status_code == 200, view.text
        verify_url: str = view.json()["archive"]["verify_url"]
        rep = requests.post(f"{service.base}/v1/verify",
                            files={"document": ("x.pdf", doc.content, "application/pdf")},
                            timeout=300)
        assert rep.status_code == 200, rep.text
        report: dict[str, Any] = rep.json()
        return rid, doc.content, verify_url, report

    with ThreadPoolExecutor(WORKERS) as pool:
        reports = list(pool.map(verify, ids))
    for rid, _pdf, verify_url, report in reports:
        assert report["indication"] == "TOTAL_PASSED", (rid, report)
        assert report["level"] == "PAdES-B-LTA", (rid, report)
        assert report["archived"] is not None and report["archived"]["version"] == 1
        # the report names this record's public page (never its id)
        assert report["archived"]["verify_url"] == verify_url and rid not in str(report)
        assert [s["role"] for s in report["signatures"]] == ["teacher", "principal", "seal"]
        assert all(s["intact"] and s["trusted"] for s in report["signatures"]), report
    t_verify = time.monotonic() - t2

    # An outside checker on two of them.
    for rid, pdf, _url, _report in reports[:2]:
        out = tmp_path / f"{rid}.pdf"
        out.write_bytes(pdf)
        res = subprocess.run([PYHANKO, "sign", "adesverify", "--trust",
                              str(test_state / "pki" / "root.pem"), "--trust-replace",
                              str(out)], capture_output=True, text=True, timeout=180)
        assert res.returncode == 0, res.stdout + res.stderr
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("Sig_")]
        assert len(lines) == 3 and all(":INTACT:TRUSTED" in ln for ln in lines), res.stdout
    print(f"prep {t_prep:.1f}s, {N} concurrent seals {t_seal:.1f}s, "
          f"verify {t_verify:.1f}s")
