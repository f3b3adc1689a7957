"""Times as every hocba answer, report and package writes them: RFC 3339, UTC, seconds."""

from __future__ import annotations

from datetime import UTC, datetime

RFC3339 = "%Y-%m-%dT%H:%M:%SZ"


def rfc3339(dt: datetime) -> str:
    """'2026-12-02T18:53:28Z' (an aware time in any zone, or a naive one taken as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime(RFC3339)


def rfc3339_or_none(dt: datetime | None) -> str | None:
    return rfc3339(dt) if dt is not None else None


def parse_rfc3339(text: str) -> datetime:
    """The inverse of `rfc3339` (ValueError for anything else)."""
    return datetime.strptime(text, RFC3339).replace(tzinfo=UTC)
