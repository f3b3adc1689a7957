"""Initial index: records, signatures, versions, objects, idempotency, audit.

Exactly the tables `schema.metadata.create_all` made before the index had migrations, so
such an index is stamped at this revision rather than created again. Names are given with
`op.f` so that they are truncated (PostgreSQL: 63 characters) as the naming convention's
names were, and constraints come in create_all's order (SQLite keeps the CREATE TABLE text).

Revision ID: 0001
Revises:
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

SHA256 = sa.String(64)


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("school_code", sa.String(64), nullable=False),
        sa.Column("school_name", sa.Text(), nullable=False),
        sa.Column("record_type", sa.String(64), nullable=False),
        sa.Column("policy", sa.String(128), nullable=False),
        sa.Column("student_id_number", sa.String(32), nullable=False),
        sa.Column("school_year", sa.String(16), nullable=False),
        sa.Column("metadata_json", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("current_sha256", SHA256, nullable=False),
        sa.Column("current_size", sa.BigInteger(), nullable=False),
        sa.Column("original_sha256", SHA256, nullable=False),
        sa.Column("supersedes", sa.String(36), nullable=True),
        sa.Column("superseded_by", sa.String(36), nullable=True),
        sa.Column("chain_version", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("archived_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
        sa.UniqueConstraint(
            "student_id_number",
            "school_year",
            "record_type",
            "chain_version",
            name=op.f("uq_records_student_id_number_school_year_record_type_chain_version"),
        ),
        sa.ForeignKeyConstraint(
            ["supersedes"], ["records.id"], name=op.f("fk_records_supersedes_records")
        ),
        sa.ForeignKeyConstraint(
            ["superseded_by"], ["records.id"], name=op.f("fk_records_superseded_by_records")
        ),
    )
    op.create_index(
        op.f("ix_records_school_code_school_year"), "records", ["school_code", "school_year"]
    )
    op.create_index(op.f("ix_records_tenant_status"), "records", ["tenant", "status"])

    op.create_table(
        "signatures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("signer_key", sa.String(128), nullable=True),
        sa.Column("signer_subject", sa.Text(), nullable=False),
        sa.Column("signer_issuer", sa.Text(), nullable=False),
        sa.Column("signer_serial", sa.String(128), nullable=False),
        sa.Column("field_name", sa.String(128), nullable=False),
        sa.Column("signed_at", _utc(), nullable=False),
        sa.Column("revision_sha256", SHA256, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signatures")),
        sa.UniqueConstraint("record_id", "role", name=op.f("uq_signatures_record_id_role")),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name=op.f("fk_signatures_record_id_records")
        ),
    )

    op.create_table(
        "versions",
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sha256", SHA256, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("record_id", "version", name=op.f("pk_versions")),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name=op.f("fk_versions_record_id_records")
        ),
    )
    op.create_index(op.f("ix_versions_sha256"), "versions", ["sha256"])

    op.create_table(
        "objects",
        sa.Column("sha256", SHA256, nullable=False),
        sa.Column("area", sa.String(16), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("sha256", "area", name=op.f("pk_objects")),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name=op.f("fk_objects_record_id_records")
        ),
    )

    op.create_table(
        "idempotency",
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", SHA256, nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_json", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "key", name=op.f("pk_idempotency")),
    )

    op.create_table(
        "audit",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=False,
            nullable=False,
        ),
        sa.Column("at", _utc(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=True),
        sa.Column("detail_json", sa.Text(), nullable=False),
        sa.Column("prev_hash", SHA256, nullable=False),
        sa.Column("hash", SHA256, nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit")),
    )
    op.create_index(op.f("ix_audit_record_id"), "audit", ["record_id"])


def downgrade() -> None:
    raise RuntimeError("refusing to drop the archive index (downgrade below 0001)")
