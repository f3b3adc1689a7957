"""Verification codes on records, uniqueness per school, share links that can be listed
and revoked, and school transfers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from archive.verification import new_code

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

OLD_UNIQUE_COLUMNS = ["student_id_number", "school_year", "record_type", "chain_version"]
NEW_UNIQUE = "uq_records_school_pupil_year_type_version"
OLD_UNIQUE = {
    "sqlite": "uq_records_student_id_number_school_year_record_type_chain_version",
    "postgresql": "uq_records_student_id_number_school_year_record_type_ch_8a8e",
}


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _old_unique() -> str:
    """0001's name for the old constraint, as each database keeps it (PostgreSQL's
    shortened by SQLAlchemy to its 63-character limit); no inspection, so that offline
    SQL can be written too."""
    return OLD_UNIQUE[op.get_context().dialect.name]


def _check_foreign_keys() -> None:
    """SQLite rebuilds `records` with foreign keys off (archive.index.migrate): check
    them before the transaction commits."""
    if op.get_context().as_sql:
        return
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        broken = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise RuntimeError(f"foreign keys broken by the migration: {broken[:5]}")


BACKFILL_PAGE = 10_000


def _backfill(table: str, key: str, column: str, make: Callable[[], str]) -> None:
    """Give every row of `table` a fresh `column` value, a page of keys at a time (keyset
    order, one executemany per page), so a large index is neither read into memory nor
    updated a row per round trip. Nothing when writing SQL offline (that SQL is for
    review: values are made per row here, so old rows get theirs when run online)."""
    if op.get_context().as_sql:
        return
    rows = sa.table(table, sa.column(key), sa.column(column))
    update = (rows.update().where(rows.c[key] == sa.bindparam("k"))
              .values({column: sa.bindparam("v")}))
    bind = op.get_bind()
    last: str | None = None
    while True:
        query = sa.select(rows.c[key]).order_by(rows.c[key]).limit(BACKFILL_PAGE)
        if last is not None:
            query = query.where(rows.c[key] > last)
        keys = list(bind.execute(query).scalars())
        if not keys:
            return
        bind.execute(update, [{"k": k, "v": make()} for k in keys])
        last = keys[-1]


def upgrade() -> None:
    with op.batch_alter_table("records", recreate="auto") as batch:
        batch.add_column(sa.Column("verification_code", sa.String(32), nullable=True))
        batch.drop_constraint(_old_unique(), type_="unique")
        batch.create_unique_constraint(NEW_UNIQUE, ["school_code", *OLD_UNIQUE_COLUMNS])
    _backfill("records", "id", "verification_code", new_code)
    op.create_index(op.f("ix_records_verification_code"), "records", ["verification_code"],
                    unique=True)
    op.create_index(op.f("ix_records_student_id_number"), "records", ["student_id_number"])

    op.add_column("share_links", sa.Column("id", sa.String(36), nullable=True))
    op.add_column("share_links", sa.Column("revoked_at", _utc(), nullable=True))
    op.add_column("share_links", sa.Column("revoked_by", sa.String(128), nullable=True))
    _backfill("share_links", "token_sha256", "id", lambda: str(uuid.uuid4()))
    op.create_index(op.f("ix_share_links_id"), "share_links", ["id"], unique=True)

    op.create_table(
        "transfers",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("student_id_number", sa.String(32), nullable=False),
        sa.Column("from_school", sa.String(64), nullable=False),
        sa.Column("to_school", sa.String(64), nullable=False),
        sa.Column("from_tenant", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfers")),
        sa.CheckConstraint("from_school <> to_school", name=op.f("ck_transfers_schools")),
    )
    op.create_index(op.f("ix_transfers_to_school_student_id_number"), "transfers",
                    ["to_school", "student_id_number"])
    op.create_index(op.f("ix_transfers_from_school_created_at"), "transfers",
                    ["from_school", "created_at"])
    _check_foreign_keys()


def downgrade() -> None:
    """Refused by the database where two schools hold a record for the same pupil,
    year and type (what 0004 allows)."""
    op.drop_index(op.f("ix_transfers_from_school_created_at"), table_name="transfers")
    op.drop_index(op.f("ix_transfers_to_school_student_id_number"), table_name="transfers")
    op.drop_table("transfers")
    op.drop_index(op.f("ix_share_links_id"), table_name="share_links")
    with op.batch_alter_table("share_links") as batch:
        batch.drop_column("revoked_by")
        batch.drop_column("revoked_at")
        batch.drop_column("id")
    op.drop_index(op.f("ix_records_student_id_number"), table_name="records")
    op.drop_index(op.f("ix_records_verification_code"), table_name="records")
    with op.batch_alter_table("records", recreate="auto") as batch:
        batch.drop_constraint(NEW_UNIQUE, type_="unique")
        batch.create_unique_constraint(_old_unique(), OLD_UNIQUE_COLUMNS)
        batch.drop_column("verification_code")
    _check_foreign_keys()
