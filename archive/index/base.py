"""The index's connection: engine, read and write transactions, clock, SQLite settings.

Every aggregate mixin of `Index` derives from `IndexBase`.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

from archive.errors import ArchiveError
from archive.index import migrate as migrations

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Rows one read fetches when paging (objects, audit chain).
PAGE_SIZE = 500


def utc_now() -> datetime:
    return datetime.now(UTC)


def is_unique_violation(e: sa.exc.IntegrityError) -> bool:
    sqlstate = getattr(e.orig, "sqlstate", None)  # psycopg
    if sqlstate is not None:
        return bool(sqlstate == "23505")
    name = getattr(e.orig, "sqlite_errorname", "")
    return name in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY")


class IndexBase:
    def __init__(self, url: str, *, clock: Callable[[], datetime] = utc_now) -> None:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self._clock = clock
        self._engine: Engine = sa.create_engine(parsed, pool_pre_ping=True)
        self.dialect = self._engine.dialect.name
        if self.dialect == "sqlite":
            _configure_sqlite(self._engine)

    def migrate(self) -> None:
        """Upgrade the schema to the newest revision (see `archive.index.migrate`).

        Safe to call from several workers starting at once, and a no-op when up to date.
        An index made by `create_all` before there were migrations is stamped first."""
        try:
            migrations.upgrade(self._engine)
        except sa.exc.OperationalError as e:
            raise ArchiveError(f"index unavailable: {e}", code="index_unavailable") from e

    def schema_revision(self) -> str | None:
        """The revision the database is at (None before the first migration)."""
        with self._read() as conn:
            return migrations.current_revision(conn)

    def close(self) -> None:
        self._engine.dispose()

    def check(self) -> None:
        with self._read() as conn:
            conn.execute(sa.select(1))

    def _now(self) -> datetime:
        now = self._clock()
        if now.utcoffset() is None:
            raise ValueError("the clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except sa.exc.OperationalError as e:
            raise ArchiveError(f"index unavailable: {e}", code="index_unavailable") from e

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction; on SQLite it takes the write lock up front."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(hocba_begin="IMMEDIATE")
                with conn.begin():
                    yield conn
        except sa.exc.OperationalError as e:
            raise ArchiveError(f"index unavailable: {e}", code="index_unavailable") from e

    def _insert_ignoring_duplicate(
        self, conn: Connection, table: sa.Table, values: Mapping[str, Any]
    ) -> None:
        if self.dialect == "sqlite":
            conn.execute(sqlite.insert(table).values(**values).on_conflict_do_nothing())
        elif self.dialect == "postgresql":
            conn.execute(postgresql.insert(table).values(**values).on_conflict_do_nothing())
        else:
            raise NotImplementedError(f"index dialect {self.dialect} is not supported")


def _switch_to_wal(cursor: Any) -> None:
    """WAL mode, waiting out other connections. SQLite answers "database is locked" here
    without calling the busy handler while another connection recovers a WAL left by a
    killed process, or switches a new database itself: retry until the busy timeout."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            busy = "locked" in str(e) or "busy" in str(e)
            if not busy or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.01, 0.05))  # noqa: S311 - jitter, not a secret


def _configure_sqlite(engine: Engine) -> None:
    """WAL, busy timeout, foreign keys; and BEGIN emitted by us, IMMEDIATE for writes."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own
        cursor = dbapi_connection.cursor()
        try:
            # The timeout first: on a new database, workers starting at once race to
            # switch it to WAL.
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            _switch_to_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("hocba_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")
