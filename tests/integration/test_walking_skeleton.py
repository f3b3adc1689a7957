"""End to end with real parts: create -> teacher -> principal -> seal -> archived, then
outside checkers (pyhanko-cli, poppler's pdfsig, qpdf) and offline validation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import postgres_database
from tests.integration.helpers import (
    assert_each_certificate_once,
    metadata,
    sign,
    upload,
    verify,
)

pytestmark = [pytest.mark.integration, pytest.mark.tools]
PYHANKO = str(Path(sys.executable).parent / "pyhanko")
AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
ROLES = (("teacher", "school-1-teacher"), ("principal", "school-1-principal"),
         ("seal", "school-1-seal"))


def sign_all(http: Any, key: str, record_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for role, signer_key in ROLES:
        resp = sign(http, key, record_id, role, signer_key)
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
    return body


def adesverify(pdf: Path, trust: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PYHANKO, "sign", "adesverify", "--trust", str(trust),
                           "--trust-replace", *extra, str(pdf)],
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module", params=["file+sqlite", "s3+postgresql"])
def backends(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[dict[str, str]]:
    """The embedded default (filesystem store, SQLite), and the production shape: S3 with
    Object Lock (a real SeaweedFS) and PostgreSQL. The tests below run unchanged on both."""
    tmp = tmp_path_factory.mktemp("e2e")
    if request.param == "file+sqlite":
        yield {"HOCBA_STORE": str(tmp / "store"),
               "HOCBA_INDEX_URL": f"sqlite:///{tmp / 'index.sqlite3'}"}
        return
    from tests.seaweed import start_or_skip

    with postgres_database() as pg_url:
        server = start_or_skip()
        saved = {k: os.environ.get(k) for k in AWS_VARS}
        os.environ.update({"AWS_ACCESS_KEY_ID": server.access_key,
                           "AWS_SECRET_ACCESS_KEY": server.secret_key,
                           "AWS_DEFAULT_REGION": "us-east-1"})
        try:
            yield {"HOCBA_STORE": "s3://hocba-e2e/records",
                   "HOCBA_S3_ENDPOINT_URL": server.endpoint_url, "HOCBA_INDEX_URL": pg_url}
        finally:
            server.stop()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(scope="module")
def archived_records(backends: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
                     samples: dict[str, bytes], api_keys: dict[str, str],
                     service_env: dict[str, str], responder: Any) -> Iterator[dict[str, Any]]:
    """Both sample producers, through the real API, to archived finals (done once)."""
    from signer.http import create_app
    from signer.settings import load_settings

    responder.start()
    tmp = tmp_path_factory.mktemp("e2e-out")
    settings = load_settings({**service_env, **backends})
    app = create_app(settings)
    http = app.test_client()
    key = api_keys["school-1"]
    out: dict[str, Any] = {"app": app, "http": http, "dir": tmp, "records": {}}
    for name, pdf in samples.items():
        created = upload(http, key, pdf, metadata(name))
        assert created.status_code == 201, created.get_json()
        record = created.get_json()
        assert record["status"] == "awaiting_signatures"
        assert record["next_role"] == "teacher"
        final = sign_all(http, key, record["id"])
        doc = http.get(f"/v1/records/{record['id']}/document",
                       headers={"Authorization": f"Bearer {key}"})
        assert doc.status_code == 200
        path = tmp / f"final-{name}"
        path.write_bytes(doc.data)
        out["records"][name] = {"record": final, "pdf": doc.data, "path": path,
                                "original": pdf, "etag": doc.headers["ETag"]}
    yield out
    app.extensions["hocba"].close()


def test_record_is_archived_with_all_roles(archived_records: dict[str, Any]) -> None:
    for item in archived_records["records"].values():
        rec = item["record"]
        assert rec["status"] == "archived"
        assert [s["role"] for s in rec["signatures"]] == ["teacher", "principal", "seal"]
        assert all(s["status"] == "signed" for s in rec["signatures"])
        assert rec["next_role"] is None
        assert rec["archive"]["sha256"] == rec["document"]["sha256"]
        assert item["etag"].strip('"') == rec["archive"]["sha256"]
        # every revision is an incremental update: the upload is a byte prefix of the final
        assert item["pdf"].startswith(item["original"])


def test_pyhanko_cli_reports_three_valid_signatures(archived_records: dict[str, Any],
                                                    test_state: Path) -> None:
    for item in archived_records["records"].values():
        res = adesverify(item["path"], test_state / "pki" / "root.pem")
        assert res.returncode == 0, res.stdout + res.stderr
        lines = [ln for ln in res.stdout.splitlines() if ln.startswith("Sig_")]
        assert len(lines) == 3, res.stdout
        assert all(":INTACT:TRUSTED" in ln for ln in lines), res.stdout


def test_each_signature_carries_each_certificate_once(archived_records: dict[str, Any]
                                                      ) -> None:
    for item in archived_records["records"].values():
        assert_each_certificate_once(item["pdf"])


@pytest.mark.skipif(shutil.which("pdfsig") is None, reason="poppler-utils not installed")
def test_pdfsig_reports_every_digest_valid(archived_records: dict[str, Any]) -> None:
    for item in archived_records["records"].values():
        res = subprocess.run(["pdfsig", "-nocert", str(item["path"])],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert res.stdout.count("Signature Validation: Signature is Valid.") >= 3, res.stdout
        assert "Signature is Invalid" not in res.stdout


@pytest.mark.skipif(shutil.which("qpdf") is None, reason="qpdf not installed")
def test_qpdf_check_is_clean(archived_records: dict[str, Any]) -> None:
    for item in archived_records["records"].values():
        res = subprocess.run(["qpdf", "--check", str(item["path"])],
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "No syntax or stream encoding errors found" in res.stdout


def test_verify_endpoint_says_total_passed_b_lta(archived_records: dict[str, Any]) -> None:
    http = archived_records["http"]
    for item in archived_records["records"].values():
        resp = verify(http, item["pdf"])
        assert resp.status_code == 200
        report = resp.get_json()
        assert report["indication"] == "TOTAL_PASSED", report
        assert report["level"] == "PAdES-B-LTA"
        assert [s["role"] for s in report["signatures"]] == ["teacher", "principal", "seal"]
        assert all(s["intact"] and s["trusted"] for s in report["signatures"])
        assert report["document_timestamps"]
        assert report["archived"]["version"] == 1
        assert report["archived"]["verify_url"] == item["record"]["archive"]["verify_url"]


def test_flipped_byte_fails(archived_records: dict[str, Any]) -> None:
    item = next(iter(archived_records["records"].values()))
    pdf = bytearray(item["pdf"])
    pos = item["original"].find(b"stream") + 20  # inside the first page's content
    pdf[pos] ^= 0x01
    report = verify(archived_records["http"], bytes(pdf)).get_json()
    assert report["indication"] == "TOTAL_FAILED", report
    assert report["archived"] is None


def test_offline_validation_from_what_the_file_carries(archived_records: dict[str, Any],
                                                       responder: Any,
                                                       test_state: Path) -> None:
    """Service and responders stopped: the file and the trust anchor are enough."""
    responder.stop()
    try:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        for item in archived_records["records"].values():
            res = adesverify(item["path"], test_state / "pki" / "root.pem",
                             "--validation-time", now)
            assert res.returncode == 0, res.stdout + res.stderr
            lines = [ln for ln in res.stdout.splitlines() if ln.startswith("Sig_")]
            assert len(lines) == 3 and all(":INTACT:TRUSTED" in ln for ln in lines), res.stdout
            service = archived_records["app"].extensions["hocba"]
            report = service.verification.verify(item["pdf"])
            assert report["indication"] == "TOTAL_PASSED", report
            assert report["level"] == "PAdES-B-LTA"
    finally:
        responder.start()
