"""Verification for anyone: POST /v1/verify (a report for any PDF), and the pages for a
person, Vietnamese by default with an English link (`?lang=en`), no JavaScript at all:

    GET  /verify/<code>     what a record's QR code points at (signer/service/publicview.py
                            decides what is shown: never the pupil, an ID or the document)
    GET  /verify            the upload and code forms; `?code=` redirects to the code's page
    POST /verify            an uploaded PDF checked (nothing stored), as an HTML page
    GET  /shared/<token>    a share link's page (pupil, school, verdict, the PDF's link)
"""

from __future__ import annotations

import base64
import hashlib
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, g, redirect, render_template, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.wrappers import Response as BaseResponse

from archive.verification import canonical, display
from signer.errors import HocbaError, InvalidInput, RequestError
from signer.http.common import FormPartTooLarge, form_part_too_large, service
from signer.service import publicview

bp = Blueprint("verify", __name__, template_folder="templates")

TEMPLATES = Path(__file__).with_name("templates")
LANGS = ("vi", "en")
DEFAULT_LANG = "vi"
STRINGS: dict[str, dict[str, str]] = tomllib.loads(
    (TEMPLATES / "strings.toml").read_text(encoding="utf-8"))
if set(STRINGS) != set(LANGS) or set(STRINGS["vi"]) != set(STRINGS["en"]):
    raise RuntimeError("signer/http/templates/strings.toml: both languages need the same keys")
# One stylesheet, inline, allowed by its hash (no 'unsafe-inline', no script at all).
CSS = (TEMPLATES / "public.css").read_text(encoding="utf-8")
CSP = ("default-src 'none'; style-src 'sha256-"
       + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
       + "'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# What each page's problem says in plain words (strings.toml: problem_<code>).
UPLOAD_PROBLEMS = frozenset({"pdf_not_a_pdf", "pdf_malformed", "pdf_encrypted",
                             "pdf_too_large", "multipart_missing_part"})
SHARE_PROBLEMS = frozenset({"share_link_expired", "share_link_revoked",
                            "share_link_not_found"})


@bp.post("/v1/verify")
def verify() -> dict[str, Any]:
    return service().verification.verify(_uploaded_pdf())


def _uploaded_pdf() -> bytes:
    """The `document` part, within the service's PDF size limit (413 `pdf_too_large`)."""
    limit = service().settings.max_pdf_bytes
    too_large = RequestError(f"the PDF is over the limit; at most {limit} bytes are "
                             "accepted", code="pdf_too_large", status=413,
                             title="Payload too large")
    try:
        upload = request.files.get("document")
    except FormPartTooLarge as e:
        raise form_part_too_large() from e
    except RequestEntityTooLarge as e:
        raise too_large from e
    if upload is None or not upload.filename:
        raise InvalidInput("send multipart/form-data with the PDF in part `document`",
                           code="multipart_missing_part")
    data = upload.read(limit + 1)
    if len(data) > limit:
        raise too_large
    return data


# -- pages ------------------------------------------------------------------------------


def _lang() -> str:
    """`?lang=` (the forms carry it in their action or a hidden field); Vietnamese by
    default. Never reads a request body."""
    lang = request.args.get("lang", DEFAULT_LANG)
    return lang if lang in LANGS else DEFAULT_LANG


def _with_lang(path: str, lang: str) -> str:
    return path if lang == DEFAULT_LANG else f"{path}?lang={lang}"


def _render(template: str, status: int, title_key: str, *, toggle_path: str | None = None,
            noindex: bool = False, **context: Any) -> Response:
    lang = _lang()
    other = "en" if lang == "vi" else "vi"
    strings = STRINGS[lang]

    def t(key: str, **fill: Any) -> str:
        text = strings[key]  # a missing key is a bug: KeyError, not an empty string
        return text.format(**fill) if fill else text

    html = render_template(
        template, lang=lang, other_lang=other, t=t, title_key=title_key, css=CSS,
        noindex=noindex, other_lang_url=_with_lang(toggle_path or request.path, other),
        upload_action=_with_lang("/verify", lang), **context)
    resp = Response(html, status=status, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Language"] = lang
    resp.headers["Cache-Control"] = "no-store" if noindex else "no-cache"
    return resp


def _not_found() -> Response:
    return _render("verify_page.html", 404, "title_not_found", toggle_path="/verify",
                   message_key="not_found_detail")


@bp.get("/verify")
def home() -> BaseResponse:
    """The forms; `?code=` (the code form) answers 303 to that code's page."""
    typed = request.args.get("code", "").strip()
    if typed:
        code = canonical(typed)
        if code is None:
            return _not_found()
        return redirect(_with_lang(f"/verify/{quote(display(code))}", _lang()), code=303)
    return _render("verify_page.html", 200, "title_verify")


@bp.get("/verify/<code>")
def page(code: str) -> Response:
    """A verification code's page. A record not archived yet answers 200 with only
    "still being signed": the code is real (printed on paper when the record was made)
    and unguessable, so saying so reveals nothing, and no-cache lets the page change
    once the record is archived."""
    found = publicview.of_code(service(), code)
    if found.kind == publicview.CODE_NOT_FOUND:
        return _not_found()
    if found.kind == publicview.CODE_PENDING:
        return _render("verify_page.html", 200, "title_pending",
                       message_key="pending_detail")
    return _render("verify_page.html", 200, "title_verify", view=found.view)


@bp.post("/verify")
def upload_page() -> Response:
    """An uploaded file checked, nothing stored: the same limit and problem codes as
    POST /v1/verify, as a page with the problem's status."""
    try:
        view = publicview.of_upload(service(), _uploaded_pdf())
    except HocbaError as e:
        g.outcome = e.code
        key = f"problem_{e.code}" if e.code in UPLOAD_PROBLEMS else "problem_other"
        return _render("verify_page.html", e.status, "title_problem", toggle_path="/verify",
                       noindex=True, message_key=key, problem=e)
    return _render("verify_page.html", 200, "title_result", toggle_path="/verify",
                   noindex=True, view=view, upload=True)


@bp.get("/shared/<token>")
def shared_page(token: str) -> Response:
    """A share link's page for the guardian or the receiving school. Viewing it is one
    use of the link (counted, audited); the download, GET /v1/shared/<token>, another."""
    try:
        row, shared = publicview.of_share(service(), token)
    except HocbaError as e:
        if e.code not in SHARE_PROBLEMS:
            raise
        g.outcome = e.code
        title = "title_share_missing" if e.status == 404 else "title_share_gone"
        return _shared_headers(_render("shared.html", e.status, title, noindex=True,
                                       message_key=e.code, problem=e))
    g.record_id, g.tenant = row.id, row.tenant
    return _shared_headers(_render("shared.html", 200, "title_shared", noindex=True,
                                   shared=shared, download_url=f"/v1/shared/{token}"))


def _shared_headers(resp: Response) -> Response:
    """As GET /v1/shared/<token> sets them."""
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Robots-Tag"] = "noindex, nofollow"
    return resp
