"""Fixity audit over a FilesystemStore and a real index (SQLite; PostgreSQL when reachable):
every indexed object read back and hashed, archive locks read back, unindexed objects
reported and audited, never deleted."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from archive.fixity import (
    AUDIT_ACTION,
    AUDIT_FAILED_ACTION,
    FIXITY_AUDIT,
    ORPHAN_ACTION,
    FixityReport,
    _merge_unindexed,
    _Unordered,
    audit,
    create_audit_job,
    find_audit_result,
    last_audit_seq,
    run_audit_job,
)
from archive.index import JOB_FINISHED, AuditRow, Index, RecordRow
from archive.store import Area, FilesystemStore, StoredObject

PUPILS = ("001215012345", "001215054321")
ORIGINAL = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
TEACHER = ORIGINAL + b"2 0 obj\n<< /Sig /teacher >>\nendobj\n%%EOF\n"
FINAL = TEACHER + b"3 0 obj\n<< /DocTimeStamp >>\nendobj\n%%EOF\n"
OTHER = b"%PDF-1.4\n1 0 obj\n<< /Other >>\nendobj\n%%EOF\r\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "store")


def _put_record(index: Index, store: FilesystemStore, original: bytes, pupil: str) -> RecordRow:
    stored = store.put(original, Area.WORKING)
    return index.create_record(
        tenant="DEMO-SCHOOL-1", school_code="DEMO-SCHOOL-1", school_name="Trường Demo 1",
        record_type="hoc_ba_tieu_hoc", policy="hoc_ba_tieu_hoc@1", student_id_number=pupil,
        school_year="2024-2025", metadata_json="{}", original=stored, actor="school-1",
        audit_detail={"sha256": stored.sha256})


def _sign(index: Index, store: FilesystemStore, record: RecordRow, data: bytes) -> RecordRow:
    stored = store.put(data, Area.WORKING)
    return index.add_signature(
        record.id, record.current_sha256, stored, role="teacher", position=0,
        signer_subject="CN=teacher", signer_issuer="CN=Demo CA", signer_serial="1f",
        field_name="Sig_teacher", signed_at=datetime(2025, 5, 20, 9, 0, tzinfo=UTC),
        actor="school-1", audit_detail={"role": "teacher"})


@pytest.fixture
def archive_state(index: Index, store: FilesystemStore) -> dict[str, Any]:
    """One archived record (its working objects released, as the service does) and one
    record awaiting signatures (its original still in WORKING)."""
    archived = _sign(index, store, _put_record(index, store, ORIGINAL, PUPILS[0]), TEACHER)
    final: StoredObject = store.put_archived(FINAL)
    archived = index.mark_archived(archived.id, archived.current_sha256, final,
                                   actor="school-1", audit_detail={"sha256": final.sha256})
    for working in (ORIGINAL, TEACHER):
        store.release_working(sha(working), final.sha256)
    awaiting = _put_record(index, store, OTHER, PUPILS[1])
    return {"archived": archived, "awaiting": awaiting}


def audit_rows(index: Index, action: str) -> list[AuditRow]:
    return [row for row in index.list_audit(limit=10_000) if row.action == action]


def flip_byte(path: Path, offset: int = 10) -> None:
    mode = path.stat().st_mode
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    os.chmod(path, mode & 0o777)


def test_clean_store_has_no_problems(index: Index, store: FilesystemStore,
                                     archive_state: dict[str, Any]) -> None:
    seen: list[tuple[int, int]] = []

    report = audit(store, index, progress=lambda done, total: seen.append((done, total)))

    assert report.ok, report.as_dict()
    assert report.counts() == {"checked": 4, "intact": 2, "released": 2, "store_objects": 2,
                               "missing": 0, "mismatched": 0, "unreadable": 0,
                               "lock_problems": 0, "orphans": 0}
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)
    [row] = audit_rows(index, AUDIT_ACTION)
    assert row.detail["ok"] is True
    assert row.detail["counts"] == report.counts()
    assert index.verify_audit_chain() == (True, None)


def test_flipped_byte_of_an_archived_object_is_mismatched(
        index: Index, store: FilesystemStore, archive_state: dict[str, Any]) -> None:
    final = archive_state["archived"].current_sha256
    flip_byte(store.path_of(final, Area.ARCHIVE))

    report = audit(store, index)

    assert not report.ok
    assert [(p.sha256, p.area, p.record_id) for p in report.mismatched] == [
        (final, "archive", archive_state["archived"].id)]
    assert report.missing == () and report.orphans == () and report.lock_problems == ()
    [row] = audit_rows(index, AUDIT_ACTION)
    assert [p["sha256"] for p in row.detail["mismatched"]] == [final]
    assert row.detail["counts"]["mismatched"] == 1


def test_removed_file_is_missing(index: Index, store: FilesystemStore,
                                 archive_state: dict[str, Any]) -> None:
    awaiting = archive_state["awaiting"]
    store.path_of(awaiting.current_sha256, Area.WORKING).unlink()

    report = audit(store, index)

    assert [(p.sha256, p.area, p.record_id, p.kind) for p in report.missing] == [
        (awaiting.current_sha256, "working", awaiting.id, "original")]
    assert report.released == 2  # the archived record's working objects: not missing


def test_removed_final_makes_released_working_objects_missing_too(
        index: Index, store: FilesystemStore, archive_state: dict[str, Any]) -> None:
    final = archive_state["archived"].current_sha256
    path = store.path_of(final, Area.ARCHIVE)
    path.unlink()

    report = audit(store, index)

    assert {p.sha256 for p in report.missing} == {final, sha(ORIGINAL), sha(TEACHER)}
    assert report.released == 0


def test_unlocked_archive_object_is_a_lock_problem(
        index: Index, store: FilesystemStore, archive_state: dict[str, Any]) -> None:
    final = archive_state["archived"].current_sha256
    os.chmod(store.path_of(final, Area.ARCHIVE), 0o644)

    report = audit(store, index)

    assert [(p.sha256, p.mode) for p in report.lock_problems] == [(final, "none")]
    assert report.mismatched == ()
    assert not report.ok


def test_orphan_is_reported_audited_and_kept(index: Index, store: FilesystemStore,
                                             archive_state: dict[str, Any]) -> None:
    stray = b"bytes put just before a crash, never indexed"
    orphan = store.put(stray, Area.WORKING)

    report = audit(store, index)

    assert [(o.sha256, o.area, o.size, o.extends_record) for o in report.orphans] == [
        (orphan.sha256, "working", len(stray), None)]
    assert report.store_objects == 3
    [row] = audit_rows(index, ORPHAN_ACTION)
    assert row.detail == {"sha256": orphan.sha256, "area": "working", "size": len(stray),
                          "extends_record": None}
    [summary] = audit_rows(index, AUDIT_ACTION)
    assert [o["sha256"] for o in summary.detail["orphans"]] == [orphan.sha256]
    assert summary.seq > row.seq
    assert index.verify_audit_chain() == (True, None)
    assert store.get(orphan.sha256, Area.WORKING) == stray  # never deleted


def test_uncommitted_signed_revision_names_the_record_it_extends(
        index: Index, store: FilesystemStore, archive_state: dict[str, Any]) -> None:
    awaiting = archive_state["awaiting"]
    revision = OTHER + b"2 0 obj\n<< /Sig /teacher >>\nendobj\n%%EOF\n"
    store.put(revision, Area.WORKING)  # the step crashed before its index transaction
    final_orphan = store.put(revision + b"3 0 obj\n<< /TS >>\nendobj\n%%EOF\n",
                             Area.ARCHIVE)  # and a final for it, also never committed

    report = audit(store, index)

    assert {(o.sha256, o.area, o.extends_record) for o in report.orphans} == {
        (sha(revision), "working", awaiting.id),
        (final_orphan.sha256, "archive", awaiting.id)}
    rows = audit_rows(index, ORPHAN_ACTION)
    assert {(r.record_id, r.tenant) for r in rows} == {(awaiting.id, "DEMO-SCHOOL-1")}
    assert {r.detail["extends_record"] for r in rows} == {awaiting.id}


def test_a_pdf_extending_an_archived_record_extends_nothing(
        index: Index, store: FilesystemStore, archive_state: dict[str, Any]) -> None:
    store.put(FINAL + b"4 0 obj\n<< /Late >>\nendobj\n%%EOF\n", Area.WORKING)

    [orphan] = audit(store, index).orphans

    assert orphan.extends_record is None


class ReversedStore(FilesystemStore):
    """A store that lists its names in no useful order."""

    def iter_names(self, area: Area) -> Iterator[str]:
        return iter(sorted(super().iter_names(area), reverse=True))


def test_orphans_found_when_the_store_lists_out_of_order(
        index: Index, store: FilesystemStore, archive_state: dict[str, Any]) -> None:
    strays = sorted(store.put(bytes([i]) * 10, Area.WORKING).sha256 for i in range(5))

    report = audit(ReversedStore(store.root), index)

    assert sorted(o.sha256 for o in report.orphans) == strays


def test_merge_finds_names_without_rows_and_refuses_disorder() -> None:
    assert _merge_unindexed(["a", "b", "c", "e"], ["b", "d", "e"]) == (["a", "c"], 4)
    assert _merge_unindexed([], ["a"]) == ([], 0)
    assert _merge_unindexed(["a", "b"], []) == (["a", "b"], 2)
    with pytest.raises(_Unordered):
        _merge_unindexed(["b", "a"], [])
    with pytest.raises(_Unordered):
        _merge_unindexed(["c", "d"], ["b", "a", "z"])


def test_report_as_dict_is_json_and_caps_lists(index: Index, store: FilesystemStore) -> None:
    for i in range(3):
        store.put(bytes([i]) * 3, Area.ARCHIVE)

    report: FixityReport = audit(store, index)

    full = report.as_dict()
    assert json.loads(json.dumps(full)) == full
    assert full["counts"]["orphans"] == 3 and not full["truncated"]
    capped = report.as_dict(limit=1)
    assert len(capped["orphans"]) == 1 and capped["truncated"]
    assert capped["counts"]["orphans"] == 3


def test_last_audit_seq(index: Index) -> None:
    assert last_audit_seq(index) == 0
    for n in range(1, 12):
        index.append_audit("t", None, "test.row", None, {"n": n})
        assert last_audit_seq(index) == n


def test_audit_as_a_job(index: Index, store: FilesystemStore,
                        archive_state: dict[str, Any]) -> None:
    flip_byte(store.path_of(archive_state["archived"].current_sha256, Area.ARCHIVE))
    job = create_audit_job(index, tenant="DEMO-DEPT", actor="client:admin")
    assert (job.kind, job.total, job.status) == (FIXITY_AUDIT, 4, "queued")
    claimed = index.claim_job("worker-1", 60, kinds=(FIXITY_AUDIT,))
    assert claimed is not None and claimed.id == job.id
    assert find_audit_result(index, claimed) is None

    report = run_audit_job(store, index, claimed, owner="worker-1", lease_seconds=60,
                           progress_interval=0)

    assert report is not None and len(report.mismatched) == 1
    done = index.get_job(job.id)
    assert done is not None and (done.status, done.done, done.total) == (JOB_FINISHED, 4, 4)
    row = find_audit_result(index, done)
    assert row is not None and row.action == AUDIT_ACTION
    assert row.actor == "client:admin"
    assert row.detail["job_id"] == job.id
    assert row.detail["counts"] == report.counts()


def test_failed_audit_job_is_finished_with_the_reason(index: Index, tmp_path: Path) -> None:
    class Unreachable(FilesystemStore):
        def iter_names(self, area: Area) -> Iterator[str]:
            from archive.errors import ArchiveError

            raise ArchiveError("store cannot list", code="store_unavailable")

    job = create_audit_job(index, tenant="DEMO-DEPT", actor="client:admin")
    claimed = index.claim_job("worker-1", 60, kinds=(FIXITY_AUDIT,))
    assert claimed is not None

    assert run_audit_job(Unreachable(tmp_path / "s"), index, claimed, owner="worker-1",
                         lease_seconds=60) is None

    done = index.get_job(job.id)
    assert done is not None and done.status == JOB_FINISHED
    row = find_audit_result(index, done)
    assert row is not None and row.action == AUDIT_FAILED_ACTION
    assert row.detail["code"] == "store_unavailable"


def test_audit_job_taken_over_stops_without_a_report(
        index: Index, store: FilesystemStore, archive_state: dict[str, Any]) -> None:
    """Another worker claims the job once the lease lapsed: the audit stops, writes no
    report and leaves the job to the new owner."""
    import time

    job = create_audit_job(index, tenant="DEMO-DEPT", actor="client:admin")
    claimed = index.claim_job("worker-1", 1, kinds=(FIXITY_AUDIT,))
    assert claimed is not None

    class Slow(FilesystemStore):
        def get(self, sha256: str, area: Area) -> bytes:
            time.sleep(0.5)  # the lease is renewed every third of a second meanwhile
            return super().get(sha256, area)

    renew = index.renew_job_lease
    index.renew_job_lease = lambda job_id, owner, seconds: False  # type: ignore[method-assign]
    try:
        report = run_audit_job(Slow(store.root), index, claimed, owner="worker-1",
                               lease_seconds=1, progress_interval=0)
    finally:
        index.renew_job_lease = renew  # type: ignore[method-assign]

    assert report is None
    unfinished = index.get_job(job.id)
    assert unfinished is not None and unfinished.status != JOB_FINISHED
    assert find_audit_result(index, unfinished) is None
