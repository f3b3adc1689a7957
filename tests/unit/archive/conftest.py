"""Index fixtures: every index test runs on SQLite, and on PostgreSQL when reachable.

PostgreSQL: HOCBA_TEST_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
Each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from archive.index import Index
from tests.conftest import skip_or_fail

PG_URL = os.environ.get("HOCBA_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class StepClock:
    """A clock that moves one second per reading, from a fixed start."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def clock() -> StepClock:
    return StepClock(datetime(2025, 5, 20, 8, 0, 0, 123456, tzinfo=UTC))


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg is not installed: PostgreSQL index tests skipped",
                     "HOCBA_REQUIRE_POSTGRES")
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(1))
    except sa.exc.OperationalError as e:
        engine.dispose()
        skip_or_fail(f"PostgreSQL not reachable at {PG_URL}: {e.orig}", "HOCBA_REQUIRE_POSTGRES")
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def index_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'index.sqlite3'}"
        return
    admin: sa.Engine = request.getfixturevalue("pg_admin")
    schema = f"hocba_test_{uuid.uuid4().hex[:16]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def index(index_url: str, clock: StepClock) -> Iterator[Index]:
    idx = Index(index_url, clock=clock)
    idx.migrate()
    yield idx
    idx.close()


def raw_sql(url: str, statement: str, **params: object) -> None:
    """Change rows behind the index's back (tampering, in tests)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement), params)
    finally:
        engine.dispose()
