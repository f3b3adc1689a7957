"""Batches (one role, many records, one authorization) and job status."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response

from signer.http.auth import require
from signer.http.common import actor, json_body, service
from signer.http.idempotency import idempotent, request_hash
from signer.service.views import job_view

bp = Blueprint("jobs", __name__)


@bp.post("/v1/batches")
@require("records:sign")
def create_batch() -> Response:
    body = json_body()
    fingerprint = {k: v for k, v in body.items() if k != "authorization"}

    def produce() -> tuple[dict[str, Any], int]:
        job = service().jobs().submit(actor(), body["role"], body["key"], body["record_ids"],
                                      body.get("authorization"))
        return {"job_id": job.id, "status": job.status, "total": job.total}, 202

    return idempotent(request_hash(json.dumps(fingerprint, sort_keys=True).encode()), produce)


@bp.get("/v1/jobs/<job_id>")
@require("records:sign")
def get_job(job_id: str) -> dict[str, Any]:
    return job_view(service().jobs().get(actor(), job_id))
