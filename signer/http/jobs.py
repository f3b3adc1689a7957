"""Batches (one role, many records, one authorization) and job status."""

from __future__ import annotations

import json
import threading
from typing import Any

from flask import Blueprint, Response, current_app

from signer.http.auth import client, require, service
from signer.http.idempotency import idempotent, request_hash
from signer.http.records import json_body
from signer.jobs import JobRunner, get_job_for, job_view
from signer.workflow import Actor

bp = Blueprint("jobs", __name__)
_runner_lock = threading.Lock()


def runner() -> JobRunner:
    with _runner_lock:
        found = current_app.extensions.get("hocba_jobs")
        if found is None:
            found = JobRunner(service(),
                              lease_seconds=service().settings.job_lease_seconds)
            current_app.extensions["hocba_jobs"] = found
        return found


@bp.post("/v1/batches")
@require("records:sign")
def create_batch() -> Response:
    body = json_body()
    fingerprint = {k: v for k, v in body.items() if k != "authorization"}

    def produce() -> tuple[dict[str, Any], int]:
        job = runner().submit(Actor.of(client()), body)
        return {"job_id": job.id, "status": job.status, "total": job.total}, 202

    return idempotent(request_hash(json.dumps(fingerprint, sort_keys=True).encode()), produce)


@bp.get("/v1/jobs/<job_id>")
@require("records:sign")
def get_job(job_id: str) -> dict[str, Any]:
    return job_view(get_job_for(service(), Actor.of(client()), job_id))
