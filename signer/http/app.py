"""Flask app factory: problem+json for every error, one structured log line per request."""

from __future__ import annotations

import json
import logging
import time
import uuid

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from archive.errors import ArchiveError
from signer import fixes
from signer.errors import HocbaError, from_archive
from signer.logs import configure_logging
from signer.service import Hocba
from signer.settings import Settings, load_settings

access_log = logging.getLogger("hocba.access")
log = logging.getLogger("hocba")


def problem_response(error: HocbaError) -> Response:
    g.outcome = error.code
    return Response(json.dumps(error.problem(), ensure_ascii=False), status=error.status,
                    mimetype="application/problem+json")


def create_app(settings: Settings | None = None, *, service: Hocba | None = None) -> Flask:
    fixes.apply()
    configure_logging()
    settings = settings or load_settings()
    app = Flask("hocba", static_folder=None)  # no static files: pages inline their CSS
    app.config["MAX_CONTENT_LENGTH"] = settings.max_pdf_bytes + 1024 * 1024
    app.extensions["hocba"] = service or Hocba(settings)

    from signer.http import admin, archive, jobs, ops, records, sessions, verify

    app.register_blueprint(records.bp)
    app.register_blueprint(archive.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(verify.bp)
    app.register_blueprint(ops.bp)

    @app.before_request
    def _start() -> None:
        g.t0 = time.perf_counter()
        g.request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
        g.tenant = None
        g.record_id = (request.view_args or {}).get("record_id")
        g.outcome = "ok"

    @app.after_request
    def _log(resp: Response) -> Response:
        resp.headers["X-Request-Id"] = g.get("request_id", "")
        access_log.info(json.dumps({
            "request_id": g.get("request_id"), "method": request.method,
            "path": request.path, "status": resp.status_code, "tenant": g.get("tenant"),
            "record_id": g.get("record_id"), "outcome": g.get("outcome", "ok"),
            "duration_ms": round((time.perf_counter() - g.get("t0", time.perf_counter()))
                                 * 1000, 1),
        }, ensure_ascii=False))
        return resp

    @app.errorhandler(HocbaError)
    def _hocba(e: HocbaError) -> Response:
        if e.status >= 500:
            log.warning("dependency/internal error %s: %s", e.code, e.detail)
        return problem_response(e)

    @app.errorhandler(ArchiveError)
    def _archive(e: ArchiveError) -> Response:  # one the service did not translate
        log.error("archive error %s: %s", e.code, e)
        return problem_response(from_archive(e))

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(e: RequestEntityTooLarge) -> Response:
        return problem_response(HocbaError(
            f"the request exceeds {settings.max_pdf_bytes} bytes", code="pdf_too_large",
            status=413, title="Payload too large"))

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> Response:
        code = (e.name or "error").lower().replace(" ", "_")
        return problem_response(HocbaError(e.description or "", code=code,
                                           status=e.code or 500, title=e.name or "Error"))

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Response:
        log.exception("unexpected error")
        return problem_response(HocbaError(
            f"request {g.get('request_id')} failed; it is logged"))

    return app
