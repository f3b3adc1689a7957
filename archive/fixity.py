"""Fixity audit: every object the index knows is read back and hashed; every object the
store holds without an index row is reported (RECORDS.md, "Properties to test").

`audit(store, index)` makes three passes:

1. Over every `objects` row (`Index.list_objects`): read the bytes through the store (which
   verifies them against their name: ObjectCorrupt), compare the size with the row's, and
   for ARCHIVE objects read the lock back (`lock_info`, `lock_is_sufficient`). A WORKING
   object whose file is gone is *released*, not missing, when its record is archived and
   the final exists: `Hocba._release_working` removes working objects after archiving.
2. Over every name in the store (`iter_names`, per area), merged with the index rows in
   name order: a name without a row is an orphan candidate.
3. Only when there are candidates: the index is read once more, so that a step that put
   its object during the audit and committed its row since is not reported. What is
   still without a row is an orphan: a crash between "put object" and "index
   transaction". If it is a PDF that begins with the current object of a record awaiting
   signatures, it is a signed revision (or a final) that never got committed:
   `extends_record` names that record. Orphans are reported and written to the audit log
   (`fixity.orphan_found`); nothing here deletes or changes an object.

The whole report is appended to the audit log as `fixity.audit` (with the job id when it
ran as a job). `run_audit_job` runs an audit as a job of kind `fixity_audit`: progress in
the job row, lease renewed while it runs, the report found again by `find_audit_result`.

This module knows nothing of HTTP or signing.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from archive.errors import ArchiveError, ObjectCorrupt, ObjectMissing
from archive.index import ARCHIVED, AWAITING_SIGNATURES, AuditRow, Index, JobRow, ObjectRow
from archive.leases import kept_lease
from archive.store.base import Area, ObjectStore
from archive.times import rfc3339

log = logging.getLogger("hocba.fixity")

FIXITY_AUDIT = "fixity_audit"  # job kind
AUDIT_ACTION = "fixity.audit"
AUDIT_FAILED_ACTION = "fixity.audit_failed"
ORPHAN_ACTION = "fixity.orphan_found"
# Problem lists kept in one audit row; counts are always exact (`truncated` says so).
AUDIT_LIST_LIMIT = 10_000
# How many bytes after a `%%EOF` marker a revision may end (EOLs, padding, junk).
_EOF_SLACK = 64
_EOF = re.compile(rb"%%EOF")

Progress = Callable[[int, int], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- the report -----------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectProblem:
    """An indexed object that is missing, does not match, or could not be read."""

    sha256: str
    area: str
    record_id: str | None
    kind: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "area": self.area, "record_id": self.record_id,
                "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class LockProblem:
    """An ARCHIVE object whose lock, read back now, is not the permanent lock."""

    sha256: str
    record_id: str | None
    mode: str | None
    retain_until: str | None
    legal_hold: bool | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "record_id": self.record_id, "mode": self.mode,
                "retain_until": self.retain_until, "legal_hold": self.legal_hold,
                "detail": self.detail}


@dataclass(frozen=True)
class Orphan:
    """An object in the store that no index row names."""

    sha256: str
    area: str
    size: int | None
    extends_record: str | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "area": self.area, "size": self.size,
                "extends_record": self.extends_record, "detail": self.detail}


@dataclass(frozen=True)
class FixityReport:
    started_at: datetime
    finished_at: datetime
    checked: int  # index rows examined
    intact: int  # read back, hash and size right
    released: int  # working objects released after their record was archived
    store_objects: int  # names listed in the store, both areas
    missing: tuple[ObjectProblem, ...] = ()
    mismatched: tuple[ObjectProblem, ...] = ()
    unreadable: tuple[ObjectProblem, ...] = ()  # the store failed; not checked
    lock_problems: tuple[LockProblem, ...] = ()
    orphans: tuple[Orphan, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched or self.unreadable or self.lock_problems
                    or self.orphans)

    def counts(self) -> dict[str, int]:
        return {"checked": self.checked, "intact": self.intact, "released": self.released,
                "store_objects": self.store_objects, "missing": len(self.missing),
                "mismatched": len(self.mismatched), "unreadable": len(self.unreadable),
                "lock_problems": len(self.lock_problems), "orphans": len(self.orphans)}

    def as_dict(self, *, limit: int | None = None) -> dict[str, Any]:
        """JSON-ready. `limit` caps each problem list (counts stay exact)."""
        lists: dict[str, tuple[Any, ...]] = {
            "missing": self.missing, "mismatched": self.mismatched,
            "unreadable": self.unreadable, "lock_problems": self.lock_problems,
            "orphans": self.orphans}
        body: dict[str, Any] = {"ok": self.ok, "started_at": rfc3339(self.started_at),
                                "finished_at": rfc3339(self.finished_at), "counts": self.counts()}
        truncated = False
        for name, items in lists.items():
            kept = items if limit is None else items[:limit]
            truncated = truncated or len(kept) < len(items)
            body[name] = [item.as_dict() for item in kept]
        body["truncated"] = truncated
        return body


# -- the audit --------------------------------------------------------------------------


def count_objects(index: Index) -> int:
    """How many object rows the index holds (what an audit will check)."""
    return sum(1 for _ in index.list_objects())


@dataclass
class _Pass1:
    checked: int = 0
    intact: int = 0
    released: int = 0
    missing: list[ObjectProblem] = field(default_factory=list)
    mismatched: list[ObjectProblem] = field(default_factory=list)
    unreadable: list[ObjectProblem] = field(default_factory=list)
    lock_problems: list[LockProblem] = field(default_factory=list)


class _Auditor:
    def __init__(self, store: ObjectStore, index: Index) -> None:
        self.store = store
        self.index = index
        self.result = _Pass1()
        self._final_exists: dict[str, bool] = {}  # record id -> archived with its final

    # pass 1 ----------------------------------------------------------------------------

    def check(self, row: ObjectRow) -> None:
        r = self.result
        r.checked += 1

        def problem(detail: str) -> ObjectProblem:
            return ObjectProblem(row.sha256, row.area.value, row.record_id, row.kind, detail)

        present = True
        try:
            data = self.store.get(row.sha256, row.area)
        except ObjectMissing as e:
            present = False
            if row.area is Area.WORKING and self._released(row.record_id):
                r.released += 1
            else:
                r.missing.append(problem(e.detail))
        except ObjectCorrupt as e:
            r.mismatched.append(problem(e.detail))
        except ArchiveError as e:
            r.unreadable.append(problem(f"{e.code}: {e.detail}"))
        else:
            if len(data) != row.size:
                r.mismatched.append(problem(
                    f"{len(data)} bytes stored, the index says {row.size}"))
            else:
                r.intact += 1
        if present and row.area is Area.ARCHIVE:
            self._check_lock(row)

    def _released(self, record_id: str | None) -> bool:
        if record_id is None:
            return False
        found = self._final_exists.get(record_id)
        if found is None:
            record = self.index.get_record(record_id)
            found = (record is not None and record.status == ARCHIVED
                     and self.store.exists(record.current_sha256, Area.ARCHIVE))
            if len(self._final_exists) >= 10_000:
                self._final_exists.clear()
            self._final_exists[record_id] = found
        return found

    def _check_lock(self, row: ObjectRow) -> None:
        try:
            lock = self.store.lock_info(row.sha256, Area.ARCHIVE)
        except ObjectMissing:
            return  # gone between the read and now: the next audit reports it missing
        except ArchiveError as e:
            self.result.lock_problems.append(LockProblem(
                row.sha256, row.record_id, None, None, None,
                f"lock not readable: {e.code}: {e.detail}"))
            return
        if not self.store.lock_is_sufficient(lock):
            self.result.lock_problems.append(LockProblem(
                row.sha256, row.record_id, lock.mode,
                rfc3339(lock.retain_until) if lock.retain_until else None, lock.legal_hold,
                "not the permanent lock this store gives archive objects"))

    # pass 2 ----------------------------------------------------------------------------

    def unindexed(self, area: Area) -> tuple[list[str], int]:
        """Names in the store's `area` without a row, and how many names were listed.

        Merges the two listings in name order (no set of every name in memory); a
        store that does not list in order gets a set-based comparison instead."""
        try:
            return _merge_unindexed(self.store.iter_names(area),
                                    (row.sha256 for row in self.index.list_objects(area)))
        except _Unordered:
            log.info("store lists %s out of order; comparing with a set", area.value)
            known = {row.sha256 for row in self.index.list_objects(area)}
            listed = 0
            found: list[str] = []
            for name in self.store.iter_names(area):
                listed += 1
                if name not in known:
                    found.append(name)
            return found, listed

    # pass 3 ----------------------------------------------------------------------------

    def confirm_orphans(self, candidates: list[tuple[str, Area]]) -> list[Orphan]:
        """Read the index again: drop candidates indexed meanwhile, and find the record
        a PDF orphan extends."""
        read: dict[tuple[str, Area], tuple[int | None, str | None, dict[str, int]]] = {}
        wanted: set[str] = set()  # hashes of possible earlier revisions
        for name, area in candidates:
            try:
                data = self.store.get(name, area)
            except ObjectMissing:
                read[(name, area)] = (None, "gone while the audit ran", {})
                continue
            except ArchiveError as e:
                read[(name, area)] = (None, f"{e.code}: {e.detail}", {})
                continue
            prefixes = _revision_prefixes(data) if data.startswith(b"%PDF-") else {}
            read[(name, area)] = (len(data), None, prefixes)
            wanted.update(prefixes)
        indexed: set[tuple[str, Area]] = set()
        owners: dict[str, set[str]] = {}  # prefix hash -> record ids with that object
        pending = set(candidates)
        for row in self.index.list_objects():
            if (row.sha256, row.area) in pending:
                indexed.add((row.sha256, row.area))
            if row.sha256 in wanted and row.record_id is not None:
                owners.setdefault(row.sha256, set()).add(row.record_id)
        orphans = []
        for name, area in candidates:
            if (name, area) in indexed:
                continue
            size, detail, prefixes = read[(name, area)]
            orphans.append(Orphan(name, area.value, size, self._extended(prefixes, owners),
                                  detail))
        return orphans

    def _extended(self, prefixes: dict[str, int], owners: dict[str, set[str]]) -> str | None:
        """The record awaiting signatures whose current object is one of `prefixes`
        (the longest such prefix wins)."""
        for sha in sorted(prefixes, key=lambda s: prefixes[s], reverse=True):
            for record_id in sorted(owners.get(sha, ())):
                record = self.index.get_record(record_id)
                if (record is not None and record.status == AWAITING_SIGNATURES
                        and record.current_sha256 == sha):
                    return record.id
        return None


class _Unordered(Exception):
    pass


def _merge_unindexed(names: Iterable[str], rows: Iterable[str]) -> tuple[list[str], int]:
    row_iter: Iterator[str] = iter(rows)
    current = next(row_iter, None)
    last_row = current
    last_name: str | None = None
    listed = 0
    found: list[str] = []
    for name in names:
        listed += 1
        if last_name is not None and name <= last_name:
            raise _Unordered
        last_name = name
        while current is not None and current < name:
            current = next(row_iter, None)
            if current is not None and last_row is not None and current < last_row:
                raise _Unordered
            last_row = current if current is not None else last_row
        if current != name:
            found.append(name)
    return found, listed


def _revision_prefixes(data: bytes) -> dict[str, int]:
    """SHA-256 of each byte prefix that may be an earlier revision of `data` (a PDF
    revision ends at `%%EOF`, give or take a few trailing bytes) -> its length."""
    ends: set[int] = set()
    for m in _EOF.finditer(data):
        ends.update(range(m.end(), min(m.end() + _EOF_SLACK, len(data) - 1) + 1))
    ends.discard(len(data))
    found: dict[str, int] = {}
    h = hashlib.sha256()
    fed = 0
    for end in sorted(ends):
        h.update(data[fed:end])
        fed = end
        found[h.copy().hexdigest()] = end
    return found


def audit(store: ObjectStore, index: Index, *, progress: Progress | None = None,
          actor: str = "system", job_id: str | None = None,
          clock: Callable[[], datetime] = _utcnow) -> FixityReport:
    """Check every indexed object and list every unindexed one; see the module doc.

    `progress(done, total)` is called as index rows are checked (total: the rows counted
    at the start; rows added meanwhile are checked too, `done` never passes `total`).
    Appends `fixity.orphan_found` per orphan and `fixity.audit` with the report. Raises
    ArchiveError when the index or a store listing is unavailable."""
    started = clock()
    total = count_objects(index)
    if progress is not None:
        progress(0, total)
    auditor = _Auditor(store, index)
    for row in index.list_objects():
        auditor.check(row)
        if progress is not None:
            progress(min(auditor.result.checked, total), total)
    candidates: list[tuple[str, Area]] = []
    listed = 0
    for area in Area:
        names, count = auditor.unindexed(area)
        listed += count
        candidates.extend((name, area) for name in names)
    orphans = auditor.confirm_orphans(candidates) if candidates else []
    for orphan in orphans:
        record = index.get_record(orphan.extends_record) if orphan.extends_record else None
        detail: dict[str, Any] = {"sha256": orphan.sha256, "area": orphan.area,
                                  "size": orphan.size, "extends_record": orphan.extends_record}
        if job_id is not None:
            detail["job_id"] = job_id
        index.append_audit(actor, record.tenant if record else None, ORPHAN_ACTION,
                           orphan.extends_record, detail)
        log.warning("orphan object %s/%s (extends record %s)", orphan.area, orphan.sha256,
                    orphan.extends_record)
    r = auditor.result
    report = FixityReport(
        started_at=started, finished_at=clock(), checked=r.checked, intact=r.intact,
        released=r.released, store_objects=listed, missing=tuple(r.missing),
        mismatched=tuple(r.mismatched), unreadable=tuple(r.unreadable),
        lock_problems=tuple(r.lock_problems), orphans=tuple(orphans))
    index.append_audit(actor, None, AUDIT_ACTION, None,
                       {"job_id": job_id, **report.as_dict(limit=AUDIT_LIST_LIMIT)})
    if not report.ok:
        log.warning("fixity audit found problems: %s", report.counts())
    return report


# -- as a job -----------------------------------------------------------------------------


def last_audit_seq(index: Index) -> int:
    """The seq of the newest audit row (0 when empty): O(log n) point reads."""
    def exists(seq: int) -> bool:
        return bool(index.list_audit(after_seq=seq - 1, limit=1))

    if not exists(1):
        return 0
    low, high = 1, 2
    while exists(high):
        low, high = high, high * 2
    while high - low > 1:  # exists(low), not exists(high)
        mid = (low + high) // 2
        low, high = (mid, high) if exists(mid) else (low, mid)
    return low


def create_audit_job(index: Index, *, tenant: str, actor: str) -> JobRow:
    """A queued `fixity_audit` job over the objects indexed now. Its params remember
    where the audit log stood, so that its report row is found without a full scan."""
    return index.create_job(tenant=tenant, kind=FIXITY_AUDIT, total=count_objects(index),
                            actor=actor,
                            params={"actor": actor, "audit_log_from": last_audit_seq(index)})


class _TakenOver(Exception):
    pass


class _JobProgress:
    """Audit progress -> the job row, throttled; stops the audit once the lease is lost."""

    def __init__(self, index: Index, job: JobRow, lost: threading.Event,
                 interval: float) -> None:
        self.index, self.job, self.lost = index, job, lost
        self.interval = interval
        self.reported = job.done
        self.last_write = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if self.lost.is_set():
            raise _TakenOver
        now = time.monotonic()
        if now - self.last_write >= self.interval:
            self.last_write = now
            self.advance(self.job.total if total == 0 else done * self.job.total // total)

    def advance(self, to: int) -> None:
        to = min(to, self.job.total)
        if to > self.reported:
            self.index.update_job_progress(self.job.id, to - self.reported)
            self.reported = to


def run_audit_job(store: ObjectStore, index: Index, job: JobRow, *, owner: str,
                  lease_seconds: int, progress_interval: float = 0.5) -> FixityReport | None:
    """Run a claimed `fixity_audit` job to its end: the report goes to the audit log
    (`fixity.audit`, with the job id), then the job is finished. If the index or the
    store fails, `fixity.audit_failed` says why and the job is finished too. None when
    another worker took the job over (its lease ran out) or the audit failed."""
    actor = str(job.params.get("actor") or "system")
    try:
        with kept_lease(index, job.id, owner, lease_seconds) as lost:
            tracker = _JobProgress(index, job, lost, progress_interval)
            report = audit(store, index, progress=tracker, actor=actor, job_id=job.id)
    except _TakenOver:
        log.warning("fixity audit job %s was taken over; stopping here", job.id)
        return None
    except ArchiveError as e:
        log.error("fixity audit job %s failed: %s", job.id, e)
        index.append_audit(actor, job.tenant, AUDIT_FAILED_ACTION, None,
                           {"job_id": job.id, "code": e.code, "detail": e.detail})
        index.finish_job(job.id, actor=actor)
        return None
    tracker.advance(job.total)
    index.finish_job(job.id, actor=actor)
    return report


def find_audit_result(index: Index, job: JobRow) -> AuditRow | None:
    """The `fixity.audit` (or `fixity.audit_failed`) row of this job, if written yet."""
    after = int(job.params.get("audit_log_from") or 0)
    found: AuditRow | None = None  # the last one, should a resumed job have run twice
    while True:
        page = index.list_audit(after_seq=after, limit=500)
        for row in page:
            if row.action not in (AUDIT_ACTION, AUDIT_FAILED_ACTION, "job.finished"):
                continue
            if row.detail.get("job_id") != job.id:
                continue
            if row.action == "job.finished":
                return found
            found = row
        if len(page) < 500:
            return found
        after = page[-1].seq


__all__ = [
    "AUDIT_ACTION",
    "AUDIT_FAILED_ACTION",
    "FIXITY_AUDIT",
    "ORPHAN_ACTION",
    "FixityReport",
    "LockProblem",
    "ObjectProblem",
    "Orphan",
    "audit",
    "count_objects",
    "create_audit_job",
    "find_audit_result",
    "run_audit_job",
]
