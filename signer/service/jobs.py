"""Batches as jobs: one role signs many records with one key and one authorization;
fixity audits of the whole store; renewals of what is due (signer.service.renewals);
finishing what was started (records signed by every role, not archived).

Progress is persisted per record (`GET /v1/jobs/{id}`). A failure on one record does not
stop the others: any exception while signing one record (a dependency's, or a library's
on a document it cannot read) becomes that record's failure, with a stable code, and the
job goes on. Each worker process runs a job runner thread that claims jobs with a lease;
when a worker dies its job's lease runs out and another worker resumes it, and a record
this batch already signed is counted, never signed twice.

Server-held keys (HSM, dev software keys) run record by record. Remote (CSC) keys sign
the whole batch with ONE authorization: the records are prepared together and their
hashes go to one `credentials/authorize` and one `signatures/signHash`.

The CSC authorization is one-time and short-lived (the provider's SAD expires within
minutes), so it is never persisted and never handed to another worker: the job is bound
to the worker that received it. `submit` creates the job already leased to this process
and starts it at once on a thread of its own (at most `csc_threads` at a time), which
keeps the lease alive while it holds the secret, even while the runner thread is busy
with another job; so no other worker claims it while the holder lives. If the holder
dies, the lease lapses, another worker's runner takes the job over and fails the records
still unsigned at once with `authorization_lost` (send them again with a new
authorization). Waiting for a free runner instead would let the authorization expire.

Finishing: a record whose roles have all signed but that is not archived (the worker
killed between the last signature and the archive, the TSA down, the store refusing)
is finished by the service itself. When idle, each runner looks for such records
unchanged for `finish_grace_seconds` (the last signer's own request may still be
archiving) and queues one `finish` job per tenant (the index decides: one for all
workers), which archives them one by one (`Archiving.finish`), resumable like a batch.
A failure is audited on the record (`record.archiving_failed`: code, attempt, next
attempt) and tried again at a later round, after a backoff that doubles from the grace
period up to `finish_backoff_max_seconds`. Meanwhile the record's view says `archiving`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from archive.errors import ArchiveError
from archive.fixity import FIXITY_AUDIT, create_audit_job, run_audit_job
from archive.index import Index
from archive.index.records import ARCHIVING_FAILED, ToFinish
from archive.index.rows import ARCHIVED, JobRow
from archive.leases import kept_lease
from archive.store import ObjectStore
from archive.times import rfc3339
from signer.clients import Client, Clients
from signer.errors import DependencyError, HocbaError, NotFound, from_archive
from signer.keys.csc import CscKey, parse_authorization
from signer.service.actors import Actor
from signer.service.evidence import EVIDENCE_JOB, Evidence
from signer.service.keysigning import KeySigning
from signer.service.renewals import RENEWAL, Renewals
from signer.service.signing import Target

log = logging.getLogger("hocba.jobs")
BATCH = "batch"
BATCH_CSC = "batch_csc"
FINISH = "finish"
FINISHER = "hocba-finisher"  # actor of the finish jobs hocba queues itself
UNEXPECTED = "signing_failed"  # the code of an exception no layer named


class JobRunner:
    """Claims and runs jobs in a background thread of this process; CSC batches on a
    thread of their own, bound to this process (the module docstring says why)."""

    def __init__(self, index: Index, store: ObjectStore, clients: Clients,
                 key_signing: KeySigning, renewals: Renewals | None = None,
                 evidence: Evidence | None = None, *,
                 lease_seconds: int = 60,
                 poll_seconds: float = 1.0, schedule_seconds: float = 60.0,
                 finish_grace_seconds: float = 30.0,
                 finish_backoff_max_seconds: float = 3600.0,
                 csc_threads: int = 4) -> None:
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
        self.finish_grace_seconds = finish_grace_seconds
        self.finish_backoff_max_seconds = finish_backoff_max_seconds
        self._scheduled = float("-inf")
        self._finish_scanned = float("-inf")
        self._csc_slots = threading.BoundedSemaphore(csc_threads)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    # -- submitting ----------------------------------------------------------------

    def submit(self, actor: Actor, role: str, key_name: str, record_ids: list[str],
               authorization: Any = None) -> JobRow:
        key = self.key_signing.keys.get(key_name, actor.client.schools)
        kind = BATCH_CSC if isinstance(key, CscKey) else BATCH
        params = {"role": role, "key": key_name, "record_ids": record_ids,
                  "actor": actor.name, "client": actor.client.name}
        if kind == BATCH:
            job = self.index.create_job(tenant=actor.client.tenant, kind=kind,
                                        total=len(record_ids), actor=actor.name,
                                        params=params)
            self._kick()
            return job
        parse_authorization(authorization)
        # born leased to this process: no other worker claims it while we hold the secret
        job = self.index.create_job(tenant=actor.client.tenant, kind=kind,
                                    total=len(record_ids), actor=actor.name, params=params,
                                    lease_owner=self.owner,
                                    lease_seconds=self.lease_seconds)
        threading.Thread(target=self._hold_csc, args=(job.id, authorization),
                         name=f"hocba-csc-{job.id[:8]}", daemon=True).start()
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
        """When idle: at most every `schedule_seconds`, queue evidence records for what
        was archived; at most every half grace period, queue the finishing of records
        signed by every role but not archived (one job for all workers: the index
        decides)."""
        now = time.monotonic()
        if self.evidence is not None and now - self._scheduled >= self.schedule_seconds:
            self._scheduled = now
            if self.evidence.schedule() is not None:
                self._wake.set()
        scan_every = min(max(self.finish_grace_seconds / 2, 1.0), self.schedule_seconds)
        if now - self._finish_scanned >= scan_every:
            self._finish_scanned = now
            if self.schedule_finishing():
                self._wake.set()

    def _claim(self) -> JobRow | None:
        return self.index.claim_job(self.owner, self.lease_seconds,
                                    kinds=(BATCH, BATCH_CSC, FIXITY_AUDIT, FINISH)
                                    + ((RENEWAL,) if self.renewals else ())
                                    + ((EVIDENCE_JOB,) if self.evidence else ()))

    def run(self, job: JobRow) -> None:
        """Run a claimed job to its end (or until another worker took it over). A CSC
        batch claimed here is one whose holder died: its authorization is lost."""
        if job.kind == FIXITY_AUDIT:
            run_audit_job(self.store, self.index, job, owner=self.owner,
                          lease_seconds=self.lease_seconds)
            return
        with kept_lease(self.index, job.id, self.owner, self.lease_seconds) as lost:
            self._run_leased(job, lost.is_set)

    def _run_leased(self, job: JobRow, lost: Callable[[], bool],
                    authorization: Any = None) -> None:
        if job.kind == RENEWAL and self.renewals is not None:
            self.renewals.run_job(job, lost)
        elif job.kind == EVIDENCE_JOB and self.evidence is not None:
            self.evidence.run_job(job, lost)
        elif job.kind == FINISH:
            self._run_finish(job, lost)
        else:
            self._run_batch(job, lost, authorization)
        if not lost():
            self.index.finish_job(job.id)

    def _run_batch(self, job: JobRow, lost: Callable[[], bool], authorization: Any) -> None:
        ids: list[str] = job.params["record_ids"][job.done:]
        try:
            actor = self._actor(job.params)
        except HocbaError as e:  # the client was removed: nobody can sign for it now
            for rid in ids:
                self._done(job, rid, e)
            return
        if job.kind == BATCH_CSC:
            self._run_csc(job, actor, ids, authorization)
            return
        for rid in ids:
            if lost():
                log.warning("job %s was taken over; stopping here", job.id)
                return
            self._one(job, actor, rid)

    def _hold_csc(self, job_id: str, authorization: Any) -> None:
        """A CSC batch on its own thread: the lease is kept from now (also while waiting
        for a slot), the authorization lives only in this frame."""
        try:
            with kept_lease(self.index, job_id, self.owner, self.lease_seconds) as lost, \
                    self._csc_slots:
                job = self.index.get_job(job_id)
                if job is None or lost.is_set():
                    return
                self._run_leased(job, lost.is_set, authorization)
        except Exception:  # the lease lapses; another worker fails the rest fast
            log.exception("CSC batch %s stopped", job_id)
        finally:
            del authorization

    def _actor(self, params: dict[str, Any]) -> Actor:
        clients = self.clients.by_key_hash.values()
        client = next((c for c in clients if c.name == params["client"]), None)
        if client is None:
            raise NotFound(f"client {params['client']} no longer exists",
                           code="client_not_found")
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
        except Exception as e:
            error = _problem(e, job, rid)
            if self._signed_anyway(rid, params["role"], params["key"], error):
                self._done(job, rid)  # the signature landed; archiving is finished later
            else:
                self._done(job, rid, error)
            return
        self._done(job, rid)

    def _signed_anyway(self, rid: str, role: str, key: str, error: HocbaError) -> bool:
        """The role's signature landed although the step failed after it (archiving)."""
        if error.status < 500:
            return False
        try:
            return self._already_done(rid, role, key)
        except ArchiveError:
            return False

    def _run_csc(self, job: JobRow, actor: Actor, ids: list[str], authorization: Any) -> None:
        """Every record of the batch through one signing step, one authorization."""
        params = job.params
        pending = [rid for rid in ids if not self._already_done(rid, params["role"],
                                                                params["key"])]
        waiting = set(pending)
        for rid in ids:
            if rid not in waiting:
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
        del authorization  # the producer uses it once
        targets: list[Target] = []
        for rid in pending:
            try:
                target = step.target(actor.client, rid, params["role"])
                step.check_signer(target, producer.key.certificate, producer.key.chain,
                                  key=producer.key)
            except Exception as e:
                self._done(job, rid, _problem(e, job, rid))
                continue
            targets.append(target)
        if not targets:
            return
        try:
            outcomes: list[Any] = step.sign(actor, targets, producer)
        except Exception as e:  # the step itself broke: each target as the index has it
            error = _problem(e, job, targets[0].row.id)
            outcomes = [error] * len(targets)
        for target, outcome in zip(targets, outcomes, strict=True):
            rid = target.row.id
            if isinstance(outcome, HocbaError) and not self._signed_anyway(
                    rid, params["role"], params["key"], outcome):
                self._done(job, rid, outcome)
            else:
                self._done(job, rid)

    # -- finishing what was started ------------------------------------------------

    def backoff(self, attempts: int) -> timedelta:
        """How long after its `attempts`-th failure a record's archiving is tried again."""
        seconds = self.finish_grace_seconds * 2 ** min(max(attempts - 1, 0), 30)
        return timedelta(seconds=min(seconds, self.finish_backoff_max_seconds))

    def due_to_finish(self, now: datetime | None = None) -> list[ToFinish]:
        """Records signed by every role, not archived, unchanged for the grace period,
        and past their backoff."""
        moment = now or datetime.now(UTC)
        policies = self.key_signing.step.policies
        last_roles = {record_type: policy.roles[-1].name
                      for record_type, policy in policies.items() if policy.roles}
        found = self.index.records_to_finish(
            last_roles, moment - timedelta(seconds=self.finish_grace_seconds))
        return [f for f in found if f.last_attempt_at is None
                or f.last_attempt_at + self.backoff(f.attempts) <= moment]

    def schedule_finishing(self, now: datetime | None = None) -> list[JobRow]:
        """Queue one finish job per tenant with records due (unless that tenant has one
        queued or running): what the runner calls when idle."""
        by_tenant: dict[str, list[str]] = defaultdict(list)
        for item in self.due_to_finish(now):
            by_tenant[item.row.tenant].append(item.row.id)
        queued = []
        for tenant, ids in sorted(by_tenant.items()):
            job = self.index.create_job_unless_active(
                tenant=tenant, kind=FINISH, total=len(ids), actor=FINISHER,
                params={"record_ids": ids, "actor": FINISHER}, per_tenant=True)
            if job is not None:
                log.info("queued finish job %s: %d record(s) of %s signed, not archived",
                         job.id, len(ids), tenant)
                queued.append(job)
        return queued

    def _run_finish(self, job: JobRow, lost: Callable[[], bool]) -> None:
        for rid in job.params["record_ids"][job.done:]:
            if lost():
                log.warning("job %s was taken over; stopping here", job.id)
                return
            self._finish_one(job, rid)

    def _finish_one(self, job: JobRow, rid: str) -> None:
        row = self.index.get_record(rid)
        if row is None or row.status == ARCHIVED or row.superseded_by:
            self._done(job, rid)  # archived meanwhile (the last signer's retry), or closed
            return
        actor = Actor(FINISHER, Client(FINISHER, row.tenant, frozenset(),
                                       frozenset({row.school_code})))
        try:
            self.key_signing.step.archiving.finish(actor, row)
        except Exception as e:
            now = self.index.get_record(rid)
            if now is not None and now.status == ARCHIVED:  # another worker won the race
                self._done(job, rid)
                return
            error = _problem(e, job, rid)
            attempt = self.index.archiving_attempts(rid).attempts + 1
            retry_at = datetime.now(UTC) + self.backoff(attempt)
            self.index.append_audit(FINISHER, row.tenant, ARCHIVING_FAILED, rid,
                                    {"code": error.code, "attempt": attempt,
                                     "next_attempt_at": rfc3339(retry_at),
                                     "job_id": job.id})
            log.warning("archiving record %s failed (attempt %d, %s); next try after %s",
                        rid, attempt, error.code, rfc3339(retry_at))
            self._done(job, rid, error)
            return
        self._done(job, rid)


def _problem(e: BaseException, job: JobRow, rid: str) -> HocbaError:
    """One record's failure as a problem with a stable code; an exception no layer named
    (a library meeting a document it cannot read, a bug) is logged once, with its
    traceback, as `signing_failed` (`archiving_failed` in a finish job)."""
    if isinstance(e, HocbaError):
        return e
    if isinstance(e, ArchiveError):
        return from_archive(e, default_code="index_error")
    log.error("job %s: record %s failed unexpectedly", job.id, rid, exc_info=e)
    if job.kind == FINISH:
        return DependencyError(f"archiving failed: {type(e).__name__}",
                               code="archiving_failed")
    return DependencyError(f"signing failed: {type(e).__name__}", code=UNEXPECTED)
