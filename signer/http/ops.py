"""Liveness, readiness and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response

from signer.errors import NotFound
from signer.http.auth import service

bp = Blueprint("ops", __name__)
OPENAPI_CANDIDATES = (Path(__file__).resolve().parents[2] / "openapi.yaml",
                      Path.cwd() / "openapi.yaml")


@bp.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[dict[str, object], int]:
    checks = service().ready()
    ok = all(v == "ok" for v in checks.values())
    return {"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503


@bp.get("/openapi.yaml")
def openapi() -> Response:
    path = next((p for p in OPENAPI_CANDIDATES if p.is_file()), None)
    if path is None:
        raise NotFound("openapi.yaml is not installed", code="not_found")
    return Response(path.read_text(encoding="utf-8"), mimetype="application/yaml")


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text: index-backed gauges (the same whichever worker answers)."""
    svc = service()
    totals = svc.index.totals()
    ready = svc.ready()
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
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
