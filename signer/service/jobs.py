"""Batches as jobs: one role signs many records with one key and one authorization;
fixity audits of the whole store; renewals of what is due (signer.service.renewals).

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

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from archive.errors import ArchiveError
from archive.fixity import FIXITY_AUDIT, create_audit_job, run_audit_job
from archive.index import Index
from archive.index.rows import JobRow
from archive.leases import kept_lease
from archive.store import ObjectStore
from signer.clients import Clients
from signer.errors import HocbaError, NotFound, from_archive
from signer.keys.csc import CscKey, parse_authorization
from signer.service.actors import Actor
from signer.service.evidence import EVIDENCE_JOB, Evidence
from signer.service.keysigning import KeySigning
from signer.service.renewals import RENEWAL, Renewals
from signer.service.signing import Target

log = logging.getLogger("hocba.jobs")
BATCH = "batch"
BATCH_CSC = "batch_csc"


class JobRunner:
    """Claims and runs jobs in a background thread of this process."""

    def __init__(self, index: Index, store: ObjectStore, clients: Clients,
                 key_signing: KeySigning, renewals: Renewals | None = None,
                 evidence: Evidence | None = None, *,
                 lease_seconds: int = 60,
                 poll_seconds: float = 1.0, schedule_seconds: float = 60.0) -> None:
        self.index = index
        self.store = store
        self.clients = clients
        self.key_signing = key_signing
        self.renewals = renewals
        self.evidence = evidence
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.schedule_seconds = schedule_seconds
        self._scheduled = float("-inf")
        self._secrets: dict[str, Any] = {}  # job id -> one-time authorization (memory only)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    # -- submitting ----------------------------------------------------------------

    def submit(self, actor: Actor, role: str, key_name: str, record_ids: list[str],
               authorization: Any = None) -> JobRow:
        key = self.key_signing.keys.get(key_name, actor.client.schools)
        kind = BATCH_CSC if isinstance(key, CscKey) else BATCH
        if kind == BATCH_CSC:
            parse_authorization(authorization)
        job = self.index.create_job(
            tenant=actor.client.tenant, kind=kind, total=len(record_ids), actor=actor.name,
            params={"role": role, "key": key_name, "record_ids": record_ids,
                    "actor": actor.name, "client": actor.client.name})
        if kind == BATCH_CSC:
            with self._lock:
                self._secrets[job.id] = authorization
        self._kick()
        return job

    def submit_audit(self, actor: Actor) -> JobRow:
        job = create_audit_job(self.index, tenant=actor.client.tenant, actor=actor.name)
        self._kick()
        return job

    def submit_renewal(self, actor: Actor) -> JobRow:
        if self.renewals is None:
            raise NotFound("renewal is not available in this process", code="job_not_found")
        job = self.renewals.submit(actor.client.tenant, actor.name)
        self._kick()
        return job

    def submit_evidence(self, actor: Actor, *, renew: bool, everything: bool) -> JobRow:
        if self.evidence is None:
            raise NotFound("evidence records are not available in this process",
                           code="job_not_found")
        job = self.evidence.submit(actor.client.tenant, actor.name, renew=renew,
                                   everything=everything)
        self._kick()
        return job

    def get(self, actor: Actor, job_id: str) -> JobRow:
        job = self.index.get_job(job_id)
        if job is None or job.tenant != actor.client.tenant:
            raise NotFound(f"no job {job_id}", code="job_not_found")
        return job

    # -- running -------------------------------------------------------------------

    def _kick(self) -> None:
        self.ensure_started()
        self._wake.set()

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
                    self._schedule()
                    self._wake.wait(self.poll_seconds)
                    self._wake.clear()
                    continue
                self.run(job)
            except Exception:  # a runner must survive anything and retry later
                log.exception("job runner error")
                self._stop.wait(self.poll_seconds)

    def _schedule(self) -> None:
        """When idle, at most every `schedule_seconds`: queue evidence records for what
        was archived (one job for all workers: the index decides)."""
        now = time.monotonic()
        if self.evidence is None or now - self._scheduled < self.schedule_seconds:
            return
        self._scheduled = now
        if self.evidence.schedule() is not None:
            self._wake.set()

    def _claim(self) -> JobRow | None:
        with self._lock:
            mine = list(self._secrets)
        for job_id in mine:  # CSC jobs whose authorization this process holds first
            job = self.index.claim_job(self.owner, self.lease_seconds, job_id=job_id)
            if job is not None:
                return job
        return self.index.claim_job(self.owner, self.lease_seconds,
                                    kinds=(BATCH, BATCH_CSC, FIXITY_AUDIT)
                                    + ((RENEWAL,) if self.renewals else ())
                                    + ((EVIDENCE_JOB,) if self.evidence else ()))

    def run(self, job: JobRow) -> None:
        if job.kind == FIXITY_AUDIT:
            run_audit_job(self.store, self.index, job, owner=self.owner,
                          lease_seconds=self.lease_seconds)
            return
        with kept_lease(self.index, job.id, self.owner, self.lease_seconds) as lost:
            if job.kind == RENEWAL and self.renewals is not None:
                self.renewals.run_job(job, lost.is_set)
                if not lost.is_set():
                    self.index.finish_job(job.id)
                return
            if job.kind == EVIDENCE_JOB and self.evidence is not None:
                self.evidence.run_job(job, lost.is_set)
                if not lost.is_set():
                    self.index.finish_job(job.id)
                return
            actor = self._actor(job.params)
            ids: list[str] = job.params["record_ids"][job.done:]
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
            self.index.finish_job(job.id)

    def _actor(self, params: dict[str, Any]) -> Actor:
        clients = self.clients.by_key_hash.values()
        client = next((c for c in clients if c.name == params["client"]), None)
        if client is None:
            raise NotFound(f"client {params['client']} no longer exists")
        return Actor(params["actor"], client)

    def _already_done(self, rid: str, role: str, key: str) -> bool:
        return any(s.role == role and s.signer_key == key
                   for s in self.index.list_signatures(rid))

    def _done(self, job: JobRow, rid: str, error: HocbaError | None = None) -> None:
        failure = None if error is None else {"record_id": rid, "code": error.code,
                                              "detail": error.detail}
        self.index.update_job_progress(job.id, 1, failure)

    def _one(self, job: JobRow, actor: Actor, rid: str) -> None:
        params = job.params
        if self._already_done(rid, params["role"], params["key"]):
            self._done(job, rid)  # signed before a restart
            return
        try:
            self.key_signing.sign(actor, rid, params["role"], params["key"])
        except (HocbaError, ArchiveError) as e:
            self._done(job, rid, _problem(e))
            return
        self._done(job, rid)

    def _run_csc(self, job: JobRow, actor: Actor, ids: list[str], authorization: Any) -> None:
        """Every record of the batch through one signing step, one authorization."""
        params = job.params
        pending = [rid for rid in ids if not self._already_done(rid, params["role"],
                                                                params["key"])]
        for rid in set(ids) - set(pending):
            self._done(job, rid)
        if authorization is None:
            lost = HocbaError("the worker holding the one-time authorization stopped; "
                              "send these records again with a new authorization",
                              code="authorization_lost")
            for rid in pending:
                self._done(job, rid, lost)
            return
        step = self.key_signing.step
        producer = self.key_signing.producer(actor, params["key"], authorization)
        targets: list[Target] = []
        for rid in pending:
            try:
                target = step.target(actor.client, rid, params["role"])
                step.check_signer(target, producer.key.certificate, producer.key.chain,
                                  key=producer.key)
            except (HocbaError, ArchiveError) as e:
                self._done(job, rid, _problem(e))
                continue
            targets.append(target)
        if not targets:
            return
        for target, outcome in zip(targets, step.sign(actor, targets, producer), strict=True):
            self._done(job, target.row.id, outcome if isinstance(outcome, HocbaError)
                       else None)


def _problem(e: HocbaError | ArchiveError) -> HocbaError:
    return e if isinstance(e, HocbaError) else from_archive(e, default_code="index_error")
