"""Jobs (batches, audits) with persisted progress; share links for transfers and guardians.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed_json", sa.Text(), nullable=False),
        sa.Column("params_json", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'finished')", name=op.f("ck_jobs_status")
        ),
        sa.CheckConstraint(
            "total >= 0 AND done >= 0 AND done <= total", name=op.f("ck_jobs_progress")
        ),
    )
    op.create_index(op.f("ix_jobs_status"), "jobs", ["status"])
    op.create_index(op.f("ix_jobs_tenant_created_at"), "jobs", ["tenant", "created_at"])

    op.create_table(
        "share_links",
        sa.Column("token_sha256", sa.String(64), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("uses", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_share_links")),
        sa.CheckConstraint(
            "purpose IN ('transfer', 'guardian')", name=op.f("ck_share_links_purpose")
        ),
        sa.CheckConstraint("uses >= 0", name=op.f("ck_share_links_uses")),
        sa.ForeignKeyConstraint(
            ["record_id"], ["records.id"], name=op.f("fk_share_links_record_id_records")
        ),
    )
    op.create_index(op.f("ix_share_links_record_id"), "share_links", ["record_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_share_links_record_id"), table_name="share_links")
    op.drop_table("share_links")
    op.drop_index(op.f("ix_jobs_tenant_created_at"), table_name="jobs")
    op.drop_index(op.f("ix_jobs_status"), table_name="jobs")
    op.drop_table("jobs")
