"""Service-wide flags (readiness shared by every worker and instance): one row per raised
flag, such as `archive_lock`.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "service_flags",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("raised_at", _utc(), nullable=False),
        sa.Column("last_raised_at", _utc(), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("record_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_service_flags")),
        sa.CheckConstraint("occurrences >= 1", name=op.f("ck_service_flags_occurrences")),
    )


def downgrade() -> None:
    op.drop_table("service_flags")
