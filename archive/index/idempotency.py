"""Idempotency answers: one row per (tenant, key).

A row is either an answer (status_code > 0, response_json the body) or a reservation
(status_code PENDING, response_json the holder's token): the caller that reserved the key
produces the answer and then fills it in, or releases the key when it failed. The
primary key on (tenant, key) makes the reservation atomic on SQLite and PostgreSQL, across
processes."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from archive.errors import IdempotencyConflict
from archive.index import schema as t
from archive.index.base import IndexBase, is_unique_violation
from archive.index.rows import IdempotencyRow, IdempotencyWrite

# status_code of a reservation: its answer is being produced
PENDING = 0


@dataclass(frozen=True)
class Reservation:
    """What reserve_idempotent found: `token` set when this caller now holds the key (it
    produces the answer); otherwise the row that holds the key (an answer, or another
    caller's reservation)."""

    token: str | None
    row: IdempotencyRow | None


def _idempotency(row: sa.Row[Any]) -> IdempotencyRow:
    return IdempotencyRow(**row._mapping)


def _is_key(tenant: str, key: str) -> sa.ColumnElement[bool]:
    return sa.and_(t.idempotency.c.tenant == tenant, t.idempotency.c.key == key)


def _held_by(tenant: str, key: str, token: str) -> sa.ColumnElement[bool]:
    return sa.and_(_is_key(tenant, key), t.idempotency.c.status_code == PENDING,
                   t.idempotency.c.response_json == token)


class IdempotencyMixin(IndexBase):
    def get_idempotent(self, tenant: str, key: str) -> IdempotencyRow | None:
        """The row holding the key: an answer, or a reservation (status_code PENDING)."""
        with self._read() as conn:
            return self._get_idempotent(conn, tenant, key)

    def reserve_idempotent(self, tenant: str, key: str, request_hash: str, *,
                           stale_after: timedelta) -> Reservation:
        """Reserve the key for the request `request_hash`, unless a row holds it. A
        reservation of the same request older than `stale_after` (its holder died) is
        taken over."""
        token = secrets.token_hex(16)
        now = self._now()
        with self._write() as conn:
            # A row released between the insert and the read (PostgreSQL: another
            # transaction's delete) frees the key: try again, a few times at most.
            for _ in range(3):
                inserted = self._insert_or_ignore(conn, t.idempotency, {
                    "tenant": tenant, "key": key, "request_hash": request_hash,
                    "status_code": PENDING, "response_json": token, "created_at": now})
                if inserted:
                    return Reservation(token, None)
                row = self._get_idempotent(conn, tenant, key)
                if row is None:
                    continue
                if (row.status_code == PENDING and row.request_hash == request_hash
                        and row.created_at <= now - stale_after):
                    taken = conn.execute(
                        t.idempotency.update()
                        .where(_held_by(tenant, key, row.response_json))
                        .values(response_json=token, created_at=now)
                    ).rowcount
                    if taken == 1:
                        return Reservation(token, None)
                    row = self._get_idempotent(conn, tenant, key)
                return Reservation(None, row)
        return Reservation(None, None)

    def complete_idempotent(self, tenant: str, key: str, token: str, status_code: int,
                            response_json: str) -> bool:
        """Fill in the answer of the reservation `token`; False when it is no longer held
        by that token (taken over as stale), and then nothing changes."""
        if status_code <= PENDING:
            raise ValueError(f"an answer needs an HTTP status, not {status_code}")
        with self._write() as conn:
            done = conn.execute(
                t.idempotency.update().where(_held_by(tenant, key, token))
                .values(status_code=status_code, response_json=response_json)
            ).rowcount
        return bool(done == 1)

    def release_idempotent(self, tenant: str, key: str, token: str) -> bool:
        """Give the key up (no answer kept); False when `token` no longer holds it."""
        with self._write() as conn:
            done = conn.execute(t.idempotency.delete().where(_held_by(tenant, key, token))
                                ).rowcount
        return bool(done == 1)

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
        row = conn.execute(sa.select(t.idempotency).where(_is_key(tenant, key))).first()
        return _idempotency(row) if row else None

    def _insert_or_ignore(self, conn: Connection, table: sa.Table,
                          values: dict[str, Any]) -> bool:
        """Insert unless the primary key is taken; whether the row was inserted."""
        stmt: sqlite.Insert | postgresql.Insert
        if self.dialect == "sqlite":
            stmt = sqlite.insert(table).values(**values).on_conflict_do_nothing()
        elif self.dialect == "postgresql":
            stmt = postgresql.insert(table).values(**values).on_conflict_do_nothing()
        else:
            raise NotImplementedError(f"index dialect {self.dialect} is not supported")
        # RETURNING, not rowcount: psycopg's rowcount is not the inserted count here
        return conn.execute(stmt.returning(sa.literal(1))).first() is not None

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
