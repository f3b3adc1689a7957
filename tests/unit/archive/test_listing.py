"""Listing records with a keyset cursor, counting them, and walking a correction chain
(Index.list_records / count_records / record_chain), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from archive.index import ARCHIVED, AWAITING_SIGNATURES, Index, RecordRow
from archive.index import schema as t
from archive.store import Area, StoredObject

SCHOOL_1 = "DEMO-SCHOOL-1"
SCHOOL_2 = "DEMO-SCHOOL-2"
YEAR = "2024-2025"


def obj(data: bytes, area: Area = Area.WORKING) -> StoredObject:
    return StoredObject(sha256=hashlib.sha256(data).hexdigest(), size=len(data), area=area)


def pupil(n: int) -> str:
    return f"{n:012d}"


def create(index: Index, n: int, *, school: str = SCHOOL_1, year: str = YEAR,
           record_type: str = "hoc_ba_tieu_hoc", supersedes: str | None = None) -> RecordRow:
    original = obj(f"%PDF-1.7 pupil {n} {uuid.uuid4()}".encode())
    return index.create_record(
        tenant=school, school_code=school, school_name=f"Trường {school}",
        record_type=record_type, policy=f"{record_type}@1", student_id_number=pupil(n),
        school_year=year, metadata_json=json.dumps({"n": n}), original=original,
        actor="test", audit_detail={"sha256": original.sha256}, supersedes=supersedes)


def archive(index: Index, row: RecordRow) -> RecordRow:
    final = obj(f"final {row.id}".encode(), Area.ARCHIVE)
    return index.mark_archived(row.id, row.current_sha256, final, actor="test",
                               audit_detail={"sha256": final.sha256})


def page_all(index: Index, schools: set[str], limit: int, **filters: Any) -> list[RecordRow]:
    seen: list[RecordRow] = []
    after: tuple[datetime, str] | None = None
    while True:
        page = index.list_records(schools, after=after, limit=limit, **filters)
        seen.extend(page)
        if len(page) < limit:
            return seen
        after = (page[-1].created_at, page[-1].id)


def key(row: RecordRow) -> tuple[datetime, str]:
    return (row.created_at, row.id)


def test_pages_in_key_order_with_filters(index: Index) -> None:
    rows = [create(index, n) for n in range(7)]
    other_year = create(index, 100, year="2023-2024")
    other_school = create(index, 101, school=SCHOOL_2)
    thcs = create(index, 102, record_type="hoc_ba_thcs")
    archived = archive(index, rows[3])

    everything = page_all(index, {SCHOOL_1, SCHOOL_2}, 2)
    assert [r.id for r in everything] == [r.id for r in sorted(everything, key=key)]
    assert len(everything) == 10 and len({r.id for r in everything}) == 10

    school_1 = page_all(index, {SCHOOL_1}, 3)
    assert other_school.id not in {r.id for r in school_1} and len(school_1) == 9
    by_year = page_all(index, {SCHOOL_1}, 3, school_year=YEAR)
    assert [r.id for r in by_year] == [r.id for r in [*rows, thcs]]
    assert other_year.id not in {r.id for r in by_year}
    assert [r.id for r in page_all(index, {SCHOOL_1}, 5, status=ARCHIVED)] == [archived.id]
    assert len(page_all(index, {SCHOOL_1}, 5, status=AWAITING_SIGNATURES)) == 8
    assert [r.id for r in page_all(index, {SCHOOL_1}, 5, record_type="hoc_ba_thcs")] == [
        thcs.id]
    assert [r.id for r in page_all(index, {SCHOOL_1, SCHOOL_2}, 5,
                                   student_id_number=pupil(101))] == [other_school.id]
    assert index.list_records(set(), limit=5) == []
    assert index.list_records({"NO-SUCH-SCHOOL"}, limit=5) == []


def test_ties_on_created_at_are_broken_by_id(index_url: str) -> None:
    """Many records created in the same microsecond page exactly by their id."""
    frozen = datetime(2025, 5, 20, 8, 0, 0, 500000, tzinfo=UTC)
    idx = Index(index_url, clock=lambda: frozen)
    idx.migrate()
    try:
        rows = [create(idx, n) for n in range(11)]
        seen = page_all(idx, {SCHOOL_1}, 3)
        assert [r.id for r in seen] == sorted(r.id for r in rows)
        assert all(r.created_at == frozen for r in seen)
        # a key in the middle of the tie: exactly the ids after it
        middle = sorted(r.id for r in rows)[5]
        after = idx.list_records({SCHOOL_1}, after=(frozen, middle), limit=100)
        assert [r.id for r in after] == sorted(r.id for r in rows)[6:]
    finally:
        idx.close()


def test_the_cursor_key_is_compared_as_a_time_not_as_text(index: Index) -> None:
    rows = [create(index, n) for n in range(4)]
    # the same instant written in another offset points to the same place
    at = rows[1].created_at.astimezone(UTC)
    plus7 = at.astimezone(timezone(timedelta(hours=7)))
    assert [r.id for r in index.list_records({SCHOOL_1}, after=(plus7, rows[1].id),
                                             limit=10)] == [r.id for r in rows[2:]]
    # an instant between two records, with an id that sorts before every uuid
    between = rows[2].created_at - timedelta(microseconds=1)
    assert [r.id for r in index.list_records({SCHOOL_1}, after=(between, ""), limit=10)] == [
        r.id for r in rows[2:]]
    with pytest.raises(ValueError):
        index.list_records({SCHOOL_1}, after=(at.replace(tzinfo=None), ""), limit=10)
    with pytest.raises(ValueError):
        index.list_records({SCHOOL_1}, limit=0)


def test_records_added_while_paging_never_disturb_the_ones_before(index: Index) -> None:
    before = [create(index, n) for n in range(25)]
    seen: list[RecordRow] = []
    after: tuple[datetime, str] | None = None
    n = 1000
    while True:
        page = index.list_records({SCHOOL_1}, after=after, limit=4)
        seen.extend(page)
        for _ in range(3):  # new records land between pages
            create(index, n)
            n += 1
        if len(page) < 4:
            break
        after = key(page[-1])
    ids = [r.id for r in seen]
    assert len(ids) == len(set(ids))
    assert {r.id for r in before} <= set(ids)
    assert ids == [r.id for r in sorted(seen, key=key)]


def test_counts_by_school_status_and_type(index: Index) -> None:
    a = create(index, 1)
    archive(index, a)
    correction = create(index, 1, supersedes=a.id)
    archive(index, correction)
    create(index, 2)
    create(index, 3, record_type="hoc_ba_thcs")
    create(index, 4, school=SCHOOL_2)
    create(index, 5, year="2023-2024")
    counts = index.count_records({SCHOOL_1, SCHOOL_2})
    table = {(c.school_code, c.status, c.record_type): (c.total, c.superseded)
             for c in counts}
    assert table == {
        (SCHOOL_1, ARCHIVED, "hoc_ba_tieu_hoc"): (2, 1),
        (SCHOOL_1, AWAITING_SIGNATURES, "hoc_ba_tieu_hoc"): (2, 0),
        (SCHOOL_1, AWAITING_SIGNATURES, "hoc_ba_thcs"): (1, 0),
        (SCHOOL_2, AWAITING_SIGNATURES, "hoc_ba_tieu_hoc"): (1, 0),
    }
    year = {(c.school_code, c.status, c.record_type): c.total
            for c in index.count_records({SCHOOL_1}, school_year="2023-2024")}
    assert year == {(SCHOOL_1, AWAITING_SIGNATURES, "hoc_ba_tieu_hoc"): 1}
    assert index.count_records(set()) == []


def test_record_chain_both_ways(index: Index) -> None:
    v1 = create(index, 7)
    archive(index, v1)
    v2 = create(index, 7, supersedes=v1.id)
    archive(index, v2)
    v3 = create(index, 7, supersedes=v2.id)
    ids = [v1.id, v2.id, v3.id]
    for r in (v1, v2, v3):
        chain = index.record_chain(r.id)
        assert [c.id for c in chain] == ids
        assert [c.chain_version for c in chain] == [1, 2, 3]
    assert [c.id for c in index.record_chain(create(index, 8).id)] == [
        index.list_records({SCHOOL_1}, student_id_number=pupil(8), limit=1)[0].id]
    assert index.record_chain("no-such-record") == []


# -- 10,000 records paged while more are added ------------------------------------------


def bulk_insert(url: str, count: int, start: datetime) -> set[str]:
    """`count` records straight into the tables (no audit rows), in batches; every tenth
    shares its created_at with the one before, so ties are paged too."""
    engine = sa.create_engine(url)
    sha = hashlib.sha256(b"bulk").hexdigest()
    ids: set[str] = set()
    try:
        with engine.begin() as conn:
            conn.execute(t.objects.insert().values(
                sha256=sha, area=Area.WORKING.value, size=4, record_id=None,
                kind="original", created_at=start))
            rows: list[dict[str, Any]] = []
            for n in range(count):
                tick = n - 1 if n % 10 == 9 else n  # the tenth ties with the ninth
                at = start + timedelta(milliseconds=tick * 7)
                record_id = str(uuid.uuid4())
                ids.add(record_id)
                rows.append({
                    "id": record_id, "tenant": SCHOOL_1, "school_code": SCHOOL_1,
                    "school_name": "Trường Demo", "record_type": "hoc_ba_tieu_hoc",
                    "policy": "hoc_ba_tieu_hoc@1", "student_id_number": pupil(n),
                    "school_year": YEAR, "metadata_json": "{}", "status": AWAITING_SIGNATURES,
                    "current_sha256": sha, "current_size": 4, "original_sha256": sha,
                    "supersedes": None, "superseded_by": None, "chain_version": 1,
                    "created_at": at, "updated_at": at, "archived_at": None})
                if len(rows) == 1000:
                    conn.execute(t.records.insert(), rows)
                    rows = []
            if rows:
                conn.execute(t.records.insert(), rows)
    finally:
        engine.dispose()
    return ids


class ClockSpread:
    """A clock for the writer thread: new records land anywhere in the bulk's time span
    (and after it), as late commits of a busy service would."""

    def __init__(self, start: datetime, span: timedelta) -> None:
        self.start, self.span, self.n = start, span, 0
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            self.n += 1
            fraction = (self.n * 7919 % 1000) / 900  # 0 .. 1.11: some after the end
        return self.start + self.span * fraction


@pytest.mark.slow
def test_ten_thousand_records_page_exactly_while_records_are_added(index_url: str) -> None:
    start = datetime(2025, 6, 1, 7, 0, tzinfo=UTC)
    total = 10_000
    reader = Index(index_url)
    reader.migrate()
    t0 = time.monotonic()
    existing = bulk_insert(index_url, total, start)
    assert time.monotonic() - t0 < 30
    writer = Index(index_url, clock=ClockSpread(start, timedelta(milliseconds=7 * total)))
    added: list[str] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_adding() -> None:
        n = total
        try:
            while not stop.is_set():
                added.append(create(writer, n).id)
                n += 1
        except BaseException as e:  # reported below
            errors.append(e)

    thread = threading.Thread(target=keep_adding)
    thread.start()
    try:
        seen: list[RecordRow] = []
        after: tuple[datetime, str] | None = None
        pages = 0
        while True:
            page = reader.list_records({SCHOOL_1}, school_year=YEAR, after=after, limit=500)
            pages += 1
            seen.extend(page)
            if len(page) < 500:
                break
            after = key(page[-1])
            if pages == 3:
                while len(added) < 5 and not errors and time.monotonic() - t0 < 20:
                    time.sleep(0.01)  # the writer has surely been at work by now
    finally:
        stop.set()
        thread.join(timeout=60)
        reader.close()
        writer.close()
    assert not errors, errors
    ids = [r.id for r in seen]
    assert len(ids) == len(set(ids)), "a record was listed twice"
    missing = existing - set(ids)
    assert not missing, f"{len(missing)} records that existed before paging were not listed"
    assert ids == [r.id for r in sorted(seen, key=key)]
    assert added, "the writer added nothing while paging"
    # what was added is seen at most once (above) and only if it was there in time
    assert set(ids) - existing <= set(added)
