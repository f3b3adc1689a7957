"""Fixity audit through the API and the CLI: a record archived for real (teacher, principal,
seal), then one flipped byte in its archived object and one orphan object in the store.
Both are reported, by the admin job and by `hocba archive audit`, and land in the audit
log; nothing is deleted."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from archive.fixity import AUDIT_ACTION, ORPHAN_ACTION
from archive.store import Area
from signer.cli import main
from tests.integration.helpers import auth, metadata, problem, sign, upload

pytestmark = pytest.mark.integration
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"
ROLES = (("teacher", "school-1-teacher"), ("principal", "school-1-principal"),
         ("seal", "school-1-seal"))
ORPHAN = b"%PDF-1.7\n% bytes put before a crash, never committed to the index\n%%EOF\n"


def wait_audit(http: Any, key: str, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = http.get(f"/v1/admin/audits/{job_id}", headers=auth(key))
        assert resp.status_code == 200, resp.get_json()
        body = resp.get_json()
        if body["status"] == "finished":
            return body
        time.sleep(0.2)
    raise AssertionError(f"audit {job_id} did not finish: {body}")


def flip_byte(path: Path, offset: int = 1000) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    os.chmod(path, 0o444)  # locked again: only the bytes are wrong


def test_audit_finds_a_flipped_byte_and_an_orphan(app: Any, http: Any,
                                                   api_keys: dict[str, str],
                                                   samples: dict[str, bytes],
                                                   service_settings: Any) -> None:
    school, admin = api_keys["school-1"], api_keys["admin"]
    created = upload(http, school, samples[SAMPLE], metadata(SAMPLE))
    assert created.status_code == 201, created.get_json()
    record_id = created.get_json()["id"]
    for role, signer_key in ROLES:
        resp = sign(http, school, record_id, role, signer_key)
        assert resp.status_code == 200, resp.get_json()
    record = resp.get_json()
    assert record["status"] == "archived"
    final = record["archive"]["sha256"]

    hocba = app.extensions["hocba"]
    clean = http.post("/v1/admin/audits", headers=auth(admin))
    assert clean.status_code == 202, clean.get_json()
    clean_report = wait_audit(http, admin, clean.get_json()["job_id"])["report"]
    assert clean_report["ok"] is True, clean_report
    assert clean_report["counts"]["released"] == 4  # original + 3 revisions, released
    assert clean_report["counts"]["intact"] == 1

    flip_byte(hocba.store.path_of(final, Area.ARCHIVE))
    orphan = hocba.store.put(ORPHAN, Area.WORKING).sha256

    assert http.post("/v1/admin/audits", headers=auth(school)).status_code == 403
    started = http.post("/v1/admin/audits", headers=auth(admin))
    assert started.status_code == 202, started.get_json()
    job_id = started.get_json()["job_id"]
    assert started.get_json()["total"] == 5

    body = wait_audit(http, admin, job_id)

    assert (body["kind"], body["total"], body["done"]) == ("fixity_audit", 5, 5)
    report = body["report"]
    assert report["ok"] is False
    assert [p["sha256"] for p in report["mismatched"]] == [final]
    assert report["mismatched"][0]["record_id"] == record_id
    assert [o["sha256"] for o in report["orphans"]] == [orphan]
    assert report["orphans"][0]["extends_record"] is None
    assert report["missing"] == [] and report["lock_problems"] == []
    assert body["error"] is None

    rows = hocba.index.list_audit(limit=10_000)
    [report_row] = [r for r in rows if r.action == AUDIT_ACTION
                    and r.detail.get("job_id") == job_id]
    assert report_row.seq == body["audit_seq"]
    assert [p["sha256"] for p in report_row.detail["mismatched"]] == [final]
    orphan_rows = [r for r in rows if r.action == ORPHAN_ACTION]
    assert [(r.detail["sha256"], r.detail["area"], r.detail["size"]) for r in orphan_rows] == [
        (orphan, "working", len(ORPHAN))]
    assert hocba.index.verify_audit_chain() == (True, None)
    assert hocba.store.exists(orphan, Area.WORKING)  # reported, never deleted

    problem(http.get(f"/v1/admin/audits/{job_id}", headers=auth(school)), 403,
            "scope_missing")
    problem(http.get("/v1/admin/audits/no-such-job", headers=auth(admin)), 404,
            "audit_not_found")

    # The same audit from the command line, over the same store and index.
    env = {"HOCBA_STORE": str(service_settings.store),
           "HOCBA_INDEX_URL": service_settings.index_url}
    result = CliRunner().invoke(main, ["archive", "audit"], env=env)
    assert result.exit_code == 1, result.output
    assert "1 mismatched" in result.stdout and "1 orphans" in result.stdout, result.stdout
    assert f"mismatched\tarchive/{final}" in result.stdout
    assert f"orphan\tworking/{orphan}" in result.stdout
    assert "objects checked" in result.stderr  # the progress bar

    as_json = CliRunner().invoke(main, ["archive", "audit", "--json"], env=env)
    assert as_json.exit_code == 1, as_json.output
    cli_report = json.loads(as_json.stdout)
    assert [p["sha256"] for p in cli_report["mismatched"]] == [final]
    assert [o["sha256"] for o in cli_report["orphans"]] == [orphan]
    cli_rows = [r for r in hocba.index.list_audit(limit=10_000)
                if r.action == AUDIT_ACTION and r.actor.startswith("cli:")]
    assert len(cli_rows) == 2


def test_cli_refuses_an_index_that_does_not_exist(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["archive", "audit"],
        env={"HOCBA_STORE": str(tmp_path / "store"),
             "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'nowhere.sqlite3'}"})
    assert result.exit_code == 2, result.output
    assert "no such file" in result.output
    assert not (tmp_path / "nowhere.sqlite3").exists()
