"""A record larger than Werkzeug keeps in memory (500 KB): the upload reaches the service
as a spooled file, is checked, stored and signed from files, and comes out valid; the
idempotency fingerprint of a file upload behaves as that of bytes."""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from tests.integration.helpers import auth, metadata, problem, sign

pytestmark = pytest.mark.integration
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"


def larger(pdf: bytes, megabytes: int = 3) -> bytes:
    """The sample plus an incompressible stream referenced from the catalog."""
    w = IncrementalPdfFileWriter(io.BytesIO(pdf))
    payload = generic.StreamObject(stream_data=os.urandom(megabytes * 1024 * 1024))
    w.root["/Attachment"] = w.add_object(payload)
    w.update_root()
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


def post_multipart(http: Any, path: str, fields: dict[str, Any],
                   headers: dict[str, str] | None = None) -> Any:
    """The body encoded here: the test client would spool a large body to a temporary
    file it never closes; the service still spools the large part, as in production."""
    boundary, body = encode_multipart(fields)
    return http.post(path, data=body, headers=headers or {},
                     content_type=f"multipart/form-data; boundary={boundary}")


def upload(http: Any, key: str, pdf: bytes, meta: dict[str, Any],
           headers: dict[str, str] | None = None) -> Any:
    return post_multipart(http, "/v1/records", {
        "document": FileStorage(io.BytesIO(pdf), "record.pdf", content_type="application/pdf"),
        "metadata": json.dumps(meta, ensure_ascii=False)}, {**auth(key), **(headers or {})})


def verify(http: Any, pdf: bytes) -> Any:
    return post_multipart(http, "/v1/verify", {"document": FileStorage(io.BytesIO(pdf), "x.pdf")})


def test_a_large_record_is_signed_from_files(http: Any, api_keys: dict[str, str],
                                             samples: dict[str, bytes]) -> None:
    key = api_keys["school-1"]
    pdf = larger(samples[SAMPLE])
    assert len(pdf) > 3 * 1024 * 1024
    meta = metadata(SAMPLE, student={"id_number": "001217055501", "full_name": "Lê Văn Lớn",
                                     "date_of_birth": "2017-11-20", "student_code": "HS-L1"})
    idem = {"Idempotency-Key": "large-upload-1"}
    created = upload(http, key, pdf, meta, idem)
    assert created.status_code == 201, created.get_data(as_text=True)
    rid = created.get_json()["id"]
    # the stored document is the upload with the verification stamp (QR code) appended as
    # an incremental update: larger by the stamp only
    assert len(pdf) < created.get_json()["document"]["size"] < len(pdf) + 64 * 1024
    again = upload(http, key, pdf, meta, idem)  # the fingerprint of the same file: a replay
    assert again.status_code == 201 and again.get_json()["id"] == rid
    changed = pdf[:-100] + b" " * 1 + pdf[-99:]
    problem(upload(http, key, changed, meta, idem), 409, "idempotency_conflict")

    for role in ("teacher", "principal", "seal"):
        r = sign(http, key, rid, role, f"school-1-{role}")
        assert r.status_code == 200, r.get_json()
    assert r.get_json()["status"] == "archived"
    final = http.get(f"/v1/records/{rid}/document", headers=auth(key))
    assert final.status_code == 200 and final.data.startswith(pdf)
    report = verify(http, final.data).get_json()
    assert report["indication"] == "TOTAL_PASSED" and report["level"] == "PAdES-B-LTA"
