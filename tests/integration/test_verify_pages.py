"""The pages for a person (issue 10; Decree 13/2023 on personal data): a verification
code's page shows the verdict, roles, signers' names, school, year and archive date and
nothing about the pupil; no route serves the document without a share link; an upload is
checked (nothing stored) with the API's problem codes; a share link's page is for the
guardian or the receiving school, and every use of it is audited."""

from __future__ import annotations

import hashlib
import io
import re
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from archive.verification import display
from tests.integration.helpers import (
    SAMPLE_PUPILS,
    SCHOOL_NAMES,
    auth,
    create_archived,
    make_app,
    metadata,
    sign,
    state_of,
    upload,
    verify,
)

pytestmark = pytest.mark.integration

FPDF2 = "hoc-ba-tieu-hoc-fpdf2.pdf"
PDFA = "hoc-ba-thcs-libreoffice-pdfa.pdf"
ID_NUMBER = re.compile(r"\d{12}")
ROLE_WORDS = {"vi": ("Giáo viên chủ nhiệm", "Hiệu trưởng", "Con dấu của trường"),
              "en": ("Homeroom teacher", "Principal", "School seal")}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, service_env: dict[str, str],
        responder: Any) -> Any:
    responder.start()
    flask_app = make_app(service_env, tmp_path_factory.mktemp("verify-pages"))
    yield flask_app
    flask_app.extensions["hocba"].close()


@pytest.fixture
def http(app: Any, responder: Any) -> Any:
    responder.start()  # another module may have stopped it
    return app.test_client()


def code_of(app: Any, record_id: str) -> str:
    row = app.extensions["hocba"].index.get_record(record_id)
    assert row is not None and row.verification_code
    return str(row.verification_code)


@pytest.fixture(scope="module")
def archived(app: Any, responder: Any, api_keys: dict[str, str],
             samples: dict[str, bytes]) -> dict[str, Any]:
    """The FPDF2 pupil's record, signed by teacher, principal and seal and archived."""
    responder.start()
    http = app.test_client()
    key = api_keys["school-1"]
    record = create_archived(http, key, samples[FPDF2], metadata(FPDF2))
    pdf = http.get(f"/v1/records/{record['id']}/document", headers=auth(key)).data
    report = verify(http, pdf).get_json()
    assert report["indication"] == "TOTAL_PASSED", report
    names = [s["signer"]["name"] for s in report["signatures"]]
    assert len(names) == 3 and all(names), report
    return {"record": record, "pdf": pdf, "code": code_of(app, record["id"]),
            "names": names}


@pytest.fixture(scope="module")
def awaiting(app: Any, api_keys: dict[str, str], samples: dict[str, bytes]) -> dict[str, Any]:
    """The PDF/A pupil's record, teacher-signed only."""
    http = app.test_client()
    key = api_keys["school-1"]
    resp = upload(http, key, samples[PDFA], metadata(PDFA))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    record = sign(http, key, resp.get_json()["id"], "teacher", "school-1-teacher").get_json()
    return {"record": record, "code": code_of(app, record["id"])}


def html_of(resp: Any, status: int) -> str:
    text: str = resp.get_data(as_text=True)
    assert resp.status_code == status, text
    assert resp.mimetype == "text/html"
    assert "<script" not in text.lower() and " on" + "click" not in text.lower()
    assert "'unsafe-inline'" not in resp.headers["Content-Security-Policy"]
    assert "script-src" not in resp.headers["Content-Security-Policy"]
    return text


def assert_nothing_personal(html: str, record_id: str) -> None:
    for _, name, id_number, *_ in SAMPLE_PUPILS.values():
        assert name not in html
        assert id_number not in html
    assert not ID_NUMBER.search(html), ID_NUMBER.search(html)
    assert "UID" not in html and "CCCD" not in html
    assert record_id not in html
    assert "/document" not in html and "/v1/" not in html


def tampered(pdf: bytes) -> bytes:
    """The archived bytes with one byte changed inside every signature's signed range
    (the first revision's /Producer string), the length and offsets unchanged."""
    at = pdf.index(b"/Producer (") + len(b"/Producer (")
    first_range = int(re.search(rb"/ByteRange\s*\[\s*0\s+(\d+)", pdf).group(1))  # type: ignore[union-attr]
    assert at < first_range
    changed = bytearray(pdf)
    changed[at] = ord("X") if changed[at] != ord("X") else ord("Y")
    return bytes(changed)


def post_file(http: Any, data: bytes, name: str = "hoc-ba.pdf", query: str = "") -> Any:
    return http.post("/verify" + query,
                     data={"document": (io.BytesIO(data), name, "application/pdf")},
                     content_type="multipart/form-data")


# -- the rule, without a service -----------------------------------------------------------


def test_public_view_keeps_only_what_may_be_shown() -> None:
    from signer.service.publicview import NOT_VALID, UNSIGNED, VALID, public_view

    report = {"indication": "TOTAL_PASSED", "signatures": [
        {"role": "teacher", "field": "f1", "indication": "TOTAL_PASSED",
         "signing_time": "2026-11-23T10:26:00Z", "timestamp_time": "2026-11-23T17:30:00Z",
         "signer": {"name": "Nguyễn Thị Hoa", "serial": "abc123",
                    "subject": "UID=CCCD:001085012345,CN=Nguyễn Thị Hoa"}},
        {"role": None, "field": "x", "indication": "INDETERMINATE", "signing_time": None,
         "timestamp_time": None, "signer": {"name": "Mr 001085012345", "subject": "CN=x"}}]}
    view = public_view(report)
    assert view.verdict == VALID
    assert [(s.role, s.name, s.signed_at, s.verdict) for s in view.signers] == [
        ("teacher", "Nguyễn Thị Hoa", "24/11/2026 00:30", "valid"),  # UTC+7
        ("other", "Mr …", "", "undetermined")]
    assert "001085012345" not in repr(view) and "abc123" not in repr(view)
    assert public_view({"indication": "TOTAL_FAILED", "signatures": [
        report["signatures"][0]]}).verdict == NOT_VALID
    assert public_view({"indication": "INDETERMINATE", "signatures": []}).verdict == UNSIGNED


# -- GET /verify/<code> ----------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_page_of_an_archived_record(http: Any, archived: dict[str, Any], lang: str) -> None:
    url = f"/verify/{display(archived['code'])}" + ("?lang=en" if lang == "en" else "")
    resp = http.get(url)
    html = html_of(resp, 200)
    assert f'<html lang="{lang}">' in html
    assert html.count("<h1") == 1
    assert ("Học bạ hợp lệ" if lang == "vi" else "Valid school record") in html
    for word in ROLE_WORDS[lang]:
        assert word in html
    for name in archived["names"]:
        assert name in html
    assert SCHOOL_NAMES["DEMO-SCHOOL-1"] in html and "2024-2025" in html
    archived_on = archived["record"]["archive"]["archived_at"]
    assert re.search(r"\b\d{2}/\d{2}/20\d{2}\b", html), "dates as dd/mm/yyyy"
    assert archived_on[:4] in html
    assert_nothing_personal(html, archived["record"]["id"])
    # the toggle is a plain link to the other language, on the same page
    other = "?lang=en" if lang == "vi" else ""
    assert f'href="/verify/{display(archived["code"])}{other}"' in html
    # the forms keep the language
    assert ('action="/verify?lang=en"' if lang == "en" else 'action="/verify"') in html
    assert resp.headers["Content-Language"] == lang


def test_typed_codes_need_not_be_exact(http: Any, archived: dict[str, Any]) -> None:
    code = archived["code"]
    for typed in (code.lower(), code, display(code).lower(), " ".join(display(code)
                                                                        .split("-"))):
        html = html_of(http.get(f"/verify/{typed}"), 200)
        assert "Học bạ hợp lệ" in html, typed


def test_the_code_form_redirects_to_the_code_page(http: Any, archived: dict[str, Any]) -> None:
    code = archived["code"]
    resp = http.get(f"/verify?code={code.lower()}")
    assert resp.status_code == 303
    assert urlsplit(resp.headers["Location"]).path == f"/verify/{display(code)}"
    resp = http.get(f"/verify?code={display(code)}&lang=en")
    assert resp.status_code == 303
    assert resp.headers["Location"].endswith(f"/verify/{display(code)}?lang=en")
    html = html_of(http.get("/verify"), 200)
    assert 'name="code"' in html and '<label for="code">' in html
    assert 'enctype="multipart/form-data"' in html and '<label for="document">' in html
    html_of(http.get("/verify?code=not-a-code"), 404)


def test_unknown_or_malformed_code_is_a_404_page(http: Any) -> None:
    for code in ("0000-0000-0000-0000", "not-a-code", "x" * 200, "ABCD"):
        html = html_of(http.get(f"/verify/{code}"), 404)
        assert "Không tìm thấy mã xác thực" in html
    html = html_of(http.get("/verify/0000-0000-0000-0000?lang=en"), 404)
    assert "Verification code not found" in html and '<html lang="en">' in html


def test_no_document_route(http: Any, archived: dict[str, Any]) -> None:
    for x in (archived["code"], display(archived["code"]), archived["record"]["id"], "x"):
        assert http.get(f"/verify/{x}/document").status_code == 404


def test_page_of_a_record_still_being_signed(http: Any, awaiting: dict[str, Any]) -> None:
    html = html_of(http.get(f"/verify/{awaiting['code']}"), 200)
    assert "Học bạ đang được ký" in html
    assert SCHOOL_NAMES["DEMO-SCHOOL-1"] not in html and "Giáo viên chủ nhiệm" not in html
    assert_nothing_personal(html, awaiting["record"]["id"])
    html = html_of(http.get(f"/verify/{awaiting['code']}?lang=en"), 200)
    assert "This record is still being signed" in html


# -- POST /verify ------------------------------------------------------------------------


def test_upload_of_the_archived_copy(app: Any, http: Any, archived: dict[str, Any]) -> None:
    before = state_of(app)
    html = html_of(post_file(http, archived["pdf"]), 200)
    assert "Học bạ hợp lệ" in html
    assert (f"bản học bạ do hocba lưu trữ cho {SCHOOL_NAMES['DEMO-SCHOOL-1']}, "
            "năm học 2024-2025") in html
    for name in archived["names"]:
        assert name in html
    assert_nothing_personal(html, archived["record"]["id"])
    html = html_of(post_file(http, archived["pdf"], query="?lang=en"), 200)
    assert "Valid school record" in html and "copy of the record that hocba archived" in html
    assert state_of(app)["files"] == before["files"]  # nothing stored


def test_upload_of_a_tampered_copy(http: Any, archived: dict[str, Any]) -> None:
    html = html_of(post_file(http, tampered(archived["pdf"])), 200)
    assert "Học bạ KHÔNG hợp lệ" in html and "Học bạ hợp lệ" not in html
    assert "hocba không lưu trữ tệp này" in html
    assert_nothing_personal(html, archived["record"]["id"])
    html = html_of(post_file(http, tampered(archived["pdf"]), query="?lang=en"), 200)
    assert "NOT a valid school record" in html


def test_upload_problems_are_pages_with_the_api_status(http: Any,
                                                       samples: dict[str, bytes]) -> None:
    html = html_of(post_file(http, b"hello, not a PDF"), 400)
    assert "pdf_not_a_pdf" in html and "không phải là tệp PDF" in html
    html = html_of(post_file(http, b"%PDF-1.7\n garbage"), 400)
    assert "pdf_malformed" in html
    html = html_of(post_file(http, b"hello", query="?lang=en"), 400)
    assert "is not a PDF file" in html and '<html lang="en">' in html
    resp = http.post("/verify", data={}, content_type="multipart/form-data")
    assert "multipart_missing_part" in html_of(resp, 422)
    # the JSON API says the same codes
    assert verify(http, b"hello").get_json()["code"] == "pdf_not_a_pdf"


def test_upload_over_the_size_limit(service_env: dict[str, str], tmp_path: Any,
                                    samples: dict[str, bytes], responder: Any) -> None:
    limit = 30_000
    assert len(samples[FPDF2]) < limit < len(samples[PDFA])
    small = make_app(service_env, tmp_path, max_pdf_bytes=limit)
    try:
        http = small.test_client()
        html = html_of(post_file(http, samples[PDFA]), 413)
        assert "pdf_too_large" in html and "Tệp quá lớn" in html
        max_body = small.config["MAX_CONTENT_LENGTH"]
        huge = samples[PDFA] + b"%" * max_body + b"\n%%EOF\n"
        boundary, body = encode_multipart({"document": FileStorage(
            io.BytesIO(huge), "r.pdf", content_type="application/pdf")})
        assert len(body) > max_body
        resp = http.post("/verify?lang=en", data=body,
                         content_type=f'multipart/form-data; boundary="{boundary}"')
        html = html_of(resp, 413)
        assert "pdf_too_large" in html and "too large" in html
        assert html_of(post_file(http, samples[FPDF2]), 200)  # under the limit: checked
    finally:
        small.extensions["hocba"].close()


# -- GET /shared/<token> ---------------------------------------------------------------------


def share(http: Any, key: str, record_id: str, **body: Any) -> str:
    resp = http.post(f"/v1/archive/records/{record_id}/share", headers=auth(key), json=body)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    token: str = urlsplit(resp.get_json()["url"]).path.rsplit("/", 1)[1]
    return token


def uses(app: Any, record_id: str) -> list[Any]:
    rows = app.extensions["hocba"].index.list_audit(record_id, limit=1000)
    return [r for r in rows if r.action == "share_link.used"]


def share_headers(resp: Any) -> None:
    assert "no-store" in resp.headers["Cache-Control"]
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert "noindex" in resp.headers["X-Robots-Tag"]


def test_share_link_page_for_a_guardian(app: Any, http: Any, api_keys: dict[str, str],
                                        archived: dict[str, Any]) -> None:
    record_id = archived["record"]["id"]
    token = share(http, api_keys["school-1"], record_id, expires_in=3600, purpose="guardian")
    before = len(uses(app, record_id))
    resp = http.get(f"/shared/{token}")  # no API key
    html = html_of(resp, 200)
    share_headers(resp)
    _, name, id_number, _, grade, class_name = SAMPLE_PUPILS[FPDF2]
    assert name in html and SCHOOL_NAMES["DEMO-SCHOOL-1"] in html and "2024-2025" in html
    assert f"<dd>{grade}</dd>" in html and f"<dd>{class_name}</dd>" in html
    assert "Học bạ hợp lệ" in html and "Phụ huynh" in html
    assert id_number not in html and not ID_NUMBER.search(html) and "UID" not in html
    assert f'href="/v1/shared/{token}"' in html
    assert '<meta name="robots" content="noindex, nofollow">' in html
    # the page is one use, the download another: both counted and audited
    assert len(uses(app, record_id)) == before + 1
    doc = http.get(f"/v1/shared/{token}")
    assert doc.status_code == 200 and doc.data == archived["pdf"]
    used = uses(app, record_id)
    assert len(used) == before + 2
    assert {u.actor for u in used} == {"share-link"}
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert used[-1].detail["token_sha256"] == digest and used[-1].detail["uses"] == 2
    html = html_of(http.get(f"/shared/{token}?lang=en"), 200)
    assert "Shared school record" in html and "Download the record (PDF)" in html
    assert len(uses(app, record_id)) == before + 3


def test_share_link_pages_when_not_live(app: Any, http: Any, api_keys: dict[str, str],
                                        archived: dict[str, Any]) -> None:
    record_id = archived["record"]["id"]
    svc = app.extensions["hocba"]
    # unknown, or not even like a token
    for token in ("A" * 43, "short"):
        resp = http.get(f"/shared/{token}")
        html = html_of(resp, 404)
        share_headers(resp)
        assert "share_link_not_found" in html and "Không tìm thấy liên kết" in html
    # revoked
    token = share(http, api_keys["school-1"], record_id, expires_in=3600, purpose="transfer")
    assert html_of(http.get(f"/shared/{token}"), 200)
    link = svc.index.get_share_link(hashlib.sha256(token.encode()).hexdigest())
    svc.index.revoke_share_link(record_id, link.id, "client:school-1")
    counted = len(uses(app, record_id))
    html = html_of(http.get(f"/shared/{token}"), 410)
    assert "share_link_revoked" in html and "thu hồi" in html
    assert http.get(f"/v1/shared/{token}").get_json()["code"] == "share_link_revoked"
    assert http.get(f"/v1/shared/{token}").status_code == 410
    assert len(uses(app, record_id)) == counted
    refused = [r for r in svc.index.list_audit(record_id, limit=1000)
               if r.action == "share_link.refused"]
    assert refused and refused[-1].detail["reason"] == "revoked"
    # expired
    svc.shares.min_seconds = 1
    try:
        token = share(http, api_keys["archivist"], record_id, expires_in=2, purpose="guardian")
    finally:
        svc.shares.min_seconds = 60
    assert html_of(http.get(f"/shared/{token}"), 200)
    time.sleep(2.2)
    resp = http.get(f"/shared/{token}?lang=en")
    html = html_of(resp, 410)
    share_headers(resp)
    assert "share_link_expired" in html and "has expired" in html
    assert SAMPLE_PUPILS[FPDF2][1] not in html
