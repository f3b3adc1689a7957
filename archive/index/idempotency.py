"""Idempotency answers: one stored answer per (tenant, key)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from archive.errors import IdempotencyConflict
from archive.index import schema as t
from archive.index.base import IndexBase, is_unique_violation
from archive.index.rows import IdempotencyRow, IdempotencyWrite


def _idempotency(row: sa.Row[Any]) -> IdempotencyRow:
    return IdempotencyRow(**row._mapping)


class IdempotencyMixin(IndexBase):
    def get_idempotent(self, tenant: str, key: str) -> IdempotencyRow | None:
        with self._read() as conn:
            return self._get_idempotent(conn, tenant, key)

    def put_idempotent(self, answer: IdempotencyWrite) -> IdempotencyRow:
        """Store an answer; if the key is already taken, return the row that holds it."""
        with self._write() as conn:
            self._insert_ignoring_duplicate(
                conn, t.idempotency, {**asdict(answer), "created_at": self._now()}
            )
            row = self._get_idempotent(conn, answer.tenant, answer.key)
        assert row is not None
        return row

    def _get_idempotent(self, conn: Connection, tenant: str, key: str) -> IdempotencyRow | None:
        row = conn.execute(
            sa.select(t.idempotency).where(
                t.idempotency.c.tenant == tenant, t.idempotency.c.key == key
            )
        ).first()
        return _idempotency(row) if row else None

    def _insert_idempotent(
        self, conn: Connection, idempotency: IdempotencyWrite, now: datetime
    ) -> None:
        """Store the answer of a step in its transaction; a taken key raises."""
        try:
            conn.execute(t.idempotency.insert().values(**asdict(idempotency), created_at=now))
        except sa.exc.IntegrityError as e:
            if is_unique_violation(e):
                raise IdempotencyConflict(
                    f"idempotency key {idempotency.key!r} is already used"
                ) from e
            raise
