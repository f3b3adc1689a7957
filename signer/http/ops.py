"""Liveness, readiness, metrics, the service-wide flags and the OpenAPI document.

`/readyz` checks each dependency (the TSA with a real timestamp request, its answer
reused for 30 s) and reads the service-wide flags from the index, so every worker and
instance answers alike; `/metrics` checks nothing (signer.http.metrics). A raised flag
(`archive_lock`) keeps the service unready until an operator clears it:
`DELETE /v1/admin/flags/{name}` (scope archive:admin, audited).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from archive.index import FlagRow
from archive.times import rfc3339
from signer.http import metrics as prometheus
from signer.http.auth import require
from signer.http.common import actor, service
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
    """Prometheus text: every worker's counts, the last readiness checks, and the
    index-backed gauges (the same whichever worker answers)."""
    return prometheus.render(service())


@bp.get("/v1/admin/flags")
@require("archive:admin")
def list_flags() -> dict[str, Any]:
    return {"flags": [_flag(f) for f in service().health.flags()]}


@bp.delete("/v1/admin/flags/<name>")
@require("archive:admin")
def clear_flag(name: str) -> dict[str, Any]:
    """Clear a raised flag once its cause is dealt with (404 `flag_unknown` for a name
    that is no flag; `cleared: false` when it was not raised)."""
    cleared = service().health.clear_flag(actor(), name)
    return {"name": name, "cleared": cleared is not None,
            "flag": _flag(cleared) if cleared else None}


def _flag(flag: FlagRow) -> dict[str, Any]:
    """What an operator sees (the records concerned are in the audit log, flag.raised)."""
    return {"name": flag.name, "raised_at": rfc3339(flag.raised_at),
            "last_raised_at": rfc3339(flag.last_raised_at), "occurrences": flag.occurrences}
