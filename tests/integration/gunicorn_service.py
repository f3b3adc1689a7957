"""The real service under gunicorn (`gunicorn -c gunicorn.conf.py`), in its own process
group so a test can SIGKILL the master and every worker at once, then start it again over
the same store and index."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import requests

from signer.cli import wait_for_port
from tests.conftest import REPO
from tests.integration.helpers import metadata, pupil_name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """gunicorn with `workers` processes (`threads` > 1: gthread). With `log`, gunicorn's
    stdout and stderr are appended to that file (kept across restarts) for inspection."""

    def __init__(self, env: dict[str, str], port: int, *, workers: int = 2, threads: int = 1,
                 log: Path | None = None) -> None:
        self.env = {**os.environ, **env, "PORT": str(port), "HOCBA_WORKERS": str(workers),
                    "HOCBA_THREADS": str(threads)}
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self) -> None:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        out = None
        if self.log is not None:
            self._close_log()
            self._log_file = out = self.log.open("ab")
        self.proc = subprocess.Popen([gunicorn, "-c", "gunicorn.conf.py",
                                      "signer.http.wsgi:app"], cwd=REPO, env=self.env,
                                     start_new_session=True, stdout=out, stderr=out)
        wait_for_port(self.port, timeout=60)
        self._wait_until_answering(timeout=60)

    def _wait_until_answering(self, timeout: float) -> None:
        """The master listens before its workers boot: wait for a worker's answer, and
        fail with gunicorn's log if the master gave up instead."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited ({self.proc.returncode}):\n"
                                     f"{self.log_text()[-6000:]}")
            try:
                if requests.get(f"{self.base}/healthz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no worker answered in {timeout}s:\n"
                                     f"{self.log_text()[-6000:]}")
            time.sleep(0.1)

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # workers die with the group
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self._close_log()

    def pids(self) -> set[int]:
        """The master and its workers: every live process of this service's process group
        (Linux /proc)."""
        assert self.proc is not None
        found: set[int] = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            if fields[0] != "Z" and int(fields[2]) == self.proc.pid:  # state, pgrp
                found.add(int(stat.parent.name))
        return found

    def holds(self, lease_owner: str | None) -> bool:
        """Whether a job lease owner (`host:pid:suffix`, signer.service.jobs) is one of
        this service's processes."""
        if not lease_owner:
            return False
        parts = lease_owner.split(":")
        return len(parts) >= 3 and parts[-2].isdigit() and int(parts[-2]) in self.pids()

    def log_text(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        if self._log_file is not None:
            self._log_file.flush()
        return self.log.read_text(encoding="utf-8", errors="replace")

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


# -- calling it over HTTP ---------------------------------------------------------------

SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def create_records(svc: Service, key: str, pdf: bytes, n: int, start: int = 0,
                   threads: int = 4) -> list[str]:
    """`n` records of distinct pupils (same sample PDF), created `threads` at a time."""

    def one(i: int) -> str:
        meta = metadata(SAMPLE, student={"id_number": f"0012170{i:05d}",
                                         "full_name": pupil_name(i),
                                         "date_of_birth": "2017-11-20",
                                         "student_code": f"HS-{i}"})
        files: dict[str, Any] = {"document": ("r.pdf", pdf, "application/pdf"),
                                 "metadata": (None, json.dumps(meta, ensure_ascii=False))}
        r = requests.post(f"{svc.base}/v1/records", headers=bearer(key), files=files,
                          timeout=120)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(start, start + n)))


def submit_batch(svc: Service, key: str, role: str, signer: str,
                 record_ids: list[str]) -> str:
    r = requests.post(f"{svc.base}/v1/batches", headers=bearer(key),
                      json={"role": role, "key": signer, "record_ids": record_ids},
                      timeout=60)
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def get_job(svc: Service, key: str, job_id: str) -> dict[str, Any]:
    r = requests.get(f"{svc.base}/v1/jobs/{job_id}", headers=bearer(key), timeout=30)
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


def wait_job(svc: Service, key: str, job_id: str, timeout: float = 300,
             min_done: int | None = None) -> dict[str, Any]:
    """Poll the job until it is finished (with `min_done`: until `done` reaches it); fail
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    job = get_job(svc, key, job_id)
    while time.monotonic() < deadline:
        if min_done is None and job["status"] == "finished":
            return job
        if min_done is not None and int(job["done"]) >= min_done:
            return job
        time.sleep(0.2)
        job = get_job(svc, key, job_id)
    raise AssertionError(f"job {job_id} did not get there in {timeout}s: {job}")


def get_record(svc: Service, key: str, record_id: str) -> dict[str, Any]:
    r = requests.get(f"{svc.base}/v1/records/{record_id}", headers=bearer(key), timeout=30)
    assert r.status_code == 200, r.text
    record: dict[str, Any] = r.json()
    return record


def get_document(svc: Service, key: str, record_id: str) -> bytes:
    r = requests.get(f"{svc.base}/v1/records/{record_id}/document", headers=bearer(key),
                     timeout=60)
    assert r.status_code == 200, r.text
    return r.content


def verify_pdf(svc: Service, pdf: bytes) -> dict[str, Any]:
    """`POST /v1/verify` (no key needed): the validation report."""
    r = requests.post(f"{svc.base}/v1/verify",
                      files={"document": ("x.pdf", pdf, "application/pdf")}, timeout=120)
    assert r.status_code == 200, r.text
    report: dict[str, Any] = r.json()
    return report


def run_audit(svc: Service, admin_key: str, timeout: float = 120) -> dict[str, Any]:
    """A fixity audit through `POST /v1/admin/audits`, polled until finished."""
    r = requests.post(f"{svc.base}/v1/admin/audits", headers=bearer(admin_key), timeout=30)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + timeout
    while True:
        r = requests.get(f"{svc.base}/v1/admin/audits/{job_id}", headers=bearer(admin_key),
                         timeout=30)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] == "finished":
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"audit {job_id} did not finish in {timeout}s: {body}")
        time.sleep(0.2)
