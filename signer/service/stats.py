"""Statistics for a province or the Ministry: records by school, status and type."""

from __future__ import annotations

from typing import Any

from archive.index import Index
from signer.service.catalog import STATUSES


def _tally(counts: list[Any], record_types: list[str]) -> dict[str, Any]:
    by_status = dict.fromkeys(STATUSES, 0)
    by_type: dict[str, dict[str, int]] = {
        rt: {"total": 0, **dict.fromkeys(STATUSES, 0)} for rt in record_types}
    total = superseded = 0
    for c in counts:
        total += c.total
        superseded += c.superseded
        by_status[c.status] = by_status.get(c.status, 0) + c.total
        entry = by_type.setdefault(c.record_type, {"total": 0, **dict.fromkeys(STATUSES, 0)})
        entry["total"] += c.total
        entry[c.status] = entry.get(c.status, 0) + c.total
    return {"total": total, "superseded": superseded, "by_status": by_status,
            "by_record_type": by_type}


class Stats:
    def __init__(self, index: Index, record_types: list[str]) -> None:
        self.index = index
        self.record_types = record_types

    def of(self, schools: frozenset[str], school_year: str | None) -> dict[str, Any]:
        counts = self.index.count_records(schools, school_year=school_year)
        return {"schools": sorted(schools), **_tally(counts, self.record_types),
                "by_school": {s: _tally([c for c in counts if c.school_code == s],
                                        self.record_types)
                              for s in sorted(schools)}}
