"""Batches as jobs: one role signs many records with one key and one authorization.

Progress is persisted per record (`GET /v1/jobs/{id}`). A failure on one record does not
stop the others. Each worker process runs a job runner thread that claims jobs with a
lease; when a worker dies its job's lease runs out and another worker resumes it, and a
record this batch already signed is counted, never signed twice.

Server-held keys (HSM, dev software keys) run record by record. Remote (CSC) keys sign
the whole batch with ONE authorization: the records are prepared together and their
hashes go to one `credentials/authorize` and one `signatures/signHash`. The one-time
authorization lives only in the memory of the process that received it; if that process
dies, the remaining records fail with `authorization_lost` (send them again).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from archive.errors import ArchiveError
from archive.fixity import FIXITY_AUDIT, create_audit_job, run_audit_job
from archive.index.rows import JOB_FINISHED, JobRow, RecordRow
from signer.aio import run
from signer.errors import HocbaError, InvalidInput, NotFound
from signer.keys import KeyBackend
from signer.keys.csc import CscKey, parse_authorization
from signer.pades.sign import RoleSigning, sign_role
from signer.sessions import _record_ids
from signer.workflow import Actor, Hocba

log = logging.getLogger("hocba.jobs")
BATCH = "batch"
BATCH_CSC = "batch_csc"


@dataclass(frozen=True)
class BatchRequest:
    role: str
    key: str
    record_ids: list[str]


def job_view(job: JobRow) -> dict[str, Any]:
    failed = job.failed
    return {"job_id": job.id, "kind": job.kind, "status": job.status, "total": job.total,
            "done": job.done - len(failed), "failed": failed,
            "created_at": job.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "finished_at": job.finished_at.strftime("%Y-%m-%dT%H:%M:%SZ")
            if job.finished_at else None}


class JobRunner:
    """Claims and runs batch jobs in a background thread of this process."""

    def __init__(self, hocba: Hocba, *, lease_seconds: int = 60, poll_seconds: float = 1.0):
        self.hocba = hocba
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self._secrets: dict[str, Any] = {}  # job id -> one-time authorization (memory only)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    # -- submitting ----------------------------------------------------------------

    def submit(self, actor: Actor, body: dict[str, Any]) -> JobRow:
        role, key_name = body.get("role"), body.get("key")
        if not isinstance(role, str) or not role or not isinstance(key_name, str) or not key_name:
            raise InvalidInput("role and key are required", code="body_invalid")
        ids = _record_ids(body.get("record_ids"))
        key = self.hocba.keys.get(key_name, actor.client.schools)
        kind = BATCH_CSC if isinstance(key, CscKey) else BATCH
        authorization = body.get("authorization")
        if kind == BATCH_CSC:
            parse_authorization(authorization)
        job = self.hocba.index.create_job(
            tenant=actor.client.tenant, kind=kind, total=len(ids), actor=actor.name,
            params={"role": role, "key": key_name, "record_ids": ids, "actor": actor.name,
                    "client": actor.client.name})
        if kind == BATCH_CSC:
            with self._lock:
                self._secrets[job.id] = authorization
        self.ensure_started()
        self._wake.set()
        return job

    # -- running -------------------------------------------------------------------

    def ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="hocba-jobs",
                                                daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._claim()
                if job is None:
                    self._wake.wait(self.poll_seconds)
                    self._wake.clear()
                    continue
                self.run(job)
            except Exception:  # a runner must survive anything and retry later
                log.exception("job runner error")
                self._stop.wait(self.poll_seconds)

    def _claim(self) -> JobRow | None:
        with self._lock:
            mine = list(self._secrets)
        for job_id in mine:  # CSC jobs whose authorization this process holds first
            job = self.hocba.index.claim_job(self.owner, self.lease_seconds, job_id=job_id)
            if job is not None:
                return job
        return self.hocba.index.claim_job(self.owner, self.lease_seconds,
                                          kinds=(BATCH, BATCH_CSC, FIXITY_AUDIT))

    def run(self, job: JobRow) -> None:
        if job.kind == FIXITY_AUDIT:
            self._run_audit(job)
            return
        with self._heartbeat(job) as lost:
            params = job.params
            actor = self._actor(params)
            ids: list[str] = params["record_ids"][job.done:]
            if job.kind == BATCH_CSC:
                with self._lock:
                    authorization = self._secrets.pop(job.id, None)
                self._run_csc(job, actor, ids, authorization)
            else:
                for rid in ids:
                    if lost.is_set():
                        log.warning("job %s was taken over; stopping here", job.id)
                        return
                    self._one(job, actor, rid)
            self.hocba.index.finish_job(job.id)

    @contextmanager
    def _heartbeat(self, job: JobRow) -> Iterator[threading.Event]:
        """Renew the job's lease while it runs (a slow record must not let another worker
        take the job over); `lost` is set when the lease could not be renewed."""
        lost, done = threading.Event(), threading.Event()

        def beat() -> None:
            while not done.wait(max(self.lease_seconds / 3, 0.2)):
                try:
                    if not self.hocba.index.renew_job_lease(job.id, self.owner,
                                                            self.lease_seconds):
                        lost.set()
                        return
                except ArchiveError:
                    log.warning("could not renew the lease of job %s", job.id)

        thread = threading.Thread(target=beat, name=f"hocba-lease-{job.id[:8]}", daemon=True)
        thread.start()
        try:
            yield lost
        finally:
            done.set()
            thread.join()

    def _actor(self, params: dict[str, Any]) -> Actor:
        clients = self.hocba.clients.by_key_hash.values()
        client = next((c for c in clients if c.name == params["client"]), None)
        if client is None:
            raise NotFound(f"client {params['client']} no longer exists")
        return Actor(params["actor"], client)

    def _already_done(self, rid: str, role: str, key: str) -> bool:
        return any(s.role == role and s.signer_key == key
                   for s in self.hocba.index.list_signatures(rid))

    def _fail(self, job: JobRow, rid: str, code: str, detail: str) -> None:
        self.hocba.index.update_job_progress(
            job.id, 1, {"record_id": rid, "code": code, "detail": detail})

    def _one(self, job: JobRow, actor: Actor, rid: str) -> None:
        params = job.params
        if self._already_done(rid, params["role"], params["key"]):
            self.hocba.index.update_job_progress(job.id, 1)  # signed before a restart
            return
        try:
            self.hocba.sign_with_key(actor, rid, params["role"], params["key"])
        except (HocbaError, ArchiveError) as e:
            self._fail(job, rid, e.code, getattr(e, "detail", str(e)))
            return
        self.hocba.index.update_job_progress(job.id, 1)

    # -- fixity audits (archive.fixity): the whole store, for an operator --------------

    def submit_audit(self, actor: Actor) -> JobRow:
        job = create_audit_job(self.hocba.index, tenant=actor.client.tenant, actor=actor.name)
        self.ensure_started()
        self._wake.set()
        return job

    def _run_audit(self, job: JobRow) -> None:
        run_audit_job(self.hocba.store, self.hocba.index, job, owner=self.owner,
                      lease_seconds=self.lease_seconds)

    # -- one authorization for a whole CSC batch -------------------------------------

    def _run_csc(self, job: JobRow, actor: Actor, ids: list[str], authorization: Any) -> None:
        params = job.params
        h = self.hocba
        if authorization is None:
            for rid in ids:
                if self._already_done(rid, params["role"], params["key"]):
                    h.index.update_job_progress(job.id, 1)
                else:
                    self._fail(job, rid, "authorization_lost",
                               "the worker holding the one-time authorization stopped; "
                               "send these records again with a new authorization")
            return
        key = h.keys.get(params["key"], actor.client.schools)
        ready: list[tuple[RecordRow, Any, Any, bytes]] = []
        for rid in ids:
            try:
                row = h.record_row(actor.client, rid)
                policy, role = h.next_role_check(row, params["role"])
                h.check_key_for(key, role, row)
                ready.append((row, policy, role, h.document(row)))
            except (HocbaError, ArchiveError) as e:
                self._fail(job, rid, e.code, getattr(e, "detail", str(e)))
        if not ready:
            return
        results = run(self._sign_all(key, ready, authorization))
        for (row, policy, role, _pdf), result in zip(ready, results, strict=True):
            if isinstance(result, BaseException):
                code = getattr(result, "code", "signing_failed")
                self._fail(job, row.id, code, getattr(result, "detail", str(result)))
                continue
            try:
                h.commit_signature(actor, row, policy, role, result, key.certificate,
                                   params["key"])
            except (HocbaError, ArchiveError) as e:
                self._fail(job, row.id, e.code, getattr(e, "detail", str(e)))
                continue
            h.index.update_job_progress(job.id, 1)

    async def _sign_all(self, key: KeyBackend, ready: list[tuple[RecordRow, Any, Any, bytes]],
                        authorization: Any) -> list[bytes | BaseException]:
        assert isinstance(key, CscKey)
        signer = key.signer_for(authorization, batch_size=len(ready))
        services = self.hocba.services

        async def one(row: RecordRow, policy: Any, role: Any, pdf: bytes) -> bytes:
            with signer.slot():
                job = RoleSigning(policy, role, row.school_name,
                                  role.name == policy.roles[0].name)
                return await sign_role(pdf, signer, job, services)

        try:
            return list(await asyncio.gather(*(one(*item) for item in ready),
                                             return_exceptions=True))
        finally:
            await signer.aclose()


def get_job_for(hocba: Hocba, actor: Actor, job_id: str) -> JobRow:
    job = hocba.index.get_job(job_id)
    if job is None or job.tenant != actor.client.tenant:
        raise NotFound(f"no job {job_id}", code="job_not_found")
    return job


__all__ = ["BATCH", "BATCH_CSC", "JOB_FINISHED", "JobRunner", "get_job_for", "job_view"]
