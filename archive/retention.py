"""Keep archived objects locked: extend COMPLIANCE retention before it nears its end.

A record is kept permanently, but an S3 retention date is finite (AWS allows 100 years).
This job reads every archived object's lock and, when less than `horizon` is left, moves
the retain-until date to `now + extend_by` (never earlier; the store reads it back).
Stores without retention dates (the filesystem store) have nothing to extend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from archive.errors import ArchiveError
from archive.index import Index
from archive.store.base import Area, ObjectStore


@dataclass(frozen=True)
class RetentionReport:
    checked: int
    extended: list[str] = field(default_factory=list)
    without_dates: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "extended": self.extended,
                "without_dates": self.without_dates, "errors": self.errors}


def extend_due(store: ObjectStore, index: Index, *, now: datetime, horizon: timedelta,
               extend_by: timedelta,
               progress: Callable[[int, int], None] | None = None) -> RetentionReport:
    objects = list(index.list_objects(Area.ARCHIVE))
    extended: list[str] = []
    errors: list[dict[str, str]] = []
    without = 0
    extend = getattr(store, "extend_retention", None)
    for n, obj in enumerate(objects, 1):
        try:
            lock = store.lock_info(obj.sha256, Area.ARCHIVE)
            if lock.retain_until is None or extend is None:
                without += 1
            elif lock.retain_until - now <= horizon:
                extend(obj.sha256, Area.ARCHIVE, now + extend_by)
                extended.append(obj.sha256)
        except ArchiveError as e:
            errors.append({"sha256": obj.sha256, "code": e.code, "detail": str(e)})
        if progress:
            progress(n, len(objects))
    report = RetentionReport(checked=len(objects), extended=extended, without_dates=without,
                             errors=errors)
    index.append_audit("system", None, "retention.extend", None,
                       {"checked": report.checked, "extended": len(extended),
                        "errors": len(errors)})
    return report
