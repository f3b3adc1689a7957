"""Evidence records (RFC 4998): batches (a hash tree and its timestamp) and each archived
object's evidence records, one row per generation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "evidence_batches",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("root", sa.String(128), nullable=False),
        sa.Column("timestamp_time", _utc(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_batches")),
        sa.CheckConstraint("kind IN ('initial', 'timestamp', 'hash_tree')",
                           name=op.f("ck_evidence_batches_kind")),
    )
    op.create_table(
        "evidence",
        sa.Column("object_sha256", sa.String(64), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("evidence_sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(36), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("valid_until", _utc(), nullable=False),
        sa.Column("current", sa.Boolean(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("object_sha256", "generation", name=op.f("pk_evidence")),
        sa.ForeignKeyConstraint(["record_id"], ["records.id"],
                                name=op.f("fk_evidence_record_id_records")),
        sa.ForeignKeyConstraint(["batch_id"], ["evidence_batches.id"],
                                name=op.f("fk_evidence_batch_id_evidence_batches")),
    )
    op.create_index(op.f("ix_evidence_record_id"), "evidence", ["record_id"])
    op.create_index(op.f("ix_evidence_batch_id_current"), "evidence",
                    ["batch_id", "current"])
    op.create_index(op.f("ix_evidence_current_valid_until"), "evidence",
                    ["current", "valid_until"])


def downgrade() -> None:
    op.drop_table("evidence")
    op.drop_table("evidence_batches")
