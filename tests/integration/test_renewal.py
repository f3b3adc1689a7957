"""Renewal of archived records (signer.service.renewals): a new document timestamp over
the newest version, as a new locked version (reason `renewed`), through the service, the
API and `hocba archive renew` — the CLI and the responder run under libfaketime in 2033,
when the records are due, and the CLI is killed (SIGKILL) mid-run and run again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signer.cli import wait_for_port
from signer.pades.validate import verify_pdf_sync
from signer.truststore import load_trust_store
from tests.conftest import REPO, RESPONDER_PORT, Responder
from tests.integration.helpers import auth, create_archived, metadata

pytestmark = pytest.mark.integration

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
HOCBA = str(Path(sys.executable).with_name("hocba"))
FPDF2 = "hoc-ba-tieu-hoc-fpdf2.pdf"


def faked(env: dict[str, str], when: str) -> dict[str, str]:
    if not Path(LIBFAKETIME).exists():
        pytest.fail("libfaketime missing: install Debian's faketime (make deps)")
    return {**env, "LD_PRELOAD": LIBFAKETIME, "FAKETIME": f"@{when}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@contextmanager
def responder_at(responder: Responder, when: str) -> Iterator[None]:
    """The dev responder on its usual port (certificates name it), at a faked date."""
    responder.stop()
    proc = subprocess.Popen(
        [sys.executable, "-m", "certs.responder", "--state", str(responder.state),
         "--port", str(RESPONDER_PORT)], cwd=REPO, env=faked(dict(os.environ), when))
    try:
        wait_for_port(RESPONDER_PORT)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        responder.start()


def cli_env(service_env: dict[str, str], service_settings: Any) -> dict[str, str]:
    return {**os.environ, **service_env, "HOCBA_STORE": str(service_settings.store),
            "HOCBA_INDEX_URL": service_settings.index_url}


def test_renew_one_record_through_the_service(
        app: Any, http: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        test_state: Path) -> None:
    key = api_keys["school-1"]
    record = create_archived(http, key, samples[FPDF2], metadata(FPDF2))
    hocba = app.extensions["hocba"]
    renewals = hocba.renewals
    [first] = hocba.index.list_versions(record["id"])
    # recorded at archiving: the dev TSA certificate's expiry
    assert first.timestamp_valid_until == datetime(2035, 1, 1, tzinfo=UTC)
    # not due under the policy's margin (two years) in 2026, due with ten years
    assert [v.record_id for v in renewals.due()] == []
    due = list(renewals.due(margin=timedelta(days=3650)))
    assert [v.record_id for v in due] == [record["id"]]

    renewed = renewals.renew("test", due[0])
    assert (renewed.version, renewed.reason) == (2, "renewed")
    body = http.get(f"/v1/archive/records/{record['id']}/versions", headers=auth(key))
    assert [(v["version"], v["reason"]) for v in body.get_json()] == [
        (1, "archived"), (2, "renewed")]
    v2 = http.get(f"/v1/archive/records/{record['id']}/versions/2/document",
                  headers=auth(key))
    assert v2.status_code == 200
    original = http.get(f"/v1/archive/records/{record['id']}/versions/1/document",
                        headers=auth(key)).data
    assert v2.data.startswith(original)  # an incremental update: version 1 is kept inside
    trust = load_trust_store(test_state / "trust.toml")
    report = verify_pdf_sync(v2.data, trust_roots=trust, allow_fetching=False)
    assert report.passed, report
    assert len(report.document_timestamps) == 2
    assert report.level == "PAdES-B-LTA"
    audit = [r.action for r in hocba.index.list_audit(record["id"], limit=100)]
    assert "record.renewed" in audit
    # a stale view (the version renewed meanwhile) is refused, not renewed twice
    with pytest.raises(Exception) as stale:
        renewals.renew("test", due[0])
    assert getattr(stale.value, "code", None) == "stale_revision"
    assert len(hocba.index.list_versions(record["id"])) == 2

    counts = http.get("/v1/admin/renewals", headers=auth(api_keys["admin"]))
    assert counts.status_code == 200
    assert counts.get_json()["margin_days"] == 730
    assert counts.get_json()["overdue"] == 0
    assert http.get("/v1/admin/renewals", headers=auth(key)).status_code == 403
    metrics = http.get("/metrics").get_data(as_text=True)
    assert 'hocba_records_renewal{state="overdue"} 0' in metrics
    assert 'hocba_records_renewal{state="due"} 0' in metrics

    # as a job: nothing is due in 2026 under the policy, and the job says so
    started = http.post("/v1/admin/renewals", headers=auth(api_keys["admin"]))
    assert started.status_code == 202, started.get_data(as_text=True)
    job_id = started.get_json()["job_id"]
    for _ in range(100):
        job = http.get(f"/v1/admin/renewals/{job_id}",
                       headers=auth(api_keys["admin"])).get_json()
        if job["status"] == "finished":
            break
        time.sleep(0.1)
    assert (job["kind"], job["status"], job["total"], job["failed"]) == (
        "renewal", "finished", 0, [])


def test_cli_renews_in_2033_survives_sigkill_and_is_idempotent(
        app: Any, http: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        service_env: dict[str, str], service_settings: Any, responder: Responder,
        test_state: Path) -> None:
    key = api_keys["school-1"]
    ids = []
    for n in range(5):
        meta = metadata(FPDF2)
        meta["student"] = {**meta["student"], "id_number": f"0012170{n:05d}",
                           "student_code": f"HS-R{n}"}
        ids.append(create_archived(http, key, samples[FPDF2], meta)["id"])
    index = app.extensions["hocba"].index
    env = faked(cli_env(service_env, service_settings), "2033-06-01 00:00:00")

    with responder_at(responder, "2033-06-01 00:00:00"):
        dry = subprocess.run([HOCBA, "archive", "renew", "--dry-run", "--json"], env=env,
                             capture_output=True, text=True, timeout=120, cwd=REPO)
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout) == {"due": 5, "renewed": 0, "failed": []}

        run = subprocess.Popen([HOCBA, "archive", "renew", "--json"], env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(len(index.list_versions(rid)) > 1 for rid in ids):
                break
            time.sleep(0.05)
        run.kill()  # SIGKILL, mid-run
        run.wait()
        renewed_before = sum(len(index.list_versions(rid)) > 1 for rid in ids)
        assert 1 <= renewed_before < 5, "the kill came too late to be mid-run"

        again = subprocess.run([HOCBA, "archive", "renew", "--json"], env=env,
                               capture_output=True, text=True, timeout=300, cwd=REPO)
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == {"due": 5 - renewed_before,
                                            "renewed": 5 - renewed_before, "failed": []}
        third = subprocess.run([HOCBA, "archive", "renew", "--json"], env=env,
                               capture_output=True, text=True, timeout=120, cwd=REPO)
        assert json.loads(third.stdout)["due"] == 0  # renewed records are no longer due

        trust = test_state / "trust.toml"
        for rid in ids:
            versions = index.list_versions(rid)
            assert [(v.version, v.reason) for v in versions] == [(1, "archived"),
                                                                   (2, "renewed")]
            # the new timestamp is by the TSA certificate of 2033 (valid until 2045)
            assert versions[1].timestamp_valid_until == datetime(2045, 1, 1, tzinfo=UTC)
            pdf = app.extensions["hocba"].documents.get(versions[1].sha256,
                                                        _archive_area())
            path = Path(service_settings.store).parent / f"{rid}-v2.pdf"
            path.write_bytes(pdf)
            checked = subprocess.run(
                [HOCBA, "verify", "--json", "--trust", str(trust), str(path)],
                env=faked(dict(os.environ), "2033-06-02 00:00:00"), capture_output=True,
                text=True, timeout=120, cwd=REPO)
            report = json.loads(checked.stdout)
            assert checked.returncode == 0, (report["indication"], report["explanation"])
            assert len(report["document_timestamps"]) == 2


def _archive_area() -> Any:
    from archive.store import Area

    return Area.ARCHIVE
