"""Small helpers the integration tests share: metadata, uploads, signing through the API."""

from __future__ import annotations

import io
import json
from typing import Any

SAMPLE_PUPILS = {
    "hoc-ba-tieu-hoc-fpdf2.pdf": ("hoc_ba_tieu_hoc", "Phạm Gia Huy", "001217000777",
                                  "2017-11-20", 2, "2B"),
    "hoc-ba-thcs-libreoffice-pdfa.pdf": ("hoc_ba_thcs", "Lê Hoàng Minh Khôi", "079211004321",
                                         "2011-03-14", 8, "8/3"),
}
SCHOOL_NAMES = {"DEMO-SCHOOL-1": "Trường Tiểu học Nguyễn Du",
                "DEMO-SCHOOL-2": "Trường THCS Chu Văn An"}
SCHOOL_KEYS = {"DEMO-SCHOOL-1": "school-1", "DEMO-SCHOOL-2": "school-2"}


NAME_LETTERS = "ABCDĐEGHIKLMNOPQRSTUVXY"  # Vietnamese initials: names are letters only


def pupil_name(i: int) -> str:
    """A distinct pupil name for every `i` (letters only, as the metadata checks want)."""
    initials = ""
    while True:
        i, digit = divmod(i, len(NAME_LETTERS))
        initials = NAME_LETTERS[digit] + initials
        if i == 0:
            return f"Học Sinh {initials}"


def metadata(sample: str, school: str = "DEMO-SCHOOL-1", **changes: Any) -> dict[str, Any]:
    record_type, name, id_number, dob, grade, class_name = SAMPLE_PUPILS[sample]
    meta: dict[str, Any] = {
        "record_type": record_type,
        "school": {"code": school, "name": SCHOOL_NAMES[school]},
        "student": {"id_number": id_number, "full_name": name, "date_of_birth": dob,
                    "student_code": f"HS-{id_number[-6:]}"},
        "school_year": "2024-2025", "grade": grade, "class_name": class_name,
        "supersedes": None,
    }
    meta.update(changes)
    return meta


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def upload(http: Any, key: str, pdf: bytes, meta: dict[str, Any] | str,
           headers: dict[str, str] | None = None) -> Any:
    text = meta if isinstance(meta, str) else json.dumps(meta, ensure_ascii=False)
    return http.post("/v1/records", headers={**auth(key), **(headers or {})},
                     data={"document": (io.BytesIO(pdf), "record.pdf", "application/pdf"),
                           "metadata": text},
                     content_type="multipart/form-data")


def sign(http: Any, key: str, record_id: str, role: str, signer_key: str,
         headers: dict[str, str] | None = None) -> Any:
    return http.post(f"/v1/records/{record_id}/signatures",
                     headers={**auth(key), **(headers or {})},
                     json={"role": role, "key": signer_key})


SCHOOL_1_SIGNERS = (("teacher", "school-1-teacher"), ("principal", "school-1-principal"),
                    ("seal", "school-1-seal"))


def create_archived(http: Any, key: str, pdf: bytes, meta: dict[str, Any],
                    signers: tuple[tuple[str, str], ...] = SCHOOL_1_SIGNERS
                    ) -> dict[str, Any]:
    """Upload a record and sign it in every role (server-held keys); the archived view."""
    resp = upload(http, key, pdf, meta)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    record: dict[str, Any] = resp.get_json()
    for role, signer_key in signers:
        resp = sign(http, key, record["id"], role, signer_key)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        record = resp.get_json()
    assert record["status"] == "archived", record
    return record


def verify(http: Any, pdf: bytes) -> Any:
    return http.post("/v1/verify", data={"document": (io.BytesIO(pdf), "x.pdf")},
                     content_type="multipart/form-data")


# --- added for the API error and tenancy tests ---------------------------------------

PROBLEM_JSON = "application/problem+json"


def make_app(service_env: dict[str, str], directory: Any, **overrides: Any) -> Any:
    """A hocba app over a fresh store and index under `directory` (settings overridable)."""
    from pathlib import Path

    from signer.http import create_app
    from signer.settings import load_settings

    base = Path(directory)
    settings = load_settings({**service_env, "HOCBA_STORE": str(base / "store"),
                              "HOCBA_INDEX_URL": f"sqlite:///{base / 'index.sqlite3'}"},
                             **overrides)
    app = create_app(settings)
    app.testing = True
    return app


def state_of(app: Any) -> dict[str, Any]:
    """What a request could change: rows per index table, and every file (with its size)
    under the store root."""
    from pathlib import Path

    import sqlalchemy as sa

    from archive.index import schema

    svc = app.extensions["hocba"]
    engine = sa.create_engine(svc.settings.index_url)
    try:
        with engine.connect() as conn:
            rows = {table.name: conn.execute(sa.select(sa.func.count())
                                             .select_from(table)).scalar_one()
                    for table in schema.metadata.sorted_tables}
    finally:
        engine.dispose()
    root = Path(svc.store.root)
    files = {str(p.relative_to(root)): p.stat().st_size
             for p in sorted(root.rglob("*")) if p.is_file()}
    return {"rows": rows, "files": files}


def problem(resp: Any, status: int, code: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem+json answer with this status and code; return its body."""
    text = resp.get_data(as_text=True)
    assert resp.status_code == status, text
    assert resp.mimetype == PROBLEM_JSON, (resp.mimetype, text)
    body: dict[str, Any] = json.loads(text)
    assert body["status"] == status, body
    assert body["code"] == code, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str), body
    assert isinstance(body["type"], str) and body["type"], body
    return body


def get_record(http: Any, key: str, record_id: str) -> dict[str, Any]:
    resp = http.get(f"/v1/records/{record_id}", headers=auth(key))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body: dict[str, Any] = resp.get_json()
    return body


def certificates_in_each_cms(pdf: bytes) -> list[list[bytes]]:
    """The DER certificates each embedded signature's CMS carries, in file order."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(io.BytesIO(pdf))
    return [[c.chosen.dump() for c in sig.signed_data["certificates"]]
            for sig in reader.embedded_signatures]


def assert_each_certificate_once(pdf: bytes) -> None:
    """Every CMS holds its signing certificate, and no certificate twice."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(io.BytesIO(pdf))
    for sig, certs in zip(reader.embedded_signatures, certificates_in_each_cms(pdf),
                          strict=True):
        assert len(certs) == len(set(certs)), f"{sig.field_name}: a certificate twice"
        assert sig.signer_cert.dump() in certs, f"{sig.field_name}: no signing certificate"
