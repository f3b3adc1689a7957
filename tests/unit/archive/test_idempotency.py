"""Idempotency reservations in the index (SQLite and PostgreSQL): one holder per tenant
and key, even for callers racing in threads; answers kept; stale reservations taken over."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from archive.index import Index
from archive.index.idempotency import PENDING, Reservation

T = TypeVar("T")
TENANT = "DEMO-SCHOOL-1"
STALE = timedelta(minutes=10)
H1, H2 = "a" * 64, "b" * 64


class ManualClock:
    """A clock that stands still until a test moves it."""

    def __init__(self) -> None:
        self.now = datetime(2025, 5, 20, 8, 0, 0, 123456, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def manual_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def idx(index_url: str, manual_clock: ManualClock) -> Iterator[Index]:
    index = Index(index_url, clock=manual_clock)
    index.migrate()
    yield index
    index.close()


def reserve(index: Index, key: str = "k", request_hash: str = H1,
            tenant: str = TENANT) -> Reservation:
    return index.reserve_idempotent(tenant, key, request_hash, stale_after=STALE)


def together(count: int, action: Callable[[int], T]) -> list[T]:
    """action(i) in `count` threads released at once; any error fails the test."""
    barrier = threading.Barrier(count)
    results: list[T | BaseException | None] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except BaseException as e:  # reported below
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return results  # type: ignore[return-value]


def test_first_caller_holds_the_key_others_see_its_reservation(idx: Index) -> None:
    first = reserve(idx)
    assert first.token is not None and first.row is None
    same, other = reserve(idx), reserve(idx, request_hash=H2)
    for seen in (same, other):
        assert seen.token is None and seen.row is not None
        assert seen.row.status_code == PENDING and seen.row.request_hash == H1
    # another tenant's key of the same name is another key
    assert reserve(idx, tenant="DEMO-SCHOOL-2").token is not None


def test_the_answer_is_filled_in_by_its_holder_only(idx: Index) -> None:
    token = reserve(idx).token
    assert token is not None
    assert not idx.complete_idempotent(TENANT, "k", "not-the-token", 201, '{"id": "x"}')
    assert idx.complete_idempotent(TENANT, "k", token, 201, '{"id": "r1"}')
    row = idx.get_idempotent(TENANT, "k")
    assert row is not None and (row.status_code, row.response_json) == (201, '{"id": "r1"}')
    # answered: kept for good, never filled in or released again
    assert not idx.complete_idempotent(TENANT, "k", token, 201, '{"id": "r2"}')
    assert not idx.release_idempotent(TENANT, "k", token)
    again = reserve(idx)
    assert again.token is None and again.row == row
    with pytest.raises(ValueError):
        idx.complete_idempotent(TENANT, "other", "t", PENDING, "")


def test_a_released_key_can_be_reserved_again(idx: Index) -> None:
    token = reserve(idx).token
    assert token is not None
    assert not idx.release_idempotent(TENANT, "k", "not-the-token")
    assert idx.get_idempotent(TENANT, "k") is not None
    assert idx.release_idempotent(TENANT, "k", token)
    assert idx.get_idempotent(TENANT, "k") is None
    retry = reserve(idx, request_hash=H2)
    assert retry.token is not None and retry.token != token


def test_a_stale_reservation_is_taken_over_by_the_same_request(
        idx: Index, manual_clock: ManualClock) -> None:
    dead = reserve(idx).token
    assert dead is not None
    manual_clock.now += STALE - timedelta(seconds=1)
    assert reserve(idx).token is None  # not stale yet: its holder may be at work
    manual_clock.now += timedelta(seconds=1)
    assert reserve(idx, request_hash=H2).token is None  # another request never takes it
    taken = reserve(idx).token
    assert taken is not None and taken != dead
    row = idx.get_idempotent(TENANT, "k")
    assert row is not None and row.created_at == manual_clock.now
    # the old holder, back from the dead, can neither answer nor release
    assert not idx.complete_idempotent(TENANT, "k", dead, 201, "{}")
    assert not idx.release_idempotent(TENANT, "k", dead)
    assert idx.complete_idempotent(TENANT, "k", taken, 201, "{}")


def test_an_answer_is_never_stale(idx: Index, manual_clock: ManualClock) -> None:
    token = reserve(idx).token
    assert token is not None and idx.complete_idempotent(TENANT, "k", token, 200, "{}")
    manual_clock.now += STALE * 100
    again = reserve(idx)
    assert again.token is None and again.row is not None and again.row.status_code == 200


def test_concurrent_reservations_have_exactly_one_holder(idx: Index) -> None:
    for trial in range(3):
        key = f"race-{trial}"
        seen = together(12, lambda i, key=key: reserve(idx, key, H1 if i % 2 else H2))
        holders = [r for r in seen if r.token is not None]
        assert len(holders) == 1, seen
        row = idx.get_idempotent(TENANT, key)
        assert row is not None and row.response_json == holders[0].token
        # every other caller saw the holder's row (its request), never nothing
        assert all(r.row is not None and r.row.request_hash == row.request_hash
                   for r in seen if r.token is None)


def test_concurrent_takeovers_of_a_stale_reservation_have_one_winner(
        idx: Index, manual_clock: ManualClock) -> None:
    assert reserve(idx).token is not None
    manual_clock.now += STALE
    seen = together(8, lambda _i: reserve(idx))
    assert len([r for r in seen if r.token is not None]) == 1, seen


def test_release_racing_reservations_leaves_one_holder(idx: Index) -> None:
    token = reserve(idx).token
    assert token is not None

    def act(i: int) -> Reservation | bool:
        if i == 0:
            return idx.release_idempotent(TENANT, "k", token)
        return reserve(idx)

    seen = together(8, act)
    assert seen[0] is True
    holders = [r for r in seen[1:] if isinstance(r, Reservation) and r.token is not None]
    assert len(holders) <= 1
    row = idx.get_idempotent(TENANT, "k")
    if holders:
        assert row is not None and row.response_json == holders[0].token
    else:  # every reservation ran before the release
        assert row is None
