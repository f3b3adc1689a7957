"""Job leases (one worker runs a job; a dead worker's job is taken over) and two-step
signing sessions (client-held keys), persisted so a restart loses neither.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("jobs", sa.Column("lease_owner", sa.String(128), nullable=True))
    op.add_column("jobs", sa.Column("lease_until", _utc(), nullable=True))
    op.create_table(
        "signing_sessions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("state_json", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("completed_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_sessions")),
        sa.CheckConstraint("kind IN ('single', 'batch')", name=op.f("ck_signing_sessions_kind")),
        sa.CheckConstraint(
            "status IN ('open', 'completed')", name=op.f("ck_signing_sessions_status")
        ),
    )


def downgrade() -> None:
    op.drop_table("signing_sessions")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
