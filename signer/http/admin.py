"""Operators: fixity audits and other archive jobs.

`POST /v1/admin/audits` queues a fixity audit of the whole store (a `fixity_audit` job run
by the job runner thread); `GET /v1/admin/audits/{job_id}` gives its progress and, once
finished, its report, read back from the audit log (`fixity.audit`), where it stays.
An audit covers every tenant's objects, so any `archive:admin` key may follow it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from archive.fixity import AUDIT_ACTION, FIXITY_AUDIT, find_audit_result
from signer.errors import NotFound
from signer.http.auth import client, require, service
from signer.http.idempotency import idempotent, request_hash
from signer.http.jobs import runner
from signer.jobs import job_view
from signer.workflow import Actor

bp = Blueprint("admin", __name__)


@bp.post("/v1/admin/audits")
@require("archive:admin")
def start_audit() -> Response:
    def produce() -> tuple[dict[str, Any], int]:
        job = runner().submit_audit(Actor.of(client()))
        return {"job_id": job.id, "status": job.status, "total": job.total}, 202

    return idempotent(request_hash(), produce)


@bp.get("/v1/admin/audits/<job_id>")
@require("archive:admin")
def get_audit(job_id: str) -> dict[str, Any]:
    index = service().index
    job = index.get_job(job_id)
    if job is None or job.kind != FIXITY_AUDIT:
        raise NotFound(f"no audit {job_id}", code="audit_not_found")
    view = job_view(job)
    view.pop("failed", None)
    body: dict[str, Any] = {**view, "report": None, "error": None, "audit_seq": None}
    row = find_audit_result(index, job) if job.status == "finished" else None
    if row is not None:
        detail = row.detail
        detail.pop("job_id", None)
        body["audit_seq"] = row.seq
        if row.action == AUDIT_ACTION:
            body["report"] = detail
        else:
            body["error"] = {"code": detail.get("code"), "detail": detail.get("detail")}
    return body
