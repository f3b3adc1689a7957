"""Schema migrations of the index, run in code with alembic (no alembic.ini).

`upgrade` is safe when several processes start at once: the whole upgrade is one
transaction that first takes a lock (PostgreSQL: a transaction-level advisory lock; SQLite:
BEGIN IMMEDIATE, the database's write lock), and alembic reads the current revision only
once it holds that lock. The loser of the race finds the schema at head and does nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from archive.errors import ArchiveError

MIGRATIONS = Path(__file__).resolve().with_name("migrations")
VERSION_TABLE = "alembic_version"
# The revision whose tables `schema.metadata.create_all` made before there were migrations.
INITIAL = "0001"
INITIAL_TABLES = frozenset({"records", "signatures", "versions", "objects", "idempotency", "audit"})
# Key of the PostgreSQL advisory lock held while migrating ("hocm"); the audit log uses
# another key.
MIGRATE_LOCK_KEY = 0x686F636D

# alembic's `context` and `op` are module-level proxies: one command at a time per process.
_alembic_lock = threading.Lock()


def alembic_config(
    connection: Connection | None = None,
    *,
    url: str | None = None,
    output_buffer: TextIO | None = None,
) -> Config:
    """A config for alembic's commands: on `connection` (online), or for `url`'s dialect
    (offline, `sql=True`, SQL written to `output_buffer`)."""
    config = Config(output_buffer=output_buffer)
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at; None for an empty or unversioned database."""
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the index to `revision`; an index made by `create_all` is first stamped at
    INITIAL. Does nothing if it is already there."""
    with _alembic_lock, engine.connect() as conn, _sqlite_foreign_keys_off(conn):
        conn.execution_options(hocba_begin="IMMEDIATE")  # SQLite: take the write lock now
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATE_LOCK_KEY)))
            config = alembic_config(conn)
            if _made_by_create_all(conn):
                command.stamp(config, INITIAL)
            command.upgrade(config, revision)


@contextmanager
def _sqlite_foreign_keys_off(conn: Connection) -> Iterator[None]:
    """SQLite changes a constraint by rebuilding the table, which other tables' foreign
    keys point at: as SQLite's documentation prescribes, foreign keys are off for the
    migration (set outside the transaction; a revision that rebuilds a table runs
    `PRAGMA foreign_key_check` before its transaction commits)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def downgrade(engine: Engine, revision: str) -> None:
    with _alembic_lock, engine.connect() as conn, _sqlite_foreign_keys_off(conn):
        conn.execution_options(hocba_begin="IMMEDIATE")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATE_LOCK_KEY)))
            command.downgrade(alembic_config(conn), revision)


def _made_by_create_all(conn: Connection) -> bool:
    tables = set(sa.inspect(conn).get_table_names())
    if VERSION_TABLE in tables:
        return False
    present = tables & INITIAL_TABLES
    if not present:
        return False
    if present != INITIAL_TABLES:
        raise ArchiveError(
            f"the index has some tables ({', '.join(sorted(present))}) but not all of "
            f"revision {INITIAL} and no {VERSION_TABLE}: refusing to guess its schema",
            code="index_schema_unknown",
        )
    return True
