"""Alembic environment of the index, loaded by alembic for each command.

Online, the connection comes in `config.attributes["connection"]`, already inside the
transaction (and lock) that `archive.index.migrate.upgrade` holds; alembic then leaves
transactions alone. Offline (`sql=True`), the SQL for `sqlalchemy.url`'s dialect is written
to the config's output buffer, for review by whoever runs the database.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from archive.index import schema

config = context.config


def _options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": schema.metadata,
        "compare_type": True,
        # SQLite alters tables by copying them; lets later revisions use batch_alter_table.
        "render_as_batch": dialect_name == "sqlite",
    }


def run_offline() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("offline migrations need sqlalchemy.url (for the SQL dialect)")
    dialect_name = url.split(":", 1)[0].split("+", 1)[0]
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **_options(dialect_name),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "index migrations run on a connection given by archive.index.migrate "
            "(config.attributes['connection']); use Index.migrate()"
        )
    context.configure(connection=connection, **_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
