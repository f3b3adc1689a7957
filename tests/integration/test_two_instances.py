"""Two hocba instances, one archive: two gunicorns (separate process groups, their own
ports, as on two machines) over ONE PostgreSQL index and ONE S3 Object Lock store
(SeaweedFS), with the same keys and clients.

A class is created through instance A and its teacher batch submitted to A. Whichever
instance's job runner holds the batch's lease (A's, nearly always: the submitting worker
kicks its own runner) is SIGKILLed, master and workers, in the middle of the batch; the
other instance takes the job over once the lease (HOCBA_JOB_LEASE_SECONDS, 5 s here) runs
out and finishes it: every record signed by the teacher exactly once, none lost. The
survivor then runs the principal and seal batches, a fixity audit sees one consistent
archive, and archived finals verify as TOTAL_PASSED.

About 25-55 s on a 2-core box. A kill that lands between a revision's put and its commit
(two runs in eleven here) leaves that revision in the store with no index row: the audit
reports it as an orphan (ok: false) and the test checks that it is exactly that."""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pyhanko.pdf_utils.reader import PdfFileReader

from archive.index import Index, schema
from archive.store import Area
from archive.store.s3 import S3ObjectLockStore
from tests.conftest import postgres_database
from tests.integration.gunicorn_service import (
    SAMPLE,
    Service,
    create_records,
    free_port,
    get_document,
    get_record,
    run_audit,
    submit_batch,
    verify_pdf,
    wait_job,
)
from tests.seaweed import SeaweedServer, start_or_skip

pytestmark = [pytest.mark.integration, pytest.mark.slow]
N = 30
LEASE_SECONDS = 5
BUCKET, PREFIX = "hocba-two", "records"
ROLES = (("teacher", "school-1-teacher"), ("principal", "school-1-principal"),
         ("seal", "school-1-seal"))


@dataclass
class Cluster:
    a: Service
    b: Service
    index: Index  # the shared index, read behind the services' backs
    index_url: str
    seaweed: SeaweedServer

    def store(self) -> S3ObjectLockStore:
        """The store as the services see it (bucket settings left as they made them)."""
        return S3ObjectLockStore(BUCKET, prefix=PREFIX, endpoint_url=self.seaweed.endpoint_url,
                                 client=self.seaweed.client(), working_lifecycle=False)


@pytest.fixture
def cluster(service_env: dict[str, str], live_responder: Any,
            tmp_path: Path) -> Iterator[Cluster]:
    with postgres_database() as pg_url:
        seaweed = start_or_skip()
        services: list[Service] = []
        index: Index | None = None
        try:
            env = {**service_env, "HOCBA_STORE": f"s3://{BUCKET}/{PREFIX}",
                   "HOCBA_S3_ENDPOINT_URL": seaweed.endpoint_url, "HOCBA_INDEX_URL": pg_url,
                   "HOCBA_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
                   "AWS_ACCESS_KEY_ID": seaweed.access_key,
                   "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
                   "AWS_DEFAULT_REGION": "us-east-1"}
            services = [Service(env, free_port(), workers=2, log=tmp_path / f"{name}.log")
                        for name in ("a", "b")]
            with ThreadPoolExecutor(2) as pool:  # both boot (and migrate) at once
                list(pool.map(Service.start, services))
            index = Index(pg_url)
            yield Cluster(services[0], services[1], index, pg_url, seaweed)
        finally:
            for svc in services:
                svc.stop()
            if index is not None:
                index.close()
            seaweed.stop()


def index_footprint(url: str) -> str:
    """What the index holds after the class (for docs/DEPLOYMENT.md's sizing): per table,
    rows, bytes of row data (pg_column_size) and bytes on disk with indexes and TOAST;
    stored objects by area and kind, with their mean size."""
    engine = sa.create_engine(url)
    lines = []
    try:
        with engine.connect() as conn:
            for table in schema.metadata.sorted_tables:
                row = table.alias("t")
                rows, data = conn.execute(sa.select(
                    sa.func.count(), sa.func.coalesce(sa.func.sum(
                        sa.func.pg_column_size(sa.literal_column("t.*"))), 0),
                ).select_from(row)).one()
                disk = conn.scalar(sa.select(sa.func.pg_total_relation_size(table.name)))
                lines.append(f"{table.name}: {rows} rows, {data} B data, {disk} B on disk")
            objects = schema.objects
            for area, kind, count, mean in conn.execute(
                    sa.select(objects.c.area, objects.c.kind, sa.func.count(),
                              sa.func.avg(objects.c.size))
                    .group_by(objects.c.area, objects.c.kind).order_by(objects.c.area)):
                lines.append(f"objects {area}/{kind}: {count}, mean {float(mean):.0f} B")
    finally:
        engine.dispose()
    return "index: " + "; ".join(lines)


def test_a_batch_survives_its_instance(cluster: Cluster, api_keys: dict[str, str],
                                       samples: dict[str, bytes]) -> None:
    key, admin = api_keys["school-1"], api_keys["admin"]
    index = cluster.index
    ids = create_records(cluster.a, key, samples[SAMPLE], N)
    job_id = submit_batch(cluster.a, key, "teacher", "school-1-teacher", ids)

    # Kill whichever instance holds the lease, as soon as it is in the middle.
    wait_job(cluster.a, key, job_id, timeout=120, min_done=2)
    held = index.get_job(job_id)
    assert held is not None and held.status == "running", held
    holder, survivor = ((cluster.a, cluster.b) if cluster.a.holds(held.lease_owner)
                        else (cluster.b, cluster.a))
    assert holder.holds(held.lease_owner), f"no instance holds {held.lease_owner}"
    holder.kill9()
    killed_at = time.monotonic()
    at_kill = index.get_job(job_id)
    assert at_kill is not None
    assert 1 <= at_kill.done <= N - 1, f"not in the middle of the batch: {at_kill}"
    assert at_kill.status == "running" and at_kill.failed == [], at_kill

    # The survivor takes the job over once the dead instance's lease has run out.
    while True:
        job_row = index.get_job(job_id)
        assert job_row is not None
        if survivor.holds(job_row.lease_owner) or job_row.status == "finished":
            break
        assert time.monotonic() - killed_at < LEASE_SECONDS + 30, job_row
        time.sleep(0.1)
    takeover = time.monotonic() - killed_at
    job = wait_job(survivor, key, job_id, timeout=180)
    finished = time.monotonic() - killed_at
    print(f"\nkilled {'A' if holder is cluster.a else 'B'} at done={at_kill.done}/{N}; "
          f"survivor took over after {takeover:.1f} s, finished after {finished:.1f} s")
    assert (job["status"], job["total"], job["done"], job["failed"]) == ("finished", N, N, [])
    assert takeover <= LEASE_SECONDS + 10  # the lease, the runner's poll, a loaded box

    # Every record signed by the teacher exactly once: index, audit trail and the PDF.
    signed = Counter(r.record_id for r in index.list_audit(limit=100_000)
                     if r.action == "record.signed" and r.detail.get("role") == "teacher")
    assert signed == Counter(dict.fromkeys(ids, 1)), signed
    for rid in ids:
        assert [(s.role, s.signer_key) for s in index.list_signatures(rid)] == [
            ("teacher", "school-1-teacher")], rid
        record = get_record(survivor, key, rid)
        assert (record["status"], record["next_role"]) == ("awaiting_signatures", "principal")
        pdf = get_document(survivor, key, rid)
        assert len(PdfFileReader(io.BytesIO(pdf)).embedded_signatures) == 1, rid

    # The rest of the class through the survivor alone.
    for role, signer in ROLES[1:]:
        batch = submit_batch(survivor, key, role, signer, ids)
        done = wait_job(survivor, key, batch, timeout=240)
        assert (done["status"], done["done"], done["failed"]) == ("finished", N, []), done

    teacher_field = index.list_signatures(ids[0])[0].field_name
    finals: dict[str, str] = {}
    for rid in ids:
        record = get_record(survivor, key, rid)
        assert record["status"] == "archived", record
        assert [s["role"] for s in record["signatures"]] == [r for r, _ in ROLES], record
        assert [(s.role, s.signer_key) for s in index.list_signatures(rid)] == list(ROLES)
        finals[rid] = record["archive"]["sha256"]
    audit_rows = index.list_audit(limit=100_000)
    per_record = Counter((r.record_id, r.detail.get("role")) for r in audit_rows
                         if r.action == "record.signed")
    assert per_record == Counter({(rid, role): 1 for rid in ids for role, _ in ROLES})
    archived = Counter(r.record_id for r in audit_rows if r.action == "record.archived")
    assert archived == Counter(dict.fromkeys(ids, 1)), archived
    assert not [r for r in audit_rows if r.action == "job.item_failed"]
    assert index.verify_audit_chain() == (True, None)

    # One consistent archive, seen from the survivor.
    audit = run_audit(survivor, admin)
    report, counts = audit["report"], audit["report"]["counts"]
    problems = {k: counts[k] for k in ("missing", "mismatched", "unreadable", "lock_problems")}
    assert problems == dict.fromkeys(problems, 0), report
    assert counts["intact"] == N == len(set(finals.values())), counts  # the finals, locked
    assert counts["released"] == counts["checked"] - N, counts  # every working object
    # A SIGKILL between a revision's put and its commit leaves that revision in the store
    # with no row: at most the one record the killed runner was signing, a teacher
    # revision no record points to, reported and kept (never deleted).
    orphans = report["orphans"]
    assert len(orphans) <= 1, orphans
    store = cluster.store()
    for orphan in orphans:
        assert (orphan["area"], orphan["extends_record"]) == ("working", None), orphan
        leftover = store.get(orphan["sha256"], Area.WORKING)
        assert leftover.startswith(samples[SAMPLE]), orphan  # an incremental update
        [teacher] = PdfFileReader(io.BytesIO(leftover)).embedded_signatures
        assert teacher.field_name == teacher_field, orphan
    assert counts["store_objects"] == N + len(orphans), counts
    assert report["ok"] is (not orphans), report
    print(f"audit: {counts}")

    for rid in (ids[0], ids[N // 2], ids[-1]):
        pdf = get_document(survivor, key, rid)
        verdict = verify_pdf(survivor, pdf)
        assert verdict["indication"] == "TOTAL_PASSED", verdict
        assert verdict["level"] == "PAdES-B-LTA", verdict
        assert verdict["archived"]["version"] == 1, verdict

    print(index_footprint(cluster.index_url))
    for svc in (survivor, holder):
        assert "Traceback" not in svc.log_text(), svc.log_text()[-6000:]
