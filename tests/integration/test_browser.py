"""The verification pages in a real browser: Debian's headless Chromium (/usr/bin/chromium,
APT_PACKAGES in the Makefile), driven by playwright's client (never a downloaded browser),
against the app served over HTTP by a werkzeug server in a thread. A phone (360 px) and a
desktop (1280 px), Vietnamese and English (by the toggle link, no JavaScript), a tampered
file through the page's form, an unknown code. Screenshots go to var/screenshots/; two of
them are the README's (docs/img/, refreshed with HOCBA_UPDATE_README_IMAGES=1)."""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from archive.verification import display
from tests.conftest import REPO, skip_or_fail
from tests.integration.helpers import SAMPLE_PUPILS, SCHOOL_NAMES, make_app, metadata, sign, upload

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO / "var" / "screenshots"
DOCS_IMG = REPO / "docs" / "img"
FPDF2 = "hoc-ba-tieu-hoc-fpdf2.pdf"
ROLES = (("teacher", "school-1-teacher"), ("principal", "school-1-principal"),
         ("seal", "school-1-seal"))
ID_NUMBER = re.compile(r"\d{12}")
PHONE = {"width": 360, "height": 780}
DESKTOP = {"width": 1280, "height": 900}


def _unavailable(reason: str) -> None:
    """Skip, unless CI or HOCBA_REQUIRE_BROWSER=1: there a missing browser is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI)")
    skip_or_fail(reason, "HOCBA_REQUIRE_BROWSER")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, service_env: dict[str, str],
         responder: Any, api_keys: dict[str, str], samples: dict[str, bytes]
         ) -> Iterator[dict[str, Any]]:
    """The app over HTTP on 127.0.0.1 with one archived record; its code and PDF."""
    from werkzeug.serving import make_server

    responder.start()
    app = make_app(service_env, tmp_path_factory.mktemp("browser"))
    http = app.test_client()
    key = api_keys["school-1"]
    resp = upload(http, key, samples[FPDF2], metadata(FPDF2))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    record_id = resp.get_json()["id"]
    for role, signer_key in ROLES:
        resp = sign(http, key, record_id, role, signer_key)
        assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["status"] == "archived"
    pdf = http.get(f"/v1/records/{record_id}/document",
                   headers={"Authorization": f"Bearer {key}"}).data
    code = app.extensions["hocba"].index.get_record(record_id).verification_code
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"base": f"http://127.0.0.1:{server.server_port}", "code": display(code),
               "record_id": record_id, "pdf": pdf}
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        app.extensions["hocba"].close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as e:
        _unavailable(f"playwright's Python client is not installed: {e}")
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium; `make test` does)")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM)
        except Error as e:
            _unavailable(f"Chromium at {CHROMIUM} did not launch: {e}")
        SHOTS.mkdir(parents=True, exist_ok=True)
        yield b
        b.close()


def new_page(browser: Any, viewport: dict[str, int]) -> Any:
    context = browser.new_context(viewport=viewport, java_script_enabled=False)
    page = context.new_page()
    page.csp_violations = []  # type: ignore[attr-defined]
    page.on("console", lambda m: page.csp_violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    return page


def body_text(page: Any) -> str:
    text: str = page.inner_text("body")
    assert not ID_NUMBER.search(text), ID_NUMBER.search(text)
    return text


def no_overflow(page: Any, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"horizontal overflow: {scroll} px > {width} px"


def styled(page: Any) -> None:
    """The inline stylesheet applied: allowed by its hash under the page's CSP."""
    color = page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor")
    assert color == "rgb(244, 246, 248)", color
    assert page.csp_violations == []


def shot(page: Any, name: str) -> Path:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_record_page(text: str, lang: str, site: dict[str, Any]) -> None:
    words = {"vi": ("Học bạ hợp lệ", "Giáo viên chủ nhiệm", "Hiệu trưởng",
                    "Con dấu của trường", "Năm học"),
             "en": ("Valid school record", "Homeroom teacher", "Principal", "School seal",
                    "School year")}[lang]
    for word in words:
        assert word in text, (word, text)
    assert SCHOOL_NAMES["DEMO-SCHOOL-1"] in text and "2024-2025" in text
    assert SAMPLE_PUPILS[FPDF2][1] not in text and "UID" not in text
    assert site["record_id"] not in text


@pytest.mark.parametrize(("name", "viewport"), [("phone", PHONE), ("desktop", DESKTOP)])
def test_record_page_in_both_languages(browser: Any, site: dict[str, Any], name: str,
                                       viewport: dict[str, int]) -> None:
    page = new_page(browser, viewport)
    resp = page.goto(f"{site['base']}/verify/{site['code']}")
    assert resp is not None and resp.status == 200
    assert page.evaluate("document.documentElement.lang") == "vi"
    assert_record_page(body_text(page), "vi", site)
    styled(page)
    no_overflow(page, viewport["width"])
    vi = shot(page, f"verify-{name}-vi")
    # the toggle: a plain link (JavaScript is off in this browser)
    page.click("a.lang")
    page.wait_for_load_state()
    assert page.url.endswith(f"/verify/{site['code']}?lang=en")
    assert page.evaluate("document.documentElement.lang") == "en"
    assert_record_page(body_text(page), "en", site)
    no_overflow(page, viewport["width"])
    en = shot(page, f"verify-{name}-en")
    # and back
    page.click("a.lang")
    page.wait_for_load_state()
    assert page.evaluate("document.documentElement.lang") == "vi"
    if name == "phone":
        # the signer table is stacked cards: its header row is not shown as a row
        assert page.evaluate(
            "getComputedStyle(document.querySelector('table.signers td')).display") == "block"
        readme_image(vi, "verify-phone-vi.png")
    else:
        readme_image(en, "verify-desktop-en.png")
    page.context.close()


def readme_image(shot_path: Path, name: str) -> None:
    """The README's screenshots are refreshed on request only (HOCBA_UPDATE_README_IMAGES=1),
    so a test run leaves the checkout clean."""
    if os.environ.get("HOCBA_UPDATE_README_IMAGES") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot_path, DOCS_IMG / name)


def tampered(pdf: bytes) -> bytes:
    at = pdf.index(b"/Producer (") + len(b"/Producer (")
    changed = bytearray(pdf)
    changed[at] = ord("X") if changed[at] != ord("X") else ord("Y")
    return bytes(changed)


@pytest.mark.parametrize(("name", "viewport"), [("phone", PHONE), ("desktop", DESKTOP)])
def test_tampered_upload_through_the_form(browser: Any, site: dict[str, Any], name: str,
                                          viewport: dict[str, int]) -> None:
    page = new_page(browser, viewport)
    page.goto(f"{site['base']}/verify/{site['code']}?lang=en")
    page.set_input_files("#document", files=[{"name": "hoc-ba.pdf", "mimeType":
                                              "application/pdf",
                                              "buffer": tampered(site["pdf"])}])
    with page.expect_navigation():
        page.click("form[enctype='multipart/form-data'] button[type=submit]")
    text = body_text(page)
    assert "NOT a valid school record" in text, text
    assert "Valid school record" not in text
    assert "hocba has not archived this file" in text
    assert page.evaluate("document.documentElement.lang") == "en"
    no_overflow(page, viewport["width"])
    styled(page)
    shot(page, f"verify-tampered-{name}-en")
    # the untouched copy, in Vietnamese
    page.goto(f"{site['base']}/verify")
    page.set_input_files("#document", files=[{"name": "hoc-ba.pdf", "mimeType":
                                              "application/pdf", "buffer": site["pdf"]}])
    with page.expect_navigation():
        page.click("form[enctype='multipart/form-data'] button[type=submit]")
    text = body_text(page)
    assert "Học bạ hợp lệ" in text and SCHOOL_NAMES["DEMO-SCHOOL-1"] in text
    page.context.close()


def test_unknown_code_and_the_code_form(browser: Any, site: dict[str, Any]) -> None:
    page = new_page(browser, PHONE)
    resp = page.goto(f"{site['base']}/verify/0000-0000-0000-0000")
    assert resp is not None and resp.status == 404
    text = body_text(page)
    assert "Không tìm thấy mã xác thực" in text
    no_overflow(page, PHONE["width"])
    shot(page, "verify-unknown-phone-vi")
    # typed as from paper: lowercase, no hyphens
    page.fill("#code", site["code"].replace("-", "").lower())
    with page.expect_navigation():
        page.click("form[method=get] button[type=submit]")
    assert page.url.endswith(f"/verify/{site['code']}")
    assert "Học bạ hợp lệ" in body_text(page)
    page.context.close()
