"""Fixity audits of the whole store, for operators: queued as jobs, their reports read
back from the audit log (`fixity.audit`), where they stay."""

from __future__ import annotations

from typing import Any

from archive.fixity import AUDIT_ACTION, FIXITY_AUDIT, find_audit_result
from archive.index import Index
from archive.index.rows import JOB_FINISHED
from signer.errors import NotFound
from signer.service.views import job_view


class Audits:
    def __init__(self, index: Index) -> None:
        self.index = index

    def status(self, job_id: str) -> dict[str, Any]:
        """An audit's progress and, once finished, its report or why it failed. An audit
        covers every tenant's objects, so any operator may follow it."""
        job = self.index.get_job(job_id)
        if job is None or job.kind != FIXITY_AUDIT:
            raise NotFound(f"no audit {job_id}", code="audit_not_found")
        view = job_view(job)
        view.pop("failed", None)
        body: dict[str, Any] = {**view, "report": None, "error": None, "audit_seq": None}
        row = find_audit_result(self.index, job) if job.status == JOB_FINISHED else None
        if row is not None:
            detail = row.detail
            detail.pop("job_id", None)
            body["audit_seq"] = row.seq
            if row.action == AUDIT_ACTION:
                body["report"] = detail
            else:
                body["error"] = {"code": detail.get("code"), "detail": detail.get("detail")}
        return body
