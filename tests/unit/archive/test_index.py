from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest

import archive.index.base as index_module
from archive.errors import ArchiveError, DuplicateRecord, IdempotencyConflict, StaleRevision
from archive.index import (
    ARCHIVED,
    AWAITING_SIGNATURES,
    IdempotencyWrite,
    Index,
    RecordRow,
)
from archive.index.chain import GENESIS
from archive.store import Area, StoredObject
from tests.unit.archive.conftest import StepClock, raw_sql

T = TypeVar("T")

PUPIL = "001215012345"
ORIGINAL = b"%PDF-1.7 original"
TEACHER = ORIGINAL + b" +teacher"
PRINCIPAL = TEACHER + b" +principal"
FINAL = PRINCIPAL + b" +seal +LTA"


def obj(data: bytes, area: Area = Area.WORKING) -> StoredObject:
    return StoredObject(sha256=hashlib.sha256(data).hexdigest(), size=len(data), area=area)


def new_record(index: Index, **overrides: Any) -> RecordRow:
    fields: dict[str, Any] = {
        "tenant": "DEMO-SCHOOL-1",
        "school_code": "DEMO-SCHOOL-1",
        "school_name": "Trường Tiểu học Demo 1",
        "record_type": "hoc_ba_tieu_hoc",
        "policy": "hoc_ba_tieu_hoc@1",
        "student_id_number": PUPIL,
        "school_year": "2024-2025",
        "metadata_json": json.dumps({"student": {"full_name": "Nguyễn Văn An"}}),
        "original": obj(ORIGINAL),
        "actor": "school-1",
        "audit_detail": {"sha256": obj(ORIGINAL).sha256},
    }
    fields.update(overrides)
    return index.create_record(**fields)


def sign(
    index: Index,
    record: RecordRow,
    data: bytes,
    role: str = "teacher",
    *,
    expected: str | None = None,
    idempotency: IdempotencyWrite | None = None,
) -> RecordRow:
    return index.add_signature(
        record.id,
        expected or record.current_sha256,
        obj(data),
        role=role,
        position={"teacher": 1, "principal": 2, "seal": 3}[role],
        signer_key=f"school-1-{role}",
        signer_subject=f"CN={role}",
        signer_issuer="CN=Demo CA",
        signer_serial="0x1f",
        field_name=f"Sig_{role}",
        signed_at=datetime(2025, 5, 20, 9, 0, tzinfo=UTC),
        actor="school-1",
        audit_detail={"role": role},
        idempotency=idempotency,
    )


def answer(key: str, request_hash: str = "a" * 64, body: str = '{"ok": 1}') -> IdempotencyWrite:
    return IdempotencyWrite(
        tenant="DEMO-SCHOOL-1",
        key=key,
        request_hash=request_hash,
        status_code=200,
        response_json=body,
    )


def run_concurrently(count: int, action: Callable[[int], T]) -> list[T | Exception]:
    """Run action(i) in `count` threads released together; collect results or errors."""
    barrier = threading.Barrier(count)
    results: list[T | Exception] = [RuntimeError("not run")] * count

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


# -- records -------------------------------------------------------------------------------


def test_create_record_stores_row_object_and_audit(index: Index, clock: StepClock) -> None:
    record = new_record(index)

    assert record.status == AWAITING_SIGNATURES
    assert record.current_sha256 == record.original_sha256 == obj(ORIGINAL).sha256
    assert record.current_size == len(ORIGINAL)
    assert record.chain_version == 1
    assert record.supersedes is None and record.superseded_by is None
    assert record.created_at == clock.now
    assert record.created_at.tzinfo is UTC
    assert record.archived_at is None
    assert index.get_record(record.id) == record
    assert index.get_record("no-such-record") is None

    [stored] = list(index.list_objects())
    assert (stored.sha256, stored.area, stored.kind, stored.record_id) == (
        obj(ORIGINAL).sha256,
        Area.WORKING,
        "original",
        record.id,
    )
    [entry] = index.list_audit(record.id)
    assert (entry.action, entry.actor, entry.tenant) == (
        "record.created",
        "school-1",
        "DEMO-SCHOOL-1",
    )
    assert entry.detail == {"sha256": obj(ORIGINAL).sha256}
    assert entry.prev_hash == GENESIS


def test_times_read_back_as_aware_utc(index_url: str) -> None:
    hanoi = timezone(timedelta(hours=7))
    index = Index(index_url, clock=lambda: datetime(2025, 5, 20, 15, 30, 0, 42, tzinfo=hanoi))
    index.migrate()
    try:
        record = index.get_record(new_record(index).id)
        assert record is not None
        assert record.created_at == datetime(2025, 5, 20, 8, 30, 0, 42, tzinfo=UTC)
        assert record.created_at.utcoffset() == timedelta(0)
    finally:
        index.close()


def test_duplicate_record_is_refused(index: Index) -> None:
    first = new_record(index)

    with pytest.raises(DuplicateRecord) as info:
        new_record(index, original=obj(b"%PDF another rendering"))

    assert info.value.code == "record_exists"
    assert index.get_record(first.id) == first
    assert [e.action for e in index.list_audit()] == ["record.created"]
    # Another school year is another record.
    assert new_record(index, school_year="2025-2026").chain_version == 1


def test_concurrent_duplicates_leave_exactly_one(index: Index) -> None:
    results = run_concurrently(
        6, lambda i: new_record(index, original=obj(b"%PDF render " + bytes([i])))
    )

    created = [r for r in results if isinstance(r, RecordRow)]
    assert len(created) == 1
    assert all(isinstance(r, DuplicateRecord) for r in results if r not in created)
    assert index.verify_audit_chain() == (True, None)


def test_correction_chain_links_both_ways(index: Index) -> None:
    old = new_record(index)

    correction = new_record(index, supersedes=old.id, original=obj(b"%PDF corrected"))

    assert correction.supersedes == old.id
    assert correction.chain_version == 2
    old_now = index.get_record(old.id)
    assert old_now is not None
    assert old_now.superseded_by == correction.id
    assert old_now.current_sha256 == old.current_sha256
    assert [e.action for e in index.list_audit(old.id)] == ["record.created", "record.superseded"]
    assert index.list_audit(old.id)[1].detail == {"superseded_by": correction.id}

    # The old one cannot be corrected twice; the chain continues from the newest.
    with pytest.raises(DuplicateRecord):
        new_record(index, supersedes=old.id, original=obj(b"%PDF corrected again"))
    third = new_record(index, supersedes=correction.id, original=obj(b"%PDF corrected again"))
    assert third.chain_version == 3
    old_after = index.get_record(old.id)
    assert old_after is not None and old_after.superseded_by == correction.id


def test_correction_must_name_a_matching_existing_record(index: Index) -> None:
    old = new_record(index)

    with pytest.raises(ArchiveError) as missing:
        new_record(index, supersedes="no-such-record")
    assert missing.value.code == "supersedes_not_found"

    with pytest.raises(ArchiveError) as mismatch:
        new_record(index, supersedes=old.id, student_id_number="001215099999")
    assert mismatch.value.code == "supersedes_mismatch"

    old_now = index.get_record(old.id)
    assert old_now is not None and old_now.superseded_by is None


# -- signatures and archiving --------------------------------------------------------------


def test_add_signature_moves_current_and_records_everything(index: Index) -> None:
    record = new_record(index)

    signed = sign(index, record, TEACHER)

    assert signed.current_sha256 == obj(TEACHER).sha256
    assert signed.current_size == len(TEACHER)
    assert signed.original_sha256 == obj(ORIGINAL).sha256
    assert signed.updated_at > record.updated_at
    assert index.get_record(record.id) == signed
    [signature] = index.list_signatures(record.id)
    assert (signature.role, signature.position, signature.revision_sha256) == (
        "teacher",
        1,
        obj(TEACHER).sha256,
    )
    assert signature.signer_serial == "0x1f"
    assert signature.signed_at == datetime(2025, 5, 20, 9, 0, tzinfo=UTC)
    kinds = {(o.sha256, o.kind) for o in index.list_objects(Area.WORKING)}
    assert kinds == {(obj(ORIGINAL).sha256, "original"), (obj(TEACHER).sha256, "revision")}
    assert [e.action for e in index.list_audit(record.id)] == ["record.created", "record.signed"]

    sign(index, signed, PRINCIPAL, "principal")
    assert [s.role for s in index.list_signatures(record.id)] == ["teacher", "principal"]


def test_cas_loser_gets_stale_revision_and_changes_nothing(index: Index) -> None:
    record = new_record(index)
    winner = sign(index, record, TEACHER)
    audit_before = index.list_audit()

    # Other requests read the same `current` and signed other bytes: for the same role,
    # and for another role (where only the compare-and-set stands in the way).
    for role in ("teacher", "principal"):
        loser_bytes = ORIGINAL + b" +other " + role.encode()
        with pytest.raises(StaleRevision) as info:
            sign(index, record, loser_bytes, role, idempotency=answer(f"k-{role}"))

        assert info.value.code == "stale_revision"
        assert index.get_record(record.id) == winner
        assert [s.role for s in index.list_signatures(record.id)] == ["teacher"]
        assert obj(loser_bytes).sha256 not in {o.sha256 for o in index.list_objects()}
        assert index.list_audit() == audit_before
        assert index.get_idempotent("DEMO-SCHOOL-1", f"k-{role}") is None


def test_same_role_twice_is_stale_even_with_the_right_current(index: Index) -> None:
    record = sign(index, new_record(index), TEACHER)

    with pytest.raises(StaleRevision):
        sign(index, record, TEACHER + b" +teacher again")

    assert index.get_record(record.id) == record
    assert [s.role for s in index.list_signatures(record.id)] == ["teacher"]


def test_concurrent_signatures_have_exactly_one_winner(index: Index) -> None:
    record = new_record(index)

    results = run_concurrently(6, lambda i: sign(index, record, TEACHER + bytes([i])))

    winners = [r for r in results if isinstance(r, RecordRow)]
    assert len(winners) == 1
    assert sum(isinstance(r, StaleRevision) for r in results) == 5
    assert index.get_record(record.id) == winners[0]
    assert len(index.list_signatures(record.id)) == 1
    assert index.verify_audit_chain() == (True, None)


def test_mark_archived_adds_the_final_as_version_one(index: Index, clock: StepClock) -> None:
    record = sign(index, sign(index, new_record(index), TEACHER), PRINCIPAL, "principal")
    final = obj(FINAL, Area.ARCHIVE)

    archived = index.mark_archived(
        record.id, record.current_sha256, final, actor="school-1", audit_detail={"level": "B-LTA"}
    )

    assert archived.status == ARCHIVED
    assert archived.archived_at == clock.now
    assert archived.current_sha256 == final.sha256
    [version] = index.list_versions(record.id)
    assert (version.version, version.sha256, version.size, version.reason) == (
        1,
        final.sha256,
        len(FINAL),
        "archived",
    )
    assert index.find_version_by_sha256(final.sha256) == version
    assert index.find_version_by_sha256(obj(PRINCIPAL).sha256) is None
    [final_row] = list(index.list_objects(Area.ARCHIVE))
    assert (final_row.sha256, final_row.kind) == (final.sha256, "final")
    assert index.list_audit(record.id)[-1].action == "record.archived"

    # Archived is closed: no more signatures, no second archiving.
    with pytest.raises(StaleRevision):
        sign(index, archived, FINAL + b" +late", "seal", expected=final.sha256)
    with pytest.raises(StaleRevision):
        index.mark_archived(record.id, final.sha256, final, actor="x", audit_detail={})
    assert index.get_record(record.id) == archived


def test_mark_archived_refuses_a_working_object(index: Index) -> None:
    record = new_record(index)
    with pytest.raises(ValueError):
        index.mark_archived(
            record.id, record.current_sha256, obj(FINAL), actor="x", audit_detail={}
        )


def test_naive_times_are_refused(index_url: str) -> None:
    index = Index(index_url, clock=lambda: datetime(2025, 5, 20, 8, 0))
    try:
        with pytest.raises(ValueError):
            index.append_audit("x", None, "test", None, {})
    finally:
        index.close()


# -- idempotency ---------------------------------------------------------------------------


def test_put_idempotent_keeps_the_first_answer(index: Index) -> None:
    assert index.get_idempotent("DEMO-SCHOOL-1", "k1") is None

    first = index.put_idempotent(answer("k1", "a" * 64, '{"id": "first"}'))
    again = index.put_idempotent(answer("k1", "b" * 64, '{"id": "second"}'))

    assert again == first
    assert (first.request_hash, first.response_json) == ("a" * 64, '{"id": "first"}')
    assert index.get_idempotent("DEMO-SCHOOL-1", "k1") == first
    assert index.get_idempotent("DEMO-SCHOOL-2", "k1") is None


def test_concurrent_put_idempotent_does_not_crash(index: Index) -> None:
    results = run_concurrently(6, lambda i: index.put_idempotent(answer("k", f"{i}" * 64)))

    assert not [r for r in results if isinstance(r, Exception)]
    stored = index.get_idempotent("DEMO-SCHOOL-1", "k")
    assert stored is not None
    assert all(r == stored for r in results)


def test_signature_stores_its_idempotent_answer_atomically(index: Index) -> None:
    record = new_record(index)

    signed = sign(index, record, TEACHER, idempotency=answer("sign-1"))

    stored = index.get_idempotent("DEMO-SCHOOL-1", "sign-1")
    assert stored is not None and stored.status_code == 200

    # A used key makes the whole step roll back.
    with pytest.raises(IdempotencyConflict) as info:
        sign(index, signed, PRINCIPAL, "principal", idempotency=answer("sign-1", "c" * 64))
    assert info.value.code == "idempotency_conflict"
    assert index.get_record(record.id) == signed
    assert [s.role for s in index.list_signatures(record.id)] == ["teacher"]
    assert index.get_idempotent("DEMO-SCHOOL-1", "sign-1") == stored


# -- audit ---------------------------------------------------------------------------------


def test_audit_chain_links_and_verifies(index: Index) -> None:
    rows = [index.append_audit("admin", None, "test.event", None, {"n": n}) for n in range(3)]

    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS
    assert rows[1].prev_hash == rows[0].hash and rows[2].prev_hash == rows[1].hash
    assert index.list_audit() == rows
    assert index.list_audit(after_seq=1, limit=1) == [rows[1]]
    assert index.verify_audit_chain() == (True, None)


def test_audit_chain_detects_an_edited_row(index: Index, index_url: str) -> None:
    for n in range(4):
        index.append_audit("admin", None, "test.event", None, {"n": n})

    raw_sql(index_url, "UPDATE audit SET detail_json = :d WHERE seq = 3", d='{"n":99}')

    assert index.verify_audit_chain() == (False, 3)


def test_audit_chain_detects_a_removed_row(index: Index, index_url: str) -> None:
    for n in range(4):
        index.append_audit("admin", None, "test.event", None, {"n": n})

    raw_sql(index_url, "DELETE FROM audit WHERE seq = 2")

    assert index.verify_audit_chain() == (False, 3)


def test_audit_chain_detects_a_rehashed_edit(index: Index, index_url: str) -> None:
    # Editing a row and fixing its own hash still breaks the next row's link.
    for n in range(3):
        index.append_audit("admin", None, "test.event", None, {"n": n})
    raw_sql(index_url, "UPDATE audit SET actor = 'mallory', hash = :h WHERE seq = 2", h="f" * 64)

    assert index.verify_audit_chain() == (False, 2)


def test_concurrent_audit_appends_never_fork(index: Index) -> None:
    def append_many(i: int) -> None:
        for n in range(10):
            index.append_audit(f"worker-{i}", None, "test.event", None, {"n": n})

    results = run_concurrently(6, append_many)

    assert results == [None] * 6
    rows = index.list_audit(limit=1000)
    assert [r.seq for r in rows] == list(range(1, 61))
    assert index.verify_audit_chain() == (True, None)


# -- objects, readiness --------------------------------------------------------------------


def test_list_objects_pages_and_filters(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "PAGE_SIZE", 2)
    record = sign(index, sign(index, new_record(index), TEACHER), PRINCIPAL, "principal")
    index.mark_archived(
        record.id, record.current_sha256, obj(FINAL, Area.ARCHIVE), actor="x", audit_detail={}
    )

    working = list(index.list_objects(Area.WORKING))
    everything = list(index.list_objects())

    assert sorted(o.sha256 for o in working) == sorted(
        obj(d).sha256 for d in (ORIGINAL, TEACHER, PRINCIPAL)
    )
    assert len(everything) == 4
    assert len({(o.sha256, o.area) for o in everything}) == 4
    assert [o.area for o in everything if o.kind == "final"] == [Area.ARCHIVE]


def test_check_reports_an_unusable_index(index: Index, tmp_path: Path) -> None:
    index.check()

    broken = Index(f"sqlite:///{tmp_path / 'missing-dir' / 'index.sqlite3'}")
    try:
        with pytest.raises(ArchiveError) as info:
            broken.check()
        assert info.value.code == "index_unavailable"
    finally:
        broken.close()


def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    index = Index(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    index.migrate()
    try:
        with index._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    finally:
        index.close()


def test_plain_postgresql_urls_use_psycopg() -> None:
    index = Index("postgresql://hocba@db.invalid/hocba")  # no connection is made
    try:
        assert (index.dialect, index._engine.dialect.driver) == ("postgresql", "psycopg")
    finally:
        index.close()


def test_working_objects_in_use_names_those_another_open_record_needs(index: Index) -> None:
    first = sign(index, new_record(index), TEACHER)
    twin = new_record(index, student_id_number="001217000778")  # same upload bytes
    shas = [obj(ORIGINAL).sha256, obj(TEACHER).sha256, obj(b"unknown").sha256]
    assert index.working_objects_in_use(shas, other_than=first.id) == {obj(ORIGINAL).sha256}
    assert index.working_objects_in_use(shas, other_than=twin.id) == {
        obj(ORIGINAL).sha256, obj(TEACHER).sha256}  # first's original and its revision
    twin = sign(index, twin, TEACHER)  # byte-identical revision: needed through the twin
    assert index.working_objects_in_use(shas, other_than=first.id) == {
        obj(ORIGINAL).sha256, obj(TEACHER).sha256}
    assert index.working_objects_in_use([], other_than=first.id) == set()
    done = index.mark_archived(twin.id, twin.current_sha256, obj(FINAL, Area.ARCHIVE),
                               actor="x", audit_detail={})
    assert done.status == ARCHIVED  # an archived record needs no working object
    assert index.working_objects_in_use(shas, other_than=first.id) == set()
