"""Service-wide flags in the index (revision 0007): raised by one process, seen by every
other, cleared by an operator; both audited. And the job queue's depth and age."""

from __future__ import annotations

from datetime import timedelta

import pytest

from archive.index import ARCHIVE_LOCK, Index
from archive.index import migrate as migrations
from tests.unit.archive.conftest import StepClock


def test_a_flag_raised_by_one_index_is_seen_by_another(index: Index, index_url: str,
                                                       clock: StepClock) -> None:
    other = Index(index_url, clock=clock)  # another worker, or another instance
    try:
        assert other.get_flag(ARCHIVE_LOCK) is None
        first = index.raise_flag(ARCHIVE_LOCK, "lock_mismatch on record r1",
                                 actor="school-1", tenant="DEMO-SCHOOL-1")
        again = index.raise_flag(ARCHIVE_LOCK, "lock_mismatch on record r2",
                                 actor="school-1")
        seen = other.get_flag(ARCHIVE_LOCK)
        assert seen is not None and seen == again
        assert (seen.occurrences, seen.detail) == (2, "lock_mismatch on record r2")
        assert seen.raised_at == first.raised_at < seen.last_raised_at
        assert [f.name for f in other.list_flags()] == [ARCHIVE_LOCK]

        cleared = other.clear_flag(ARCHIVE_LOCK, actor="admin")
        assert cleared == seen
        assert index.get_flag(ARCHIVE_LOCK) is None and index.list_flags() == []
        assert other.clear_flag(ARCHIVE_LOCK, actor="admin") is None  # nothing to clear
    finally:
        other.close()
    actions = [(a.action, a.actor) for a in index.list_audit(limit=10)
               if a.action.startswith("flag.")]
    assert actions == [("flag.raised", "school-1"), ("flag.raised", "school-1"),
                       ("flag.cleared", "admin")]
    assert index.verify_audit_chain()[0]


def test_unknown_flags_are_refused(index: Index) -> None:
    with pytest.raises(ValueError, match="unknown service flag"):
        index.raise_flag("anything", "x", actor="a")


def test_job_queue_counts_waiting_jobs_and_the_oldest(index: Index,
                                                      clock: StepClock) -> None:
    assert (index.job_queue().waiting, index.job_queue().oldest_created_at) == (0, None)
    first = index.create_job(tenant="t", kind="batch_sign", total=1, params={}, actor="a")
    index.create_job(tenant="t", kind="batch_sign", total=1, params={}, actor="a")
    queue = index.job_queue()
    assert queue.waiting == 2 and queue.oldest_created_at == first.created_at
    assert queue.oldest_created_at is not None and queue.oldest_created_at.tzinfo is not None

    claimed = index.claim_job("worker-1", lease_seconds=60)
    assert claimed is not None and claimed.id == first.id
    assert index.job_queue().waiting == 1  # held under a live lease: not waiting
    clock.now += timedelta(seconds=120)  # the lease ran out: its worker died
    queue = index.job_queue()
    assert queue.waiting == 2 and queue.oldest_created_at == first.created_at


def test_revision_0007_downgrades_and_upgrades(index: Index) -> None:
    migrations.downgrade(index._engine, "0006")
    assert index.schema_revision() == "0006"
    index.migrate()
    assert index.schema_revision() == "0007"
    assert index.list_flags() == []
