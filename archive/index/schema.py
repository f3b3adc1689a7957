"""Index tables (SQLAlchemy Core). Portable between SQLite and PostgreSQL.

The database schema is made by the migrations in `archive/index/migrations/versions/`;
a change here needs a new revision there (tests/unit/archive/test_migrations.py checks
that the migrated database and this model agree).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on every backend.

    SQLite keeps no offset, so values are stored as naive UTC there and tagged on read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime refused (use UTC): {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

SHA256 = sa.String(64)

records = sa.Table(
    "records",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("school_code", sa.String(64), nullable=False),
    sa.Column("school_name", sa.Text, nullable=False),
    sa.Column("record_type", sa.String(64), nullable=False),
    sa.Column("policy", sa.String(128), nullable=False),
    sa.Column("student_id_number", sa.String(32), nullable=False),
    sa.Column("school_year", sa.String(16), nullable=False),
    sa.Column("metadata_json", sa.Text, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("current_sha256", SHA256, nullable=False),
    sa.Column("current_size", sa.BigInteger, nullable=False),
    sa.Column("original_sha256", SHA256, nullable=False),
    sa.Column("supersedes", sa.String(36), sa.ForeignKey("records.id"), nullable=True),
    sa.Column("superseded_by", sa.String(36), sa.ForeignKey("records.id"), nullable=True),
    sa.Column("chain_version", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("archived_at", UTCDateTime, nullable=True),
    # What the record's QR code carries (archive.verification); every record has one
    # from revision 0004 on.
    sa.Column("verification_code", sa.String(32), nullable=True),
    # One record per school, pupil, year and type at each step of a correction chain:
    # uniqueness is per school, so no school can learn from a refusal that another
    # school holds a record for a pupil (docs/CONTRACT.md, "Transfers").
    sa.UniqueConstraint("school_code", "student_id_number", "school_year", "record_type",
                        "chain_version", name="uq_records_school_pupil_year_type_version"),
    sa.Index(None, "school_code", "school_year"),
    sa.Index(None, "verification_code", unique=True),
    sa.Index(None, "student_id_number"),
    sa.Index(None, "tenant", "status"),
)

signatures = sa.Table(
    "signatures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.String(36), sa.ForeignKey("records.id"), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("signer_key", sa.String(128), nullable=True),
    sa.Column("signer_subject", sa.Text, nullable=False),
    sa.Column("signer_issuer", sa.Text, nullable=False),
    sa.Column("signer_serial", sa.String(128), nullable=False),
    sa.Column("field_name", sa.String(128), nullable=False),
    sa.Column("signed_at", UTCDateTime, nullable=False),
    sa.Column("revision_sha256", SHA256, nullable=False),
    sa.UniqueConstraint("record_id", "role"),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("record_id", sa.String(36), sa.ForeignKey("records.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("sha256", SHA256, nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    # until when its newest document timestamp can be validated (renew before); NULL:
    # not known yet (archived before 0005)
    sa.Column("timestamp_valid_until", UTCDateTime, nullable=True),
    sa.Index(None, "sha256"),
)

# Evidence records (RFC 4998): one row per batch (a hash tree and its timestamp), one
# per evidence record of an archived object; generation 1 is the first, each renewal
# adds the next. The record is the newest generation's stored object.
evidence_batches = sa.Table(
    "evidence_batches",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("algorithm", sa.String(16), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("root", sa.String(128), nullable=False),
    sa.Column("timestamp_time", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("kind IN ('initial', 'timestamp', 'hash_tree')", name="kind"),
)

evidence = sa.Table(
    "evidence",
    metadata,
    sa.Column("object_sha256", SHA256, primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("record_id", sa.String(36), sa.ForeignKey("records.id"), nullable=False),
    sa.Column("evidence_sha256", SHA256, nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("batch_id", sa.String(36), sa.ForeignKey("evidence_batches.id"),
              nullable=False),
    sa.Column("algorithm", sa.String(16), nullable=False),
    # until when its newest archive timestamp can be validated (renew before)
    sa.Column("valid_until", UTCDateTime, nullable=False),
    sa.Column("current", sa.Boolean, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index(None, "record_id"),
    sa.Index(None, "batch_id", "current"),
    sa.Index(None, "current", "valid_until"),
)

objects = sa.Table(
    "objects",
    metadata,
    sa.Column("sha256", SHA256, primary_key=True),
    sa.Column("area", sa.String(16), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("record_id", sa.String(36), sa.ForeignKey("records.id"), nullable=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("tenant", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", SHA256, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response_json", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

audit = sa.Table(
    "audit",
    metadata,
    # Assigned as last seq + 1 under the append lock, so the hash can cover it and a
    # gap is as evident as a broken link.
    sa.Column(
        "seq",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("record_id", sa.String(36), nullable=True),
    sa.Column("detail_json", sa.Text, nullable=False),
    sa.Column("prev_hash", SHA256, nullable=False),
    sa.Column("hash", SHA256, nullable=False),
    sa.Index(None, "record_id"),
)

# Long-running work (batch signing, audits) with its progress persisted, so a restarted
# worker can resume it. `done` counts every item handled, failed or not; `failed_json`
# lists the items that failed.
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("done", sa.Integer, nullable=False),
    sa.Column("failed_json", sa.Text, nullable=False),
    sa.Column("params_json", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=True),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_until", UTCDateTime, nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'finished')", name="status"),
    sa.CheckConstraint("total >= 0 AND done >= 0 AND done <= total", name="progress"),
    sa.Index(None, "status"),
    sa.Index(None, "tenant", "created_at"),
)

# Links that let a receiving school (transfer) or a guardian see one record. Only the
# SHA-256 of the token is kept; the token itself is shown once, to its creator.
share_links = sa.Table(
    "share_links",
    metadata,
    sa.Column("token_sha256", SHA256, primary_key=True),
    sa.Column("record_id", sa.String(36), sa.ForeignKey("records.id"), nullable=False),
    sa.Column("purpose", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("uses", sa.Integer, nullable=False),
    # The link's public id (for listing and revoking it; never the token).
    sa.Column("id", sa.String(36), nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("revoked_by", sa.String(128), nullable=True),
    sa.CheckConstraint("purpose IN ('transfer', 'guardian')", name="purpose"),
    sa.CheckConstraint("uses >= 0", name="uses"),
    sa.Index(None, "record_id"),
    sa.Index(None, "id", unique=True),
)

# School transfers: the sending school lets the receiving school read one pupil's
# archived records (never change them). Kept for ever, like the records.
transfers = sa.Table(
    "transfers",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("student_id_number", sa.String(32), nullable=False),
    sa.Column("from_school", sa.String(64), nullable=False),
    sa.Column("to_school", sa.String(64), nullable=False),
    sa.Column("from_tenant", sa.String(64), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("note", sa.Text, nullable=True),
    sa.CheckConstraint("from_school <> to_school", name="schools"),
    sa.Index(None, "to_school", "student_id_number"),
    sa.Index(None, "from_school", "created_at"),
)

# Two-step signing (client-held keys): what was prepared for the client to sign, so the
# session survives a restart. The prepared PDFs are working objects in the store.
signing_sessions = sa.Table(
    "signing_sessions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("state_json", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("completed_at", UTCDateTime, nullable=True),
    sa.CheckConstraint("kind IN ('single', 'batch')", name="kind"),
    sa.CheckConstraint("status IN ('open', 'completed')", name="status"),
)

# Service-wide flags every worker and instance reads (readiness): a row while the flag is
# raised. Raised by the service (e.g. `archive_lock`: the store kept a weaker Object Lock
# than asked), cleared only by an operator; both are audited.
service_flags = sa.Table(
    "service_flags",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("raised_at", UTCDateTime, nullable=False),
    sa.Column("last_raised_at", UTCDateTime, nullable=False),
    sa.Column("occurrences", sa.Integer, nullable=False),
    sa.Column("record_id", sa.String(36), nullable=True),
    sa.CheckConstraint("occurrences >= 1", name="occurrences"),
)
