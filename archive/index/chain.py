"""The audit log's hash chain: each row's hash covers its content and the previous hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def audit_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    tenant: str | None,
    action: str,
    record_id: str | None,
    detail: Mapping[str, Any],
    prev_hash: str,
) -> str:
    payload = {
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(),
        "actor": actor,
        "tenant": tenant,
        "action": action,
        "record_id": record_id,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()
