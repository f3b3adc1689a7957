"""Index migrations (alembic), and the jobs and share links that revision 0002 added.

Every test runs on SQLite and on PostgreSQL (a schema of its own per test), via `index_url`.
"""

from __future__ import annotations

import importlib.util
import io
import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from archive.errors import ArchiveError
from archive.index import (
    JOB_FINISHED,
    JOB_QUEUED,
    JOB_RUNNING,
    SHARE_GUARDIAN,
    SHARE_TRANSFER,
    Index,
)
from archive.index import migrate as migrations
from archive.index import schema as t
from archive.verification import canonical
from tests.unit.archive.conftest import StepClock
from tests.unit.archive.test_index import new_record, run_concurrently

HEAD = "0007"
INITIAL_TABLES = [t.records, t.signatures, t.versions, t.objects, t.idempotency, t.audit]
TOKEN = "ab" * 32


@pytest.fixture
def engine(index_url: str) -> Iterator[sa.Engine]:
    """A plain engine on the test database (no migrations, no index)."""
    engine = sa.create_engine(index_url)
    yield engine
    engine.dispose()


def table_names(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def version_rows(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.text("SELECT version_num FROM alembic_version")))


def structure(engine: sa.Engine, *, raw_sql: bool = True) -> dict[str, Any]:
    """Everything the database says about the index's tables, names of constraints too.
    `raw_sql` adds SQLite's own CREATE text, which ALTER TABLE (0003) words differently."""
    inspector = sa.inspect(engine)
    tables: dict[str, Any] = {}
    for name in sorted(table_names(engine) - {migrations.VERSION_TABLE}):
        pk = inspector.get_pk_constraint(name)
        tables[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)
            ],
            "pk": (pk["name"], pk["constrained_columns"]),
            "fks": sorted(
                (
                    fk["name"],
                    fk["constrained_columns"],
                    fk["referred_table"],
                    fk["referred_columns"],
                )
                for fk in inspector.get_foreign_keys(name)
            ),
            "uniques": sorted(
                (u["name"], u["column_names"]) for u in inspector.get_unique_constraints(name)
            ),
            "indexes": sorted(
                (i["name"], i["column_names"], i["unique"]) for i in inspector.get_indexes(name)
            ),
            "checks": sorted(
                (c["name"], c["sqltext"]) for c in inspector.get_check_constraints(name)
            ),
        }
    if raw_sql and engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            tables["sqlite_master"] = sorted(
                conn.execute(
                    sa.text(
                        "SELECT type, name, sql FROM sqlite_master "
                        "WHERE name != 'alembic_version' AND name NOT LIKE 'sqlite_%'"
                    )
                ).all()
            )
    return tables


def without_records(tables: dict[str, Any]) -> dict[str, Any]:
    """All but `records` and `versions`, which changed in 0004 (verification codes,
    uniqueness per school) and 0005 (timestamp_valid_until): the model's today is not
    what 0001 made."""
    changed = ("records", "versions")
    rest = {name: value for name, value in tables.items() if name not in changed}
    if "sqlite_master" in rest:
        rest["sqlite_master"] = [
            row for row in rest["sqlite_master"]
            if row[1] not in changed and not row[1].startswith(("ix_records_", "ix_versions_"))
        ]
    return rest


def backfill_page() -> int:
    """r0004's backfill page size (its module is loaded by alembic, not importable)."""
    path = migrations.MIGRATIONS / "versions" / "r0004_verification_transfers.py"
    spec = importlib.util.spec_from_file_location("r0004", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.BACKFILL_PAGE)


def made_before_migrations(engine: sa.Engine) -> None:
    """The initial tables as create_all made them before there were migrations (which is
    what 0001 makes, checked above), without alembic's version table."""
    migrations.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE alembic_version"))


def drop_everything(engine: sa.Engine) -> None:
    t.metadata.drop_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))


def migrated_index(url: str, clock: StepClock | None = None) -> Index:
    index = Index(url, clock=clock) if clock else Index(url)
    index.migrate()
    return index


# -- the revisions -------------------------------------------------------------------------


def test_revisions_form_one_line_ending_at_head() -> None:
    scripts = ScriptDirectory.from_config(migrations.alembic_config())
    assert migrations.head_revision() == HEAD
    revisions = [r.revision for r in scripts.walk_revisions("base", "heads")]
    assert revisions == ["0007", "0006", "0005", "0004", "0003", "0002", "0001"]


def test_fresh_index_migrates_to_head(index_url: str, engine: sa.Engine) -> None:
    index = Index(index_url)
    try:
        assert index.schema_revision() is None
        index.migrate()
        assert index.schema_revision() == HEAD
    finally:
        index.close()
    assert table_names(engine) == set(t.metadata.tables) | {"alembic_version"}
    assert version_rows(engine) == [HEAD]


def test_migrated_database_equals_the_model(index_url: str, engine: sa.Engine) -> None:
    migrated_index(index_url).close()
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, t.metadata) == []

        # The comparison can see a difference at all: a column the database lacks.
        changed = sa.MetaData()
        for table in t.metadata.tables.values():
            table.to_metadata(changed)
        changed.tables["jobs"].append_column(sa.Column("priority", sa.Integer))
        [diff] = compare_metadata(context, changed)
        assert diff[0] == "add_column"


def test_migrations_make_what_create_all_makes(index_url: str, engine: sa.Engine) -> None:
    """Same tables, types, constraint and index names: 0001 against the create_all of
    before migrations, and head against the create_all of today's model."""
    t.metadata.create_all(engine, tables=INITIAL_TABLES)
    legacy = without_records(structure(engine))
    drop_everything(engine)
    migrations.upgrade(engine, "0001")
    assert without_records(structure(engine)) == legacy
    assert version_rows(engine) == ["0001"]

    drop_everything(engine)
    t.metadata.create_all(engine)
    model = structure(engine, raw_sql=False)
    drop_everything(engine)
    migrations.upgrade(engine)
    assert structure(engine, raw_sql=False) == model


def test_create_all_index_is_stamped_then_upgraded(
    index_url: str, engine: sa.Engine, clock: StepClock
) -> None:
    made_before_migrations(engine)
    legacy_records = sa.Table("records", sa.MetaData(), autoload_with=engine)
    assert "verification_code" not in legacy_records.c
    # records written before there were migrations: more than one backfill page of 0004
    many = backfill_page() + 3
    row = {"tenant": "DEMO-SCHOOL-1", "school_code": "DEMO-SCHOOL-1",
           "school_name": "Trường Demo", "record_type": "hoc_ba_tieu_hoc", "policy": "p@1",
           "school_year": "2024-2025", "metadata_json": "{}",
           "status": "awaiting_signatures", "current_sha256": "aa" * 32, "current_size": 1,
           "original_sha256": "aa" * 32, "chain_version": 1, "created_at": clock.now,
           "updated_at": clock.now}
    with engine.begin() as conn:
        conn.execute(legacy_records.insert(), [
            {**row, "id": f"r-legacy-{n:06d}", "student_id_number": f"001215{n:06d}"}
            for n in range(many)])

    index = migrated_index(index_url, clock)
    try:
        assert index.schema_revision() == HEAD
        record = index.get_record("r-legacy-000000")
        assert record is not None and record.school_code == "DEMO-SCHOOL-1"
        # 0004 gave every one a verification code of its own, which finds it
        with engine.connect() as conn:
            codes = list(conn.scalars(sa.text("SELECT verification_code FROM records")))
        assert len(codes) == many and len(set(codes)) == many
        assert all(code and canonical(code) == code for code in codes)
        assert record.verification_code
        assert index.find_record_by_verification_code(record.verification_code) == record
        last = index.get_record(f"r-legacy-{many - 1:06d}")
        assert last is not None and last.verification_code
        link = index.create_share_link(
            TOKEN, record.id, SHARE_TRANSFER, "school-1", clock.now + timedelta(days=7)
        )
        assert link.record_id == record.id
        assert index.verify_audit_chain() == (True, None)
    finally:
        index.close()
    assert version_rows(engine) == [HEAD]
    assert table_names(engine) == set(t.metadata.tables) | {"alembic_version"}


def test_0004_gives_old_share_links_ids(index_url: str, engine: sa.Engine,
                                       clock: StepClock) -> None:
    migrations.upgrade(engine, "0003")
    tables = sa.MetaData()
    legacy_records = sa.Table("records", tables, autoload_with=engine)
    legacy_links = sa.Table("share_links", tables, autoload_with=engine)
    assert "id" not in legacy_links.c
    with engine.begin() as conn:
        conn.execute(legacy_records.insert().values(
            id="r1", tenant="S", school_code="S", school_name="S", record_type="t",
            policy="p@1", student_id_number="001215012345", school_year="2024-2025",
            metadata_json="{}", status="archived", current_sha256="aa" * 32,
            current_size=1, original_sha256="aa" * 32, chain_version=1,
            created_at=clock.now, updated_at=clock.now))
        conn.execute(legacy_links.insert(), [
            {"token_sha256": f"{n:064x}", "record_id": "r1", "purpose": "guardian",
             "created_by": "school-1", "created_at": clock.now,
             "expires_at": clock.now + timedelta(days=1), "uses": 0} for n in range(3)])
    index = migrated_index(index_url, clock)
    try:
        links = index.list_share_links("r1")
        assert len(links) == 3 and len({link.id for link in links}) == 3
        assert all(link.id and link.revoked_at is None for link in links)
    finally:
        index.close()


def test_partial_unversioned_schema_is_refused(index_url: str, engine: sa.Engine) -> None:
    t.metadata.create_all(engine, tables=[t.records, t.audit])
    index = Index(index_url)
    try:
        with pytest.raises(ArchiveError) as info:
            index.migrate()
        assert info.value.code == "index_schema_unknown"
    finally:
        index.close()
    assert "alembic_version" not in table_names(engine)


def test_migrate_twice_is_a_no_op(index_url: str, engine: sa.Engine, clock: StepClock) -> None:
    index = migrated_index(index_url, clock)
    try:
        record = new_record(index)
        before = structure(engine)
        index.migrate()
        assert structure(engine) == before
        assert version_rows(engine) == [HEAD]
        assert index.get_record(record.id) == record
    finally:
        index.close()
    migrated_index(index_url).close()  # another worker, later
    assert structure(engine) == before


def test_downgrade_to_0001_and_back(index_url: str, engine: sa.Engine) -> None:
    migrated_index(index_url).close()
    migrations.downgrade(engine, "0001")
    assert version_rows(engine) == ["0001"]
    assert table_names(engine) == {tb.name for tb in INITIAL_TABLES} | {"alembic_version"}
    with pytest.raises(RuntimeError, match="refusing"):
        migrations.downgrade(engine, "base")
    migrated_index(index_url).close()
    assert version_rows(engine) == [HEAD]


def test_offline_sql_for_review() -> None:
    out = io.StringIO()
    config = migrations.alembic_config(url="postgresql://", output_buffer=out)
    command.upgrade(config, "head", sql=True)
    sql = out.getvalue()
    assert "CREATE TABLE records" in sql and "CREATE TABLE share_links" in sql
    # As PostgreSQL truncates identifiers, and as create_all named it.
    assert "uq_records_student_id_number_school_year_record_type_ch_8a8e" in sql
    assert "UPDATE alembic_version SET version_num='0002'" in sql


# -- workers starting at once --------------------------------------------------------------


def test_threads_migrating_at_once(index_url: str, engine: sa.Engine) -> None:
    indexes = [Index(index_url) for _ in range(4)]
    try:
        results = run_concurrently(4, lambda i: indexes[i].migrate())
    finally:
        for index in indexes:
            index.close()
    assert results == [None] * 4
    assert version_rows(engine) == [HEAD]


def _migrate_in_child(url: str, barrier: Any) -> None:
    index = Index(url)
    try:
        barrier.wait(timeout=60)
        index.migrate()
    finally:
        index.close()


@pytest.mark.slow  # four interpreters starting: a few seconds
def test_processes_migrating_at_once(index_url: str, engine: sa.Engine) -> None:
    """Like gunicorn workers: alembic's in-process lock does not help here, the
    database's lock must."""
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(4)
    children = [spawn.Process(target=_migrate_in_child, args=(index_url, barrier)) for _ in "1234"]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0] * 4
    assert version_rows(engine) == [HEAD]
    assert table_names(engine) == set(t.metadata.tables) | {"alembic_version"}


def test_migrate_waits_for_the_database_lock(index_url: str, engine: sa.Engine) -> None:
    index = Index(index_url)
    done = threading.Event()
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            index.migrate()
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    try:
        with index._engine.connect() as holder:
            holder.execution_options(hocba_begin="IMMEDIATE")
            with holder.begin():
                if index.dialect == "postgresql":
                    holder.execute(
                        sa.select(sa.func.pg_advisory_xact_lock(migrations.MIGRATE_LOCK_KEY))
                    )
                else:
                    holder.execute(sa.text("CREATE TABLE other_writer (x INTEGER)"))
                worker = threading.Thread(target=migrate)
                worker.start()
                time.sleep(0.5)
                assert not done.is_set(), "migrate did not wait for the lock"
        worker.join(timeout=30)
        assert done.is_set() and errors == []
        assert index.schema_revision() == HEAD
    finally:
        index.close()


# -- jobs ----------------------------------------------------------------------------------


def new_job(index: Index, total: int = 3, **overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "tenant": "DEMO-SCHOOL-1",
        "kind": "batch_sign",
        "total": total,
        "params": {"role": "principal", "record_ids": ["r1", "r2", "r3"]},
        "actor": "school-1",
    }
    fields.update(overrides)
    return index.create_job(**fields)


def actions(index: Index) -> list[str]:
    return [row.action for row in index.list_audit(limit=1000)]


def test_job_lifecycle(index: Index, clock: StepClock) -> None:
    job = new_job(index)
    assert (job.status, job.total, job.done, job.failed, job.finished_at) == (
        JOB_QUEUED,
        3,
        0,
        [],
        None,
    )
    assert job.params == {"role": "principal", "record_ids": ["r1", "r2", "r3"]}
    assert job.created_at == job.updated_at == clock.now
    assert index.get_job(job.id) == job
    assert index.get_job("no-such-job") is None

    job = index.update_job_progress(job.id, 1)
    assert (job.status, job.done) == (JOB_RUNNING, 1)
    job = index.update_job_progress(job.id, 1, {"record_id": "r2", "error": "stale_revision"})
    assert job.done == 2
    assert job.failed == [{"error": "stale_revision", "record_id": "r2"}]
    assert index.list_unfinished_jobs() == [job]

    job = index.update_job_progress(job.id, 1)
    finished = index.finish_job(job.id, actor="worker-1")
    assert (finished.status, finished.done, finished.finished_at) == (JOB_FINISHED, 3, clock.now)
    assert index.get_job(job.id) == finished
    assert index.list_unfinished_jobs() == []

    assert actions(index) == ["job.created", "job.started", "job.item_failed", "job.finished"]
    *_, last = index.list_audit()
    assert (last.actor, last.tenant, last.detail["failed"]) == ("worker-1", "DEMO-SCHOOL-1", 1)
    assert index.verify_audit_chain() == (True, None)


def test_job_progress_is_refused_when_impossible(index: Index) -> None:
    job = new_job(index, total=2)
    with pytest.raises(ValueError):
        index.update_job_progress(job.id, -1)
    with pytest.raises(ValueError):
        index.update_job_progress(job.id, 0, {"record_id": "r1"})
    with pytest.raises(ArchiveError) as info:
        index.update_job_progress(job.id, 3)
    assert info.value.code == "job_progress_overflow"
    with pytest.raises(ArchiveError) as info:
        index.update_job_progress("no-such-job", 1)
    assert info.value.code == "job_not_found"

    index.finish_job(job.id)
    for step in (lambda: index.update_job_progress(job.id, 1), lambda: index.finish_job(job.id)):
        with pytest.raises(ArchiveError) as info:
            step()
        assert info.value.code == "job_finished"
    assert index.get_job(job.id).done == 0  # type: ignore[union-attr]
    assert actions(index) == ["job.created", "job.finished"]


def test_unfinished_jobs_oldest_first_by_tenant(index: Index) -> None:
    first = new_job(index)
    other = new_job(index, tenant="DEMO-SCHOOL-2")
    done = index.finish_job(new_job(index).id)
    assert [j.id for j in index.list_unfinished_jobs()] == [first.id, other.id]
    assert [j.id for j in index.list_unfinished_jobs("DEMO-SCHOOL-2")] == [other.id]
    assert done.id not in {j.id for j in index.list_unfinished_jobs()}


def test_concurrent_progress_is_not_lost(index: Index) -> None:
    job = new_job(index, total=8)
    results = run_concurrently(
        8,
        lambda i: index.update_job_progress(
            job.id, 1, {"record_id": f"r{i}", "error": "x"} if i % 2 else None
        ),
    )
    assert not [r for r in results if isinstance(r, Exception)]
    final = index.get_job(job.id)
    assert final is not None
    assert final.done == 8
    assert sorted(item["record_id"] for item in final.failed) == ["r1", "r3", "r5", "r7"]
    assert actions(index).count("job.started") == 1
    assert index.verify_audit_chain() == (True, None)


# -- share links ---------------------------------------------------------------------------


def test_share_link_lifecycle(index: Index, clock: StepClock) -> None:
    record = new_record(index)
    expires = clock.now + timedelta(days=7)
    link = index.create_share_link(TOKEN, record.id, SHARE_GUARDIAN, "teacher-1", expires)
    assert (link.record_id, link.purpose, link.created_by, link.uses) == (
        record.id,
        SHARE_GUARDIAN,
        "teacher-1",
        0,
    )
    assert link.expires_at == expires and link.expires_at.tzinfo is UTC
    assert index.get_share_link(TOKEN) == link
    assert index.get_share_link("cd" * 32) is None

    assert index.count_share_use(TOKEN).uses == 1
    used = index.count_share_use(TOKEN)
    assert used.uses == 2
    assert index.get_share_link(TOKEN) == used

    entries = index.list_audit(record.id)
    assert [e.action for e in entries] == [
        "record.created",
        "share_link.created",
        "share_link.used",
        "share_link.used",
    ]
    assert entries[1].actor == "teacher-1" and entries[1].tenant == record.tenant
    assert entries[1].detail["token_sha256"] == TOKEN
    assert entries[-1].detail["uses"] == 2
    assert index.verify_audit_chain() == (True, None)


def test_share_link_refusals(index: Index, clock: StepClock) -> None:
    record = new_record(index)
    later = clock.now + timedelta(days=1)
    with pytest.raises(ValueError):
        index.create_share_link(TOKEN, record.id, "press", "x", later)
    with pytest.raises(ValueError):
        index.create_share_link(TOKEN, record.id, SHARE_TRANSFER, "x", datetime(2030, 1, 1))
    with pytest.raises(ValueError):
        index.create_share_link(TOKEN, record.id, SHARE_TRANSFER, "x", clock.now)
    with pytest.raises(ArchiveError) as info:
        index.create_share_link(TOKEN, "no-such-record", SHARE_TRANSFER, "x", later)
    assert info.value.code == "record_not_found"

    index.create_share_link(TOKEN, record.id, SHARE_TRANSFER, "x", later)
    with pytest.raises(ArchiveError) as info:
        index.create_share_link(TOKEN, record.id, SHARE_GUARDIAN, "y", later)
    assert info.value.code == "share_link_exists"
    with pytest.raises(ArchiveError) as info:
        index.count_share_use("cd" * 32)
    assert info.value.code == "share_link_not_found"

    # The clock moves one second a reading: created at +1, used at +2, expired at +3.
    short = "ef" * 32
    index.create_share_link(short, record.id, SHARE_TRANSFER, "x", clock.now + timedelta(seconds=3))
    assert index.count_share_use(short).uses == 1
    with pytest.raises(ArchiveError) as info:
        index.count_share_use(short)
    assert info.value.code == "share_link_expired"
    assert index.get_share_link(short).uses == 1  # type: ignore[union-attr]
    assert index.get_share_link(TOKEN).purpose == SHARE_TRANSFER  # type: ignore[union-attr]
