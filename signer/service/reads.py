"""Reads of a record's document are audited, whoever reads (Decree 13/2023: every read
of a pupil's data leaves a trace)."""

from __future__ import annotations

import re
from typing import Any

from archive.index import Index
from archive.index.rows import RecordRow
from signer.errors import FieldError, RequestError
from signer.service.actors import Actor

DOCUMENT_READ = "record.document_read"
DEFAULT_PURPOSE = "school_system"
PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def read_purpose(text: str | None) -> str:
    """The `purpose` a reader states (query parameter), or the default."""
    if text is None or text == "":
        return DEFAULT_PURPOSE
    if not PURPOSE.match(text):
        message = "lowercase letters, digits and _, at most 32 characters"
        raise RequestError(f"purpose: {message}", code="query_invalid",
                           errors=[FieldError("purpose", message)])
    return text


def audit_read(index: Index, actor: Actor, row: RecordRow, purpose: str,
               **detail: Any) -> None:
    """One audit row per read of a record's document: who (and from which tenant), which
    record, why. Under the record's tenant, so the school that holds it sees every read."""
    index.append_audit(actor.name, row.tenant, DOCUMENT_READ, row.id,
                       {"purpose": purpose, "reader_tenant": actor.client.tenant, **detail})
