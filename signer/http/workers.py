"""gunicorn workers whose own refusals are problem+json, like every answer of the app.

gunicorn answers a request it cannot parse itself, before the app sees it: 414 (request
line over `limit_request_line`), 431 (a header over `limit_request_field_size`, or more
than `limit_request_fields`), 400 (a malformed request line or header), 403, 417, 501.
`Worker.handle_error` picks the status, the reason and a message, logs, and hands them
to `gunicorn.util.write_error`, which writes an HTML page. These workers keep all of
that and only replace `write_error` in their own process (the master writes no answer)
with one that writes the same status as an RFC 9457 problem. `gunicorn.conf.py` names
them as `worker_class`.

Checked for the gunicorn versions pyproject.toml allows: `write_error(sock, status_int,
reason, mesg)` and the way `handle_error` calls it are those of gunicorn 23 to 27; a
worker refuses to boot on another signature (tests/integration/test_api_errors.py runs
gunicorn and reads its 414/431/400 answers).
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker as _ThreadWorker
from gunicorn.workers.sync import SyncWorker as _SyncWorker

WRITE_ERROR_PARAMETERS = ["sock", "status_int", "reason", "mesg"]
CODES = {400: "bad_request", 403: "forbidden", 414: "request_line_too_large",
         417: "expectation_failed", 431: "request_headers_too_large",
         500: "internal_error", 501: "not_implemented"}


def problem_bytes(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP/1.1 answer: status line, headers, problem+json body."""
    code = CODES.get(status, "bad_request" if status < 500 else "internal_error")
    body = json.dumps({
        "type": f"https://hocba.example/problems/{code}", "title": reason, "status": status,
        "detail": message or "the server could not answer this request; it is logged",
        "code": code}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


def write_problem(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's signature, writing a problem instead of HTML."""
    util.write_nonblock(sock, problem_bytes(int(status_int), reason, mesg))


def install() -> None:
    """Replace gunicorn's error writer in this (worker) process, once its signature is
    the one this module was written for."""
    if util.write_error is write_problem:
        return
    found = list(inspect.signature(util.write_error).parameters)
    if found != WRITE_ERROR_PARAMETERS:
        raise RuntimeError(f"gunicorn.util.write_error{tuple(found)} is not the "
                           f"write_error{tuple(WRITE_ERROR_PARAMETERS)} signer/http/"
                           "workers.py was written for: check it against this gunicorn")
    util.write_error = write_problem


class SyncWorker(_SyncWorker):
    def init_process(self) -> None:
        install()
        super().init_process()


class ThreadWorker(_ThreadWorker):
    def init_process(self) -> None:
        install()
        super().init_process()
