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
from signer.http import metrics
from signer.http.common import (
    FORM_PART_MEMORY_BYTES,
    FormPartTooLarge,
    Request,
    form_part_too_large,
)
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
    app.request_class = Request  # multipart text parts kept as sent
    # a request: the PDF and 1 MiB for the rest (a text part: common.FORM_TEXT_MAX_BYTES)
    app.config["MAX_CONTENT_LENGTH"] = max_request = settings.max_pdf_bytes + 1024 * 1024
    app.config["MAX_FORM_MEMORY_SIZE"] = FORM_PART_MEMORY_BYTES
    app.extensions["hocba"] = service or Hocba(settings)

    from signer.http import admin, archive, jobs, ops, records, sessions, verify

    app.register_blueprint(records.bp)
    app.register_blueprint(archive.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(verify.bp)
    app.register_blueprint(ops.bp)
    metrics.install(app)  # per-route counts and latencies, the service's timings

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

    @app.errorhandler(FormPartTooLarge)
    def _part_too_large(e: FormPartTooLarge) -> Response:
        return problem_response(form_part_too_large())

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(e: RequestEntityTooLarge) -> Response:
        # the whole request over MAX_CONTENT_LENGTH (a JSON view answers its own limit)
        return problem_response(HocbaError(
            f"the request exceeds {max_request} bytes (a PDF of at most "
            f"{settings.max_pdf_bytes} bytes and 1 MiB for the rest)", code="pdf_too_large",
            status=413, title="Payload too large"))

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException) -> Response:
        code = (e.name or "error").lower().replace(" ", "_")
        resp = problem_response(HocbaError(e.description or "", code=code,
                                           status=e.code or 500, title=e.name or "Error"))
        for name, value in e.get_headers():  # Allow on a 405, WWW-Authenticate...
            if name.lower() != "content-type":
                resp.headers[name] = value
        return resp

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Response:
        log.exception("unexpected error")
        return problem_response(HocbaError(
            f"request {g.get('request_id')} failed; it is logged"))

    return app
