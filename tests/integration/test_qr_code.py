"""Every record carries a QR code and a printed verification code (issue 10, item 2):
for every sample producer, through the HTTP API, create and sign fully, then read the
QR code off the archived record as printed (poppler renders, zbar decodes), follow it,
and check the record is still valid for the outside checkers."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from archive.verification import canonical, display
from signer.pades.qrstamp import page_index
from tests.integration.helpers import auth, metadata, problem, state_of, upload
from tests.integration.test_walking_skeleton import adesverify, sign_all

pytestmark = [pytest.mark.integration, pytest.mark.tools, pytest.mark.slow,
              pytest.mark.skipif(any(shutil.which(t) is None
                                     for t in ("pdftoppm", "zbarimg", "qpdf", "pdfsig")),
                                 reason="poppler-utils, zbar-tools and qpdf are needed")]
VERDICT = "Học bạ hợp lệ"


@pytest.fixture(scope="module")
def signed_records(tmp_path_factory: pytest.TempPathFactory, samples: dict[str, bytes],
                   api_keys: dict[str, str], service_env: dict[str, str],
                   responder: Any, csc_server: Any) -> Iterator[dict[str, Any]]:
    """Every sample producer, created and signed by teacher, principal and seal (server
    keys) to an archived record (done once)."""
    from signer.http import create_app
    from signer.settings import load_settings

    responder.start()
    tmp = tmp_path_factory.mktemp("qr")
    settings = load_settings({**service_env, "HOCBA_STORE": str(tmp / "store"),
                              "HOCBA_INDEX_URL": f"sqlite:///{tmp / 'index.sqlite3'}",
                              "HOCBA_PUBLIC_BASE_URL": "https://hocba.example.vn"})
    app = create_app(settings)
    app.testing = True
    http = app.test_client()
    key = api_keys["school-1"]
    out: dict[str, Any] = {"app": app, "http": http, "key": key, "dir": tmp,
                           "records": {}}
    for name, pdf in samples.items():
        created = upload(http, key, pdf, metadata(name))
        assert created.status_code == 201, created.get_json()
        record = created.get_json()
        final = sign_all(http, key, record["id"])
        assert final["status"] == "archived", final
        doc = http.get(f"/v1/records/{record['id']}/document", headers=auth(key))
        assert doc.status_code == 200
        path = tmp / f"final-{name}"
        path.write_bytes(doc.data)
        out["records"][name] = {"created": record, "record": final, "pdf": doc.data,
                                "path": path, "original": pdf}
    yield out
    app.extensions["hocba"].close()


def read_qr(pdf: Path, page: int, tmp: Path) -> list[str]:
    png = tmp / f"{pdf.stem}-qr"
    subprocess.run(["pdftoppm", "-r", "150", "-png", "-singlefile", "-f", str(page),
                    "-l", str(page), str(pdf), str(png)], check=True, timeout=120)
    res = subprocess.run(["zbarimg", "--raw", "-q", f"{png}.png"], capture_output=True,
                         text=True, timeout=60)
    return res.stdout.split()


def qr_page(app: Any, record: dict[str, Any], pdf: bytes) -> int:
    """The 1-based page the record type's policy puts the QR code on."""
    policy = app.extensions["hocba"].policies[record["record_type"]]
    count = int(PdfFileReader(BytesIO(pdf)).root["/Pages"]["/Count"])
    return page_index(policy.verification.page, count) + 1


def test_the_qr_code_on_the_archived_record_opens_its_verification_page(
        signed_records: dict[str, Any]) -> None:
    app, http = signed_records["app"], signed_records["http"]
    base = app.extensions["hocba"].settings.public_base_url
    seen = set()
    for name, item in signed_records["records"].items():
        record = item["record"]
        code = record["verification_code"]
        assert code and canonical(code) and display(canonical(code) or "") == code, record
        assert item["created"]["verification_code"] == code
        row = app.extensions["hocba"].index.get_record(record["id"])
        assert display(row.verification_code) == code
        url = f"{base}/verify/{code}"
        assert record["archive"]["verify_url"] == url
        page = qr_page(app, record, item["pdf"])
        assert read_qr(item["path"], page, signed_records["dir"]) == [url], name
        seen.add(code)
        # the printed code is on the same page, as text a reader can type
        text = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page),
                               str(item["path"]), "-"], capture_output=True, text=True,
                              check=True).stdout
        assert code in text and "Mã xác thực" in text
        resp = http.get(url.removeprefix(base))
        body = resp.get_data(as_text=True)
        assert resp.status_code == 200, body[:500]
        assert VERDICT in body, body[:2000]
    assert len(seen) == len(signed_records["records"])  # one code per record


def test_the_stamp_is_covered_by_every_signature(signed_records: dict[str, Any]) -> None:
    """The stamp is the first incremental update: the upload is byte for byte the first
    revision, the stamped document (what the record stores) the second, and the first
    signature's byte range covers it."""
    app = signed_records["app"]
    svc = app.extensions["hocba"]
    for item in signed_records["records"].values():
        pdf, original = item["pdf"], item["original"]
        assert pdf.startswith(original)
        created = item["created"]
        assert created["document"]["sha256"] != hashlib.sha256(original).hexdigest()
        audits = [a for a in svc.index.list_audit(created["id"], limit=100)
                  if a.action == "record.created"]
        assert len(audits) == 1
        detail = audits[0].detail
        assert detail["uploaded_sha256"] == hashlib.sha256(original).hexdigest()
        assert detail["uploaded_size"] == len(original)
        assert detail["sha256"] == created["document"]["sha256"]
        size = detail["size"]
        assert size == created["document"]["size"] > len(original)
        assert hashlib.sha256(pdf[:size]).hexdigest() == detail["sha256"]
        # the first signature signs from byte 0 past the stamped document's end
        first = PdfFileReader(BytesIO(pdf)).embedded_signatures[0]
        assert first.field_name == "Sig_GVCN"
        assert first.byte_range[0] == 0 and first.byte_range[1] > size


def test_the_archived_record_passes_the_outside_checkers(signed_records: dict[str, Any],
                                                         test_state: Path) -> None:
    for name, item in signed_records["records"].items():
        res = subprocess.run(["qpdf", "--check", str(item["path"])], capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, (name, res.stdout + res.stderr)
        assert "No syntax or stream encoding errors found" in res.stdout
        res = subprocess.run(["pdfsig", "-nocert", str(item["path"])],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, (name, res.stderr)
        assert res.stdout.count("Signature Validation: Signature is Valid.") >= 3, res.stdout
        assert "Signature is Invalid" not in res.stdout
        res = adesverify(item["path"], test_state / "pki" / "root.pem")
        assert res.returncode == 0, res.stdout + res.stderr
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("Sig_")]
        assert len(lines) == 3 and all(":INTACT:TRUSTED" in ln for ln in lines), res.stdout


def test_a_pdf_the_stamp_cannot_go_on_is_refused_and_nothing_stored(
        signed_records: dict[str, Any], samples: dict[str, bytes]) -> None:
    """A first page smaller than the stamp: a 4xx problem, no record, no object."""
    app, http, key = signed_records["app"], signed_records["http"], signed_records["key"]
    name, pdf = next(iter(samples.items()))
    w = IncrementalPdfFileWriter(BytesIO(pdf))
    page_ref, _ = w.find_page_for_modification(0)
    page_ref.get_object()[pdf_name("/CropBox")] = generic.ArrayObject(
        generic.FloatObject(v) for v in (0, 0, 60, 60))
    w.mark_update(page_ref)
    tiny = BytesIO()
    w.write(tiny)
    before = state_of(app)
    resp = upload(http, key, tiny.getvalue(),
                  metadata(name, school_year="2023-2024"))
    body = problem(resp, 400, "pdf_not_stampable")
    assert "QR" in body["detail"] or "stamp" in body["detail"]
    assert state_of(app) == before
