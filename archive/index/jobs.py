"""Jobs: queued, claimed under a lease, counted item by item, finished."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from archive.errors import ArchiveError
from archive.index import schema as t
from archive.index.audit import AuditMixin
from archive.index.chain import canonical_json
from archive.index.rows import JOB_FINISHED, JOB_QUEUED, JOB_RUNNING, JobRow

JOBS_LOCK_KEY = 0x686F6A62  # PostgreSQL advisory lock: scheduling a job kind once


def _job(row: sa.Row[Any]) -> JobRow:
    return JobRow(**row._mapping)


def _job_detail(job: JobRow) -> dict[str, Any]:
    return {"job_id": job.id, "kind": job.kind, "total": job.total, "done": job.done}


class JobsMixin(AuditMixin):
    def create_job(
        self,
        *,
        tenant: str,
        kind: str,
        total: int,
        params: Mapping[str, Any],
        actor: str,
        job_id: str | None = None,
        lease_owner: str | None = None,
        lease_seconds: int = 0,
    ) -> JobRow:
        """A queued job of `total` items; `params` is what a worker needs to run it.
        With `lease_owner`, the job is born leased to that worker for `lease_seconds`:
        no other worker claims it while the owner renews the lease (`renew_job_lease`)."""
        if total < 0:
            raise ValueError("a job's total cannot be negative")
        if lease_owner is not None and lease_seconds <= 0:
            raise ValueError("a leased job needs a positive lease_seconds")
        with self._write() as conn:
            return self._insert_job(conn, tenant, kind, total, params, actor,
                                    job_id or str(uuid.uuid4()), lease_owner, lease_seconds)

    def create_job_unless_active(self, *, tenant: str, kind: str, total: int,
                                 params: Mapping[str, Any], actor: str,
                                 per_tenant: bool = False) -> JobRow | None:
        """`create_job`, unless a job of `kind` (with `per_tenant`: of `kind` and
        `tenant`) is queued or running (None then): of several workers scheduling the
        same work at once, one queues it."""
        if total < 0:
            raise ValueError("a job's total cannot be negative")
        with self._write() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(JOBS_LOCK_KEY)))
            active_query = sa.select(sa.func.count()).select_from(t.jobs).where(
                t.jobs.c.kind == kind, t.jobs.c.status.in_([JOB_QUEUED, JOB_RUNNING]))
            if per_tenant:
                active_query = active_query.where(t.jobs.c.tenant == tenant)
            if conn.scalar(active_query):
                return None
            return self._insert_job(conn, tenant, kind, total, params, actor,
                                    str(uuid.uuid4()))

    def _insert_job(self, conn: Connection, tenant: str, kind: str, total: int,
                    params: Mapping[str, Any], actor: str, job_id: str,
                    lease_owner: str | None = None, lease_seconds: int = 0) -> JobRow:
        now = self._now()
        lease_until = (now + timedelta(seconds=lease_seconds)
                       if lease_owner is not None else None)
        conn.execute(
            t.jobs.insert().values(
                id=job_id,
                tenant=tenant,
                kind=kind,
                status=JOB_QUEUED,
                total=total,
                done=0,
                failed_json="[]",
                params_json=canonical_json(params),
                created_at=now,
                updated_at=now,
                finished_at=None,
                lease_owner=lease_owner,
                lease_until=lease_until,
            )
        )
        job = self._must_get_job(conn, job_id)
        self._append_audit(conn, actor, tenant, "job.created", None, _job_detail(job), now)
        return job

    def get_job(self, job_id: str) -> JobRow | None:
        with self._read() as conn:
            return self._get_job(conn, job_id)

    def update_job_progress(
        self,
        job_id: str,
        done_delta: int,
        failed_item: Mapping[str, Any] | None = None,
        *,
        actor: str = "system",
    ) -> JobRow:
        """Count `done_delta` more items handled; `failed_item` (counted in the delta)
        describes one that failed. A queued job becomes running. Audited: the start and
        each failure, not plain progress (the items' own changes are audited already)."""
        if done_delta < 0:
            raise ValueError("done_delta cannot be negative")
        if failed_item is not None and done_delta < 1:
            raise ValueError("a failed item is an item done: done_delta must count it")
        now = self._now()
        with self._write() as conn:
            job = self._lock_unfinished_job(conn, job_id)
            if job.done + done_delta > job.total:
                raise ArchiveError(
                    f"job {job_id} would have {job.done + done_delta} of {job.total} items done",
                    code="job_progress_overflow",
                )
            failed = job.failed
            if failed_item is not None:
                failed.append(json.loads(canonical_json(failed_item)))
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.id == job_id)
                .values(
                    status=JOB_RUNNING,
                    done=t.jobs.c.done + done_delta,
                    failed_json=canonical_json(failed),
                    updated_at=now,
                )
            )
            updated = self._must_get_job(conn, job_id)
            if job.status == JOB_QUEUED:
                self._append_audit(
                    conn, actor, job.tenant, "job.started", None, _job_detail(updated), now
                )
            if failed_item is not None:
                detail = {"job_id": job_id, "item": failed[-1]}
                self._append_audit(conn, actor, job.tenant, "job.item_failed", None, detail, now)
            return updated

    def finish_job(self, job_id: str, *, actor: str = "system") -> JobRow:
        now = self._now()
        with self._write() as conn:
            job = self._lock_unfinished_job(conn, job_id)
            conn.execute(
                t.jobs.update()
                .where(t.jobs.c.id == job_id)
                .values(status=JOB_FINISHED, updated_at=now, finished_at=now)
            )
            finished = self._must_get_job(conn, job_id)
            detail = {**_job_detail(finished), "failed": len(finished.failed)}
            self._append_audit(conn, actor, job.tenant, "job.finished", None, detail, now)
            return finished

    def claim_job(self, owner: str, lease_seconds: int, *,
                  kinds: tuple[str, ...] | None = None,
                  job_id: str | None = None) -> JobRow | None:
        """Take the oldest job that is queued or running and not leased (or whose lease
        ran out: its worker died), for `owner`. A job born leased (`create_job` with
        `lease_owner`) waits for its owner. Two workers never hold the same job at once."""
        now = self._now()
        until = now + timedelta(seconds=lease_seconds)
        with self._write() as conn:
            query = (sa.select(t.jobs.c.id)
                     .where(t.jobs.c.status.in_([JOB_QUEUED, JOB_RUNNING]),
                            sa.or_(t.jobs.c.lease_until.is_(None),
                                   t.jobs.c.lease_until < now))
                     .order_by(t.jobs.c.created_at, t.jobs.c.id).limit(1))
            if kinds is not None:
                query = query.where(t.jobs.c.kind.in_(kinds))
            if job_id is not None:
                query = query.where(t.jobs.c.id == job_id)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            found = conn.execute(query).scalar()
            if found is None:
                return None
            conn.execute(t.jobs.update().where(t.jobs.c.id == found).values(
                status=JOB_RUNNING, lease_owner=owner, lease_until=until, updated_at=now))
            return self._must_get_job(conn, found)

    def renew_job_lease(self, job_id: str, owner: str, lease_seconds: int) -> bool:
        """Extend the lease (of a running job, or a queued one born leased); False when
        another worker took the job over or it is finished."""
        now = self._now()
        with self._write() as conn:
            result = conn.execute(
                t.jobs.update()
                .where(t.jobs.c.id == job_id, t.jobs.c.lease_owner == owner,
                       t.jobs.c.status.in_([JOB_QUEUED, JOB_RUNNING]))
                .values(lease_until=now + timedelta(seconds=lease_seconds)))
            return bool(result.rowcount)

    def list_unfinished_jobs(self, tenant: str | None = None) -> list[JobRow]:
        """Queued and running jobs, oldest first: what a restarted worker resumes."""
        query = sa.select(t.jobs).where(t.jobs.c.status != JOB_FINISHED)
        if tenant is not None:
            query = query.where(t.jobs.c.tenant == tenant)
        query = query.order_by(t.jobs.c.created_at, t.jobs.c.id)
        with self._read() as conn:
            return [_job(row) for row in conn.execute(query)]

    def _get_job(self, conn: Connection, job_id: str) -> JobRow | None:
        row = conn.execute(sa.select(t.jobs).where(t.jobs.c.id == job_id)).first()
        return _job(row) if row else None

    def _must_get_job(self, conn: Connection, job_id: str) -> JobRow:
        job = self._get_job(conn, job_id)
        assert job is not None
        return job

    def _lock_unfinished_job(self, conn: Connection, job_id: str) -> JobRow:
        """The job's row, locked until commit (SQLite: the write transaction holds it)."""
        row = conn.execute(sa.select(t.jobs).where(t.jobs.c.id == job_id).with_for_update()).first()
        if row is None:
            raise ArchiveError(f"job {job_id} does not exist", code="job_not_found")
        job = _job(row)
        if job.status == JOB_FINISHED:
            raise ArchiveError(f"job {job_id} is already finished", code="job_finished")
        return job
