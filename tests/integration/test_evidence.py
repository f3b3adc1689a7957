"""Evidence records (RFC 4998) for archived records, against the real dev TSA and
responders: built in batches, renewed (timestamp and hash tree), checked by hocba and by
Bouncy Castle (tests/ers/ErsCheck.java)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from archive.evidence import parse
from archive.store import Area
from tests.integration.helpers import create_archived, make_app, metadata

pytestmark = pytest.mark.integration

FPDF2 = "hoc-ba-tieu-hoc-fpdf2.pdf"


@pytest.fixture
def app(service_env: dict[str, str], responder: Any, tmp_path: Path) -> Iterator[Any]:
    responder.start()
    app = make_app(service_env, tmp_path)
    try:
        yield app
    finally:
        app.extensions["hocba"].close()


def archived(app: Any, key: str, pdf: bytes, n: int, start: int = 0) -> list[dict[str, Any]]:
    """`n` archived records of one pupil, one per school year (from 2024-2025 back)."""
    http = app.test_client()
    years = [2024 - start - i for i in range(n)]
    return [create_archived(http, key, pdf, metadata(
        FPDF2, school_year=f"{y}-{y + 1}",
        student={"id_number": f"0012{(y - 7) % 100:02d}000777", "full_name": "Phạm Gia Huy",
                 "date_of_birth": f"{y - 7}-11-20", "student_code": "HS-000777"}))
        for y in years]


def final_bytes(hocba: Any, record: dict[str, Any]) -> bytes:
    row = hocba.index.get_record(record["id"])
    return bytes(hocba.store.get(row.current_sha256, Area.ARCHIVE))


def check_with_bc(tmp_path: Path, data: bytes, der: bytes, name: str) -> dict[str, Any]:
    from tests.integration.bcers import bc_check

    (tmp_path / f"{name}.pdf").write_bytes(data)
    (tmp_path / f"{name}.ers").write_bytes(der)
    return bc_check(tmp_path / f"{name}.ers", tmp_path / f"{name}.pdf")


def test_build_renew_and_check(app: Any, api_keys: dict[str, str],
                               samples: dict[str, bytes], tmp_path: Path) -> None:
    hocba = app.extensions["hocba"]
    records = archived(app, api_keys["school-1"], samples[FPDF2], 3)
    assert hocba.index.count_without_evidence() == 3
    # a batch smaller than batch_size waits for max_wait unless asked for everything
    waiting = hocba.evidence.build("test")
    assert (waiting.built, waiting.waiting) == (0, 3)
    done = hocba.evidence.build("test", everything=True)
    assert (done.built, done.batches, done.timestamp_requests) == (3, 1, 1)
    assert hocba.index.count_without_evidence() == 0
    again = hocba.evidence.build("test", everything=True)
    assert (again.built, again.batches) == (0, 0)

    for n, record in enumerate(records):
        data = final_bytes(hocba, record)
        der = hocba.evidence.current_der(hocba.index.get_record(record["id"]).current_sha256)
        assert der is not None
        report = hocba.evidence.check(data, der)
        assert report.valid, report
        assert report.existed_at is not None
        assert not hocba.evidence.check(data + b"\n", der).valid
        bc = check_with_bc(tmp_path, data, der, f"v1-{n}")
        assert bc["valid"] and bc["present"], bc

    # timestamp renewal: everything is due with a margin past the TSA's expiry
    margin = timedelta(days=365 * 30)
    assert [n for _, n, _ in hocba.evidence.due(margin=margin)] == [3]
    renewed = hocba.evidence.renew("test", margin=margin)
    assert (renewed.renewed, renewed.timestamp_requests, renewed.failed) == (3, 1, [])
    for n, record in enumerate(records):
        data = final_bytes(hocba, record)
        der = hocba.evidence.current_der(hocba.index.get_record(record["id"]).current_sha256)
        assert der is not None
        chain = parse(der)["archive_time_stamp_sequence"]
        assert [len(c) for c in chain] == [2]
        report = hocba.evidence.check(data, der)
        assert report.valid, report
        assert len(report.timestamps) == 2
        bc = check_with_bc(tmp_path, data, der, f"v2-{n}")
        assert bc["valid"] and len(bc["timestamps"]) == 2, bc
    rows = hocba.index.evidence_of_record(records[0]["id"])
    assert [(r.generation, r.current) for r in rows] == [(1, False), (2, True)]


def test_api_package_and_metrics(app: Any, api_keys: dict[str, str],
                                 samples: dict[str, bytes], tmp_path: Path) -> None:
    import io
    import json
    import time
    import zipfile

    import bagit

    from tests.integration.helpers import auth

    http = app.test_client()
    key, admin = api_keys["school-1"], api_keys["admin"]
    [record] = archived(app, key, samples[FPDF2], 1)
    url = f"/v1/archive/records/{record['id']}/evidence"
    missing = http.get(url, headers=auth(key))
    assert missing.status_code == 404
    assert missing.get_json()["code"] == "evidence_not_found"
    counts = http.get("/v1/admin/evidence", headers=auth(admin)).get_json()
    assert (counts["missing"], counts["ok"], counts["batch_size"]) == (1, 0, 100000)
    assert http.get("/v1/admin/evidence", headers=auth(key)).status_code == 403
    bad = http.post("/v1/admin/evidence", headers=auth(admin), json={"all": "yes"})
    assert bad.status_code == 422, bad.get_data(as_text=True)

    started = http.post("/v1/admin/evidence", headers=auth(admin), json={"all": True})
    assert started.status_code == 202, started.get_data(as_text=True)
    job_id = started.get_json()["job_id"]
    for _ in range(300):
        job = http.get(f"/v1/admin/evidence/{job_id}", headers=auth(admin)).get_json()
        if job["status"] == "finished":
            break
        time.sleep(0.1)
    assert (job["kind"], job["status"], job["total"], job["done"], job["failed"]) == (
        "evidence", "finished", 1, 1, [])
    assert http.get(f"/v1/admin/evidence/{job_id}", headers=auth(key)).status_code == 403

    got = http.get(url, headers=auth(key))
    assert got.status_code == 200, got.get_data(as_text=True)
    assert got.mimetype == "application/octet-stream"
    other_school = http.get(url, headers=auth(api_keys["school-2"]))
    assert other_school.status_code == 404  # no existence probe across schools
    hocba = app.extensions["hocba"]
    data = final_bytes(hocba, record)
    bc = check_with_bc(tmp_path, data, got.data, "api")
    assert bc["valid"], bc
    # verifying the archived version: it passes on its own, so its evidence record is not
    # needed (checked when the file alone does not pass: the 2076 story)
    verified = http.post("/v1/verify", data={
        "document": (io.BytesIO(data), "record.pdf", "application/pdf")},
        content_type="multipart/form-data")
    assert verified.status_code == 200, verified.get_data(as_text=True)
    body = verified.get_json()
    assert body["indication"] == "TOTAL_PASSED"
    assert (body["proven_by"], body["evidence"]) == (None, None)
    metrics = http.get("/metrics").get_data(as_text=True)
    assert 'hocba_evidence{state="missing"} 0' in metrics
    assert 'hocba_evidence{state="ok"} 1' in metrics

    package = http.get(f"/v1/archive/records/{record['id']}/package", headers=auth(key))
    assert package.status_code == 200
    with zipfile.ZipFile(io.BytesIO(package.data)) as z:
        z.extractall(tmp_path / "bag")
    bag = bagit.Bag(str(tmp_path / "bag" / record["id"]))
    bag.validate()
    meta = json.loads((tmp_path / "bag" / record["id"] / "data" / "metadata.json")
                      .read_text(encoding="utf-8"))
    [listed] = meta["evidence_records"]
    assert (listed["file"], listed["version"], listed["generation"], listed["current"]) == (
        "data/evidence/v1-g1.ers", 1, 1, True)
    ers = tmp_path / "bag" / record["id"] / listed["file"]
    pdf = tmp_path / "bag" / record["id"] / "data" / "versions" / "v1.pdf"
    from tests.integration.bcers import bc_check

    assert bc_check(ers, pdf)["valid"]


def test_hash_tree_renewal(app: Any, api_keys: dict[str, str],
                           samples: dict[str, bytes], tmp_path: Path) -> None:
    """When the tree's hash algorithm weakens within the margin, the objects are rehashed
    under the policy's new algorithm and get a new chain (RFC 4998 5.3)."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from signer.algorithms import DatedAlgorithmPolicy, load_algorithm_policy

    hocba = app.extensions["hocba"]
    records = archived(app, api_keys["school-1"], samples[FPDF2], 3)
    assert hocba.evidence.build("test", everything=True).built == 3
    real = load_algorithm_policy()
    weak = DatedAlgorithmPolicy({**real.digests, "sha256": datetime(2027, 6, 1, tzinfo=UTC)},
                                real.key_rules)
    evidence = hocba.evidence
    evidence.policy = replace(evidence.policy, hash_algorithm="sha512")
    evidence.algorithms = weak
    due = evidence.due(margin=timedelta(days=365))
    assert [n for _, n, _ in due] == [3]
    done = evidence.renew("test", margin=timedelta(days=365))
    assert (done.renewed, done.timestamp_requests, done.failed) == (3, 1, [])
    for n, record in enumerate(records):
        data = final_bytes(hocba, record)
        der = evidence.current_der(hocba.index.get_record(record["id"]).current_sha256)
        assert der is not None
        sequence = parse(der)["archive_time_stamp_sequence"]
        assert [len(chain) for chain in sequence] == [1, 1]
        report = evidence.check(data, der)
        assert report.valid, report
        assert [t.algorithm for t in report.timestamps] == ["sha256", "sha512"]
        bc = check_with_bc(tmp_path, data, der, f"h-{n}")
        assert bc["valid"] and len(bc["timestamps"]) == 2, bc
    # then a timestamp renewal on the sha512 chain
    evidence.algorithms = real
    again = evidence.renew("test", margin=timedelta(days=365 * 30))
    assert again.renewed == 3
    der = evidence.current_der(hocba.index.get_record(records[0]["id"]).current_sha256)
    assert der is not None
    assert [len(c) for c in parse(der)["archive_time_stamp_sequence"]] == [1, 2]
    assert check_with_bc(tmp_path, final_bytes(hocba, records[0]), der, "h-t")["valid"]


def test_cli_survives_sigkill(app: Any, api_keys: dict[str, str],
                              samples: dict[str, bytes], service_env: dict[str, str],
                              tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    hocba = app.extensions["hocba"]
    records = archived(app, api_keys["school-1"], samples[FPDF2], 5)
    policy = tmp_path / "evidence.toml"
    policy.write_text('batch_size = 1\nmax_wait_minutes = 60\nhash_algorithm = "sha256"\n',
                      encoding="utf-8")
    env = {**os.environ, **service_env, "HOCBA_STORE": str(tmp_path / "store"),
           "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}",
           "HOCBA_EVIDENCE_POLICY": str(policy)}
    hocba_cli = str(Path(sys.executable).with_name("hocba"))
    run = subprocess.Popen([hocba_cli, "archive", "evidence", "--json"], env=env, cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and hocba.index.count_without_evidence() == 5:
        time.sleep(0.02)
    run.kill()  # SIGKILL, mid-run
    run.wait()
    left = hocba.index.count_without_evidence()
    assert 0 < left < 5, "the kill came too late to be mid-run"
    again = subprocess.run([hocba_cli, "archive", "evidence", "--json"], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["built"], summary["batches"], summary["failed"]) == (left, left, [])
    assert hocba.index.count_without_evidence() == 0
    for n, record in enumerate(records):
        sha = hocba.index.get_record(record["id"]).current_sha256
        rows = [r for r in hocba.index.evidence_of_record(record["id"])]
        assert [(r.object_sha256, r.generation) for r in rows] == [(sha, 1)]
        der = hocba.evidence.current_der(sha)
        assert der is not None
        data = final_bytes(hocba, record)
        assert hocba.evidence.check(data, der).valid
        assert check_with_bc(tmp_path, data, der, f"k-{n}")["valid"]


def test_job_runner_schedules_evidence_once(app: Any, api_keys: dict[str, str],
                                            samples: dict[str, bytes]) -> None:
    """Idle, the job runner queues one evidence job for what waited `max_wait`; a second
    scheduler (another worker) finds it queued and queues nothing."""
    import time
    from dataclasses import replace

    hocba = app.extensions["hocba"]
    archived(app, api_keys["school-1"], samples[FPDF2], 2)
    evidence = hocba.evidence
    assert evidence.schedule() is None  # a small batch, not waited max_wait yet
    evidence.policy = replace(evidence.policy, max_wait=timedelta(0))
    first = evidence.schedule()
    assert first is not None and first.total == 2
    assert evidence.schedule() is None  # one is queued already
    runner = hocba.jobs()
    runner.ensure_started()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and hocba.index.count_without_evidence():
        time.sleep(0.1)
    assert hocba.index.count_without_evidence() == 0
    job = hocba.index.get_job(first.id)
    while time.monotonic() < deadline and job.status != "finished":
        time.sleep(0.1)
        job = hocba.index.get_job(first.id)
    assert (job.status, job.done, job.failed) == ("finished", 2, [])
    # later archives are scheduled by the runner itself when it is idle
    runner.schedule_seconds = 0
    archived(app, api_keys["school-1"], samples[FPDF2], 1, start=5)
    runner._wake.set()
    while time.monotonic() < deadline and hocba.index.count_without_evidence():
        time.sleep(0.1)
    assert hocba.index.count_without_evidence() == 0
