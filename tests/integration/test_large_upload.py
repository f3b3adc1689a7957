"""A record larger than Werkzeug keeps in memory (500 KB): the upload reaches the service
as a spooled file, is checked, stored and signed from files, and comes out valid; the
idempotency fingerprint of a file upload behaves as that of bytes."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from tests.integration.helpers import auth, metadata, problem, sign

pytestmark = pytest.mark.integration
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"
REPO = Path(__file__).resolve().parents[2]


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


# --- memory per request -----------------------------------------------------------------

MiB = 1024 * 1024
# Peak RSS a process may gain creating one record, per MiB of upload (measured 1.0: the
# qpdf screen holds the upload once; README), and for a refusal made on cheap counts
# (measured 0).
RSS_PER_UPLOAD_MB = 2.0
RSS_REFUSAL_MB = 16

_CHILD = r"""
import json, sys, time
from signer import fixes
fixes.apply()
from signer.errors import HocbaError
from signer.service.actors import Actor
from signer.service.core import Hocba
from signer.settings import load_settings

args = json.loads(sys.argv[1])
svc = Hocba(load_settings(args["env"]))
actor = Actor.of(svc.clients.authenticate(args["api_key"]))
with open(args["warmup"], "rb") as f:  # fonts, policies, the first stamp: not per request
    svc.records.create(actor, f, json.dumps(args["warmup_meta"]))


def status_kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


with open("/proc/self/clear_refs", "w") as f:  # the peak (VmHWM) starts again from here
    f.write("5")
before = status_kib("VmRSS")
started = time.monotonic()
with open(args["pdf"], "rb") as f:
    try:
        svc.records.create(actor, f, json.dumps(args["meta"]))
        outcome = "created"
    except HocbaError as e:
        outcome = e.code
print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - started,
                  "before_kib": before, "peak_kib": status_kib("VmHWM")}))
"""


def page_bomb(pages: int = 1_200_000, per_stream: int = 10_000) -> bytes:
    """A small PDF listing `pages` tiny pages: the catalog (1), the page tree (2, its
    /Kids compressed in a stream of their own), the pages in object streams of
    `per_stream`, one cross-reference stream (the issue's 21.6 MB, 1.2 million pages)."""
    import struct
    import zlib

    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    where: dict[int, tuple[int, int, int]] = {}  # number -> (xref type, field 2, field 3)

    def put(number: int, body: bytes) -> None:
        where[number] = (1, len(out), 0)
        out.extend(b"%d 0 obj\n%s\nendobj\n" % (number, body))

    def flate(number: int, data: bytes, extra: bytes = b"") -> None:
        packed = zlib.compress(data)
        put(number, b"<< /Length %d /Filter /FlateDecode%s >>\nstream\n%s\nendstream"
            % (len(packed), extra, packed))

    first, after = 3, 3 + pages
    put(1, b"<< /Type /Catalog /Pages 2 0 R >>")
    put(2, b"<< /Type /Pages /Count %d /Kids %d 0 R >>" % (pages, after))
    flate(after, b"[" + b" ".join(b"%d 0 R" % n for n in range(first, after)) + b"]")
    number = after + 1
    for start in range(first, after, per_stream):
        members = range(start, min(start + per_stream, after))
        body = b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>"
        head = b" ".join(b"%d %d" % (n, i * (len(body) + 1))
                         for i, n in enumerate(members)) + b"\n"
        flate(number, head + b"\n".join(body for _ in members),
              b" /Type /ObjStm /N %d /First %d" % (len(members), len(head)))
        for i, n in enumerate(members):
            where[n] = (2, number, i)
        number += 1
    where[number] = (1, len(out), 0)
    rows = b"\0\0\0\0\0\xff\xff" + b"".join(struct.pack(">BIH", *where[n])
                                           for n in range(1, number + 1))
    packed = zlib.compress(rows)
    xref_at = len(out)
    out.extend(b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R /Length %d "
               b"/Filter /FlateDecode >>\nstream\n%s\nendstream\nendobj\nstartxref\n%d\n"
               b"%%%%EOF\n" % (number, number + 1, len(packed), packed, xref_at))
    return bytes(out)


def peak_rss_creating(pdf: bytes, service_env: dict[str, str], api_keys: dict[str, str],
                      samples: dict[str, bytes], tmp_path: Path) -> dict[str, Any]:
    """Create one record from `pdf` in a fresh process (after a warm-up record): its
    outcome, time, and peak RSS before and after."""
    import subprocess
    import sys

    (tmp_path / "upload.pdf").write_bytes(pdf)
    (tmp_path / "warmup.pdf").write_bytes(samples[SAMPLE])
    student = metadata(SAMPLE)["student"]
    args = {"env": {**service_env, "HOCBA_STORE": str(tmp_path / "store"),
                    "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}"},
            "api_key": api_keys["school-1"], "pdf": str(tmp_path / "upload.pdf"),
            "warmup": str(tmp_path / "warmup.pdf"), "warmup_meta": metadata(SAMPLE),
            "meta": metadata(SAMPLE, student={**student, "id_number": "001217055502"})}
    res = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    measured: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    measured["gained_mb"] = (measured["peak_kib"] - measured["before_kib"]) / 1024
    return measured


@pytest.mark.slow
def test_peak_rss_of_the_largest_accepted_upload(service_env: dict[str, str],
                                                 api_keys: dict[str, str],
                                                 samples: dict[str, bytes],
                                                 tmp_path: Path) -> None:
    from signer.settings import Settings

    limit = Settings().max_pdf_bytes
    pdf = larger(samples[SAMPLE], megabytes=limit // MiB - 1)
    assert limit - 2 * MiB < len(pdf) <= limit
    measured = peak_rss_creating(pdf, service_env, api_keys, samples, tmp_path)
    upload_mb = len(pdf) / MiB
    print(f"largest upload {upload_mb:.1f} MiB: {measured}, "
          f"{measured['gained_mb'] / upload_mb:.2f} MiB RSS per MiB")
    assert measured["outcome"] == "created", measured
    assert measured["gained_mb"] <= RSS_PER_UPLOAD_MB * upload_mb, measured


@pytest.mark.slow
def test_a_page_bomb_is_refused_on_counts(service_env: dict[str, str],
                                          api_keys: dict[str, str],
                                          samples: dict[str, bytes], tmp_path: Path) -> None:
    bomb = page_bomb()
    measured = peak_rss_creating(bomb, service_env, api_keys, samples, tmp_path)
    print(f"page bomb {len(bomb) / MiB:.1f} MiB: {measured}")
    assert measured["outcome"] == "pdf_too_complex", measured
    assert measured["seconds"] < 5, measured
    assert measured["gained_mb"] <= RSS_REFUSAL_MB, measured
