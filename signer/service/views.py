"""What the API answers about records, versions and jobs (JSON-ready dicts)."""

from __future__ import annotations

import json
from typing import Any

from archive.index.records import ArchivingAttempts
from archive.index.rows import (
    ARCHIVED,
    AWAITING_SIGNATURES,
    JobRow,
    RecordRow,
    SignatureRow,
    VersionRow,
)
from archive.times import rfc3339, rfc3339_or_none
from archive.verification import display, verify_url
from signer.policy import Policy

ARCHIVING = "archiving"
"""A record's status in its view (never stored) when every role has signed and it is
not archived yet: hocba finishes it by itself (signer.service.jobs, the finish job)."""


def view_status(row: RecordRow, policy: Policy | None, signed_roles: set[str]) -> str:
    """`archiving` for a record awaiting signatures whose roles have all signed (not
    superseded); else the stored status."""
    if (row.status == AWAITING_SIGNATURES and not row.superseded_by and policy is not None
            and signed_roles and policy.next_role(signed_roles) is None):
        return ARCHIVING
    return row.status


def record_view(row: RecordRow, policy: Policy | None, signatures: list[SignatureRow],
                versions: list[VersionRow] | None, public_base_url: str, *,
                archiving: ArchivingAttempts | None = None) -> dict[str, Any]:
    """A record: its roles in policy order, signed or pending, and once archived where
    its final is (`versions`: needed for archived records only). Status `archiving`:
    every role signed, the archive still to come; `archiving` (the index's failed
    attempts, when given) says what went wrong last and when hocba tries again."""
    signed = {s.role: s for s in signatures}
    roles = policy.role_names if policy else tuple(signed)
    sigs: list[dict[str, Any]] = []
    for role in roles:
        s = signed.get(role)
        item: dict[str, Any] = {"role": role, "status": "signed" if s else "pending"}
        if s:
            item["signer"] = {"subject": s.signer_subject, "issuer": s.signer_issuer,
                              "serial": s.signer_serial, "key": s.signer_key}
            item["signed_at"] = rfc3339(s.signed_at)
        sigs.append(item)
    nxt = policy.next_role(set(signed)) if policy else None
    meta = json.loads(row.metadata_json)
    status = view_status(row, policy, set(signed))
    body: dict[str, Any] = {
        "id": row.id, "status": status, "record_type": row.record_type,
        "policy": row.policy, "school": meta.get("school"),
        "school_year": row.school_year, "signatures": sigs,
        "next_role": nxt.name if nxt and row.status != ARCHIVED else None,
        "document": {"sha256": row.current_sha256, "size": row.current_size},
        "supersedes": row.supersedes, "superseded_by": row.superseded_by,
        "created_at": rfc3339(row.created_at), "updated_at": rfc3339(row.updated_at),
    }
    code = row.verification_code
    body["verification_code"] = display(code) if code else None
    if status == ARCHIVING and archiving is not None:
        body["archiving"] = archiving_view(archiving)
    if row.status == ARCHIVED:
        body["archive"] = {
            "sha256": row.current_sha256, "size": row.current_size,
            "archived_at": rfc3339_or_none(row.archived_at),
            "version": versions[-1].version if versions else None,
            "verify_url": verify_url(public_base_url, code) if code else None,
        }
    return body


def archiving_view(attempts: ArchivingAttempts) -> dict[str, Any]:
    """How hocba's finishing of a signed record goes: failed attempts so far, the last
    one's error code and time, when it tries again (null: at its next round)."""
    last = attempts.last.detail if attempts.last else {}
    return {"attempts": attempts.attempts,
            "last_error": last.get("code"),
            "last_attempt_at": rfc3339(attempts.last.at) if attempts.last else None,
            "next_attempt_at": last.get("next_attempt_at")}


def version_view(v: VersionRow) -> dict[str, Any]:
    return {"version": v.version, "sha256": v.sha256, "size": v.size,
            "created_at": rfc3339(v.created_at), "reason": v.reason,
            "timestamp_valid_until": rfc3339_or_none(v.timestamp_valid_until)}


def signature_view(s: SignatureRow) -> dict[str, Any]:
    """A signature as a package's metadata lists it."""
    return {"role": s.role, "position": s.position, "field": s.field_name,
            "signer": {"subject": s.signer_subject, "issuer": s.signer_issuer,
                       "serial": s.signer_serial, "key": s.signer_key},
            "signed_at": rfc3339(s.signed_at), "revision_sha256": s.revision_sha256}


def chain_item_view(r: RecordRow) -> dict[str, Any]:
    return {"id": r.id, "chain_version": r.chain_version, "status": r.status,
            "supersedes": r.supersedes, "superseded_by": r.superseded_by,
            "created_at": rfc3339(r.created_at), "archived_at": rfc3339_or_none(r.archived_at)}


def job_view(job: JobRow) -> dict[str, Any]:
    failed = job.failed
    return {"job_id": job.id, "kind": job.kind, "status": job.status, "total": job.total,
            "done": job.done - len(failed), "failed": failed,
            "created_at": rfc3339(job.created_at),
            "finished_at": rfc3339_or_none(job.finished_at)}
