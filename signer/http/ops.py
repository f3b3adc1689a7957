"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response

from signer.http.common import service
from signer.http.schemas import OPENAPI_PATH

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[dict[str, object], int]:
    checks = service().health.checks()
    ok = all(v == "ok" for v in checks.values())
    return {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503


@bp.get("/openapi.yaml")
def openapi() -> Response:
    return Response(OPENAPI_PATH.read_text(encoding="utf-8"), mimetype="application/yaml")


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text: index-backed gauges (the same whichever worker answers)."""
    svc = service()
    totals = svc.health.totals()
    ready = svc.health.checks()
    lines = ["# HELP hocba_records Records in the index by status.",
             "# TYPE hocba_records gauge"]
    lines += [f'hocba_records{{status="{k}"}} {v}' for k, v in sorted(totals["records"].items())]
    lines += ["# HELP hocba_jobs Jobs (batches, audits) by status.", "# TYPE hocba_jobs gauge"]
    lines += [f'hocba_jobs{{status="{k}"}} {v}' for k, v in sorted(totals["jobs"].items())]
    lines += ["# HELP hocba_audit_rows Rows in the hash-chained audit log.",
              "# TYPE hocba_audit_rows gauge", f"hocba_audit_rows {totals['audit']['rows']}",
              "# HELP hocba_dependency_up 1 when the dependency answers its readiness check.",
              "# TYPE hocba_dependency_up gauge"]
    lines += [f'hocba_dependency_up{{dependency="{k}"}} {int(v == "ok")}'
              for k, v in sorted(ready.items())]
    lines += ["# HELP hocba_records_renewal Archived records by renewal state: due (newest "
              "document timestamp valid for less than the margin), overdue (no longer "
              "valid), unknown (archived before the date was recorded).",
              "# TYPE hocba_records_renewal gauge"]
    lines += [f'hocba_records_renewal{{state="{k}"}} {v}'
              for k, v in sorted(svc.renewals.counts().items())]
    lines += ["# HELP hocba_evidence Archived objects by evidence record (RFC 4998) state: "
              "missing (no evidence yet), ok, due (newest archive timestamp valid for less "
              "than the margin), overdue (no longer valid).",
              "# TYPE hocba_evidence gauge"]
    lines += [f'hocba_evidence{{state="{k}"}} {v}'
              for k, v in sorted(svc.evidence.counts().items())]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
