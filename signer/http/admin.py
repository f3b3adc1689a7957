"""Operators: fixity audits of the whole store, renewals of what is due, evidence records.

`POST /v1/admin/audits` queues a fixity audit (a `fixity_audit` job run by the job
runner thread); `GET /v1/admin/audits/{job_id}` gives its progress and, once finished,
its report. `GET /v1/admin/renewals` counts records due and overdue; `POST
/v1/admin/renewals` queues a `renewal` job; `GET /v1/admin/renewals/{job_id}` its progress.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response

from signer.http.auth import require
from signer.http.common import actor, json_body, json_bytes, service
from signer.http.idempotency import idempotent, request_hash

bp = Blueprint("admin", __name__)


@bp.post("/v1/admin/audits")
@require("archive:admin")
def start_audit() -> Response:
    def produce() -> tuple[dict[str, Any], int]:
        job = service().jobs().submit_audit(actor())
        return {"job_id": job.id, "status": job.status, "total": job.total}, 202

    return idempotent(request_hash(), produce)


@bp.get("/v1/admin/audits/<job_id>")
@require("archive:admin")
def get_audit(job_id: str) -> dict[str, Any]:
    return service().audits.status(job_id)


@bp.get("/v1/admin/renewals")
@require("archive:admin")
def renewal_counts() -> dict[str, Any]:
    renewals = service().renewals
    return {**renewals.counts(), "margin_days": renewals.policy.margin.days}


@bp.post("/v1/admin/renewals")
@require("archive:admin")
def start_renewal() -> Response:
    def produce() -> tuple[dict[str, Any], int]:
        job = service().jobs().submit_renewal(actor())
        return {"job_id": job.id, "status": job.status, "total": job.total}, 202

    return idempotent(request_hash(), produce)


@bp.get("/v1/admin/renewals/<job_id>")
@require("archive:admin")
def get_renewal(job_id: str) -> dict[str, Any]:
    return service().renewals.status(job_id)


@bp.get("/v1/admin/evidence")
@require("archive:admin")
def evidence_counts() -> dict[str, Any]:
    evidence = service().evidence
    return {**evidence.counts(), "batch_size": evidence.policy.batch_size,
            "max_wait_minutes": int(evidence.policy.max_wait.total_seconds() // 60),
            "margin_days": evidence.policy.margin.days}


@bp.post("/v1/admin/evidence")
@require("archive:admin")
def start_evidence() -> Response:
    body = json_body() if json_bytes().strip() else {}
    renew, everything = bool(body.get("renew")), bool(body.get("all"))

    def produce() -> tuple[dict[str, Any], int]:
        job = service().jobs().submit_evidence(actor(), renew=renew, everything=everything)
        return {"job_id": job.id, "status": job.status, "total": job.total}, 202

    # the options are part of the request: another set with the same key is a conflict
    return idempotent(request_hash(json.dumps([renew, everything]).encode()), produce)


@bp.get("/v1/admin/evidence/<job_id>")
@require("archive:admin")
def get_evidence_job(job_id: str) -> dict[str, Any]:
    return service().evidence.status(job_id)
