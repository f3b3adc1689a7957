"""Evidence rows (RFC 4998 records of archived objects) and scheduling a job once, on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from archive.index import Index
from archive.index.evidence import NewEvidence
from archive.index.rows import EvidenceBatchRow
from archive.store import Area, StoredObject
from tests.unit.archive.conftest import StepClock
from tests.unit.archive.test_index import (
    FINAL,
    PRINCIPAL,
    TEACHER,
    new_record,
    obj,
    run_concurrently,
    sign,
)


def archived(index: Index, n: int) -> list[str]:
    """`n` archived records; their finals' SHA-256."""
    finals = []
    for i in range(n):
        record = sign(index, sign(index, new_record(index, student_id_number=f"0012{i:08d}"),
                                  TEACHER), PRINCIPAL, "principal")
        final = obj(FINAL + bytes([i]), Area.ARCHIVE)
        index.mark_archived(record.id, record.current_sha256, final, actor="t",
                            audit_detail={})
        finals.append(final.sha256)
    return finals


def batch(kind: str = "initial", n: int = 1) -> EvidenceBatchRow:
    import uuid

    now = datetime(2026, 12, 3, tzinfo=UTC)
    return EvidenceBatchRow(str(uuid.uuid4()), kind, "sha256", n, "ab" * 32, now, now)


def stored(name: int) -> StoredObject:
    return StoredObject(f"{name:064x}", 100 + name, Area.ARCHIVE)


def test_evidence_rows_generations_and_due(index: Index, clock: StepClock) -> None:
    finals = archived(index, 3)
    pending = index.objects_without_evidence(10)
    assert sorted(p.sha256 for p in pending) == sorted(finals)
    assert index.count_without_evidence() == 3
    records = {p.sha256: p.record_id for p in pending}
    first = batch(n=3)
    until = datetime(2035, 1, 1, tzinfo=UTC)
    items = [NewEvidence(sha, records[sha], stored(i), 1) for i, sha in enumerate(finals)]
    assert index.add_evidence_batch(first, items, valid_until=until, actor="t") == 3
    assert index.count_without_evidence() == 0
    # a rerun after a crash: the same generation again is skipped, not doubled
    assert index.add_evidence_batch(batch(n=3), items, valid_until=until, actor="t") == 0
    assert index.evidence_groups_due(datetime(2034, 1, 1, tzinfo=UTC)) == []
    [(batch_id, members, soonest)] = index.evidence_groups_due(datetime(2036, 1, 1,
                                                                        tzinfo=UTC))
    assert (batch_id, members, soonest) == (first.id, 3, until)
    assert index.evidence_groups_due(datetime(2030, 1, 1, tzinfo=UTC), ["sha256"]) != []
    # renewal: generation 2 becomes current, generation 1 stays
    renewal = batch("timestamp")
    later = until + timedelta(days=3650)
    renewed = [NewEvidence(sha, records[sha], stored(10 + i), 2)
               for i, sha in enumerate(finals)]
    assert index.add_evidence_batch(renewal, renewed, valid_until=later, actor="t") == 3
    current = index.current_evidence(finals[0])
    assert current is not None
    assert (current.generation, current.batch_id, current.valid_until) == (2, renewal.id,
                                                                           later)
    rows = index.evidence_of_record(records[finals[0]])
    assert [(r.generation, r.current) for r in rows] == [(1, False), (2, True)]
    assert [m.object_sha256 for m in index.current_evidence_in_batch(renewal.id)] == sorted(
        finals)
    assert index.current_evidence_in_batch(first.id) == []
    counts = index.evidence_counts(datetime(2026, 12, 3, tzinfo=UTC),
                                   datetime(2040, 1, 1, tzinfo=UTC))
    assert counts == {"missing": 0, "ok": 3, "due": 0, "overdue": 0}
    kinds = [o.kind for o in index.list_objects(Area.ARCHIVE)]
    assert kinds.count("evidence") == 6
    assert [a.action for a in index.list_audit(None, limit=1000)
            if a.action.startswith("evidence.")] == [
        "evidence.initial", "evidence.initial", "evidence.timestamp"]


def test_a_job_kind_is_scheduled_once(index: Index) -> None:
    def schedule(_: int) -> object:
        return index.create_job_unless_active(tenant="s", kind="evidence", total=1,
                                              params={}, actor="s")

    results = run_concurrently(8, schedule)
    created = [r for r in results if r is not None and not isinstance(r, Exception)]
    assert len(created) == 1, results
    assert [r for r in results if isinstance(r, Exception)] == []
    assert schedule(0) is None
    index.finish_job(created[0].id)  # type: ignore[attr-defined]
    assert schedule(0) is not None
