"""One benchmark task in a fresh process: `python -m bench.child TASK JSON-ARGS`.

Each side runs in its own process so its CPU time (time.process_time: every thread
of this process, nothing of the TSA/OCSP responder) and its peak RSS are its own.
The last line on stdout is the task's JSON result.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event as sa_event

from bench.common import KEYS, metadata, service_env

ROLES = ("teacher", "principal", "seal")


# -- hocba ---------------------------------------------------------------------------------

def _hocba(tsa_url: str, workdir: str, **extra: str) -> tuple[Any, Any]:
    Path(workdir).mkdir(parents=True, exist_ok=True)
    env = service_env(tsa_url, Path(workdir), **extra)
    os.environ.update(env)  # SOFTHSM2_CONF before the PKCS#11 library loads
    from signer import fixes
    from signer.logs import configure_logging

    fixes.apply()  # the hocba side only: the baseline is plain pyHanko
    configure_logging()
    from signer.service import Actor, Hocba
    from signer.settings import load_settings

    h = Hocba(load_settings(env))
    client = next(c for c in h.clients.by_key_hash.values() if c.name == "school-1")
    return h, Actor.of(client)


def _create(h: Any, actor: Any, pdf: Any, n: int) -> Any:
    return h.records.create(actor, pdf, json.dumps(metadata(n), ensure_ascii=False))


def _dir_bytes(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
    return sum(p.stat().st_size for p in files), len(files)


def hocba_pipeline(a: dict[str, Any]) -> dict[str, Any]:
    """(a) create_record + sign_with_key x3 through the library (archive write + index)."""
    from bench.common import pdf_sample

    h, actor = _hocba(a["tsa_url"], a["workdir"])
    pdf = pdf_sample()
    out = Path(a["outdir"])
    out.mkdir(parents=True, exist_ok=True)
    cpu, wall, finals = [], [], []
    statements: dict[str, list[int]] = {"create": [], **{role: [] for role in ROLES}}
    executed = [0]

    def count(*_args: Any) -> None:
        executed[0] += 1

    sa_event.listen(h.index._engine, "before_cursor_execute", count)
    for i in range(a["warmup"] + a["n"]):
        c0, w0 = time.process_time(), time.perf_counter()
        before = executed[0]
        row = _create(h, actor, pdf, a["id_base"] + i)
        statements["create"].append(executed[0] - before)
        for role in ROLES:
            before = executed[0]
            row = h.key_signing.sign(actor, row.id, role, KEYS[role])
            statements[role].append(executed[0] - before)
        c1, w1 = time.process_time(), time.perf_counter()
        assert row.status == "archived", row.status
        if i >= a["warmup"]:
            cpu.append((c1 - c0) * 1000)
            wall.append(w1 - w0)
            final = h.records.document(row)
            finals.append(len(final))
            (out / f"{row.id}.pdf").write_bytes(final)
    store = Path(a["workdir"]) / "store"
    arch, arch_n = _dir_bytes(store / "archive")
    work, work_n = _dir_bytes(store / "working")
    records = a["warmup"] + a["n"]
    h.close()
    return {"cpu_ms": cpu, "wall_s": wall, "uploaded": len(pdf), "final": finals,
            "statements": {k: statistics.median(v[a["warmup"]:]) for k, v in statements.items()},
            "archive_bytes_per_record": arch / records, "archive_objects": arch_n,
            "working_bytes_left": work, "working_objects_left": work_n, "records": records}


def hocba_batch(a: dict[str, Any]) -> dict[str, Any]:
    """(b) a class signed by one role (teacher, server-held key) in one batch job."""
    from bench.common import pdf_sample
    from signer.service.jobs import JobRunner

    h, actor = _hocba(a["tsa_url"], a["workdir"])
    pdf = pdf_sample()
    runner = JobRunner(h.index, h.store, h.clients, h.key_signing, poll_seconds=0.05)
    sizes = [a["warmup_size"]] * a["warmup"] + [a["class_size"]] * a["reps"]
    n = a["id_base"]
    batches = []
    for size in sizes:  # records first, untimed
        batches.append([_create(h, actor, pdf, n + i).id for i in range(size)])
        n += size
    walls, failed = [], 0
    for k, ids in enumerate(batches):
        w0 = time.perf_counter()
        job = runner.submit(actor, "teacher", KEYS["teacher"], ids)
        while True:
            row = h.index.get_job(job.id)
            if row is not None and row.finished_at is not None:
                break
            time.sleep(0.01)
        w1 = time.perf_counter()
        if k >= a["warmup"]:
            walls.append(w1 - w0)
            failed += len(row.failed)
    runner.stop()
    h.close()
    return {"wall_s": walls, "failed": failed}


def hocba_verify(a: dict[str, Any]) -> dict[str, Any]:
    """(c) hocba's verification over archived records (offline first, as the service does)."""
    h, _actor = _hocba(a["tsa_url"], a["workdir"])
    files = [Path(f).read_bytes() for f in a["files"]]
    h.verification.verify(files[0])  # warm-up
    cpu, passed = [], 0
    for i in range(a["n"]):
        data = files[i % len(files)]
        c0 = time.process_time()
        report = h.verification.verify(data)
        cpu.append((time.process_time() - c0) * 1000)
        passed += report["indication"] == "TOTAL_PASSED" and report["level"] == "PAdES-B-LTA"
    h.close()
    return {"cpu_ms": cpu, "passed": passed}


def hocba_big(a: dict[str, Any]) -> dict[str, Any]:
    """(e) sign a large PDF through the service path: the upload as a file (as the HTTP
    layer hands over Werkzeug's spooled upload), revisions streamed through the store;
    the final is copied out for a separate validation. Peak RSS of this process."""
    import shutil

    from archive.store import Area

    size = Path(a["file"]).stat().st_size
    h, actor = _hocba(a["tsa_url"], a["workdir"],
                      HOCBA_MAX_PDF_BYTES=str(size + 64 * 1024 * 1024))
    w0 = time.perf_counter()
    with Path(a["file"]).open("rb") as upload:
        row = _create(h, actor, upload, a["id_base"])
    for role in ROLES:
        row = h.key_signing.sign(actor, row.id, role, KEYS[role])
    wall = time.perf_counter() - w0
    with h.store.open_object(row.current_sha256, Area.ARCHIVE) as final, \
            Path(a["out"]).open("wb") as out:
        shutil.copyfileobj(final, out, 1 << 20)
    return {"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "wall_s": wall, "final": row.current_size}


def hocba_renew(a: dict[str, Any]) -> dict[str, Any]:
    """(h) renewal of archived records (a new locked version each), through the service."""
    from datetime import timedelta

    h, _actor = _hocba(a["tsa_url"], a["workdir"])
    due = list(h.renewals.due(margin=timedelta(days=365 * 20)))
    cpu = []
    for v in due:
        c0 = time.process_time()
        h.renewals.renew("bench", v)
        cpu.append((time.process_time() - c0) * 1000)
    h.close()
    return {"cpu_ms": cpu[a["warmup"]:] or cpu}


# -- baseline ------------------------------------------------------------------------------

def _baseline_env(a: dict[str, Any]) -> None:
    os.environ.update(service_env(a["tsa_url"], Path(a["workdir"])))


def baseline_pipeline(a: dict[str, Any]) -> dict[str, Any]:
    from bench import baseline
    from bench.common import pdf_sample

    _baseline_env(a)
    pdf = pdf_sample()
    out = Path(a["outdir"])
    out.mkdir(parents=True, exist_ok=True)
    cpu, wall, finals = [], [], []
    for i in range(a["warmup"] + a["n"]):
        path = out / f"naive-{i:04d}.pdf"
        c0, w0 = time.process_time(), time.perf_counter()
        final = baseline.pipeline(pdf, a["tsa_url"], path)
        c1, w1 = time.process_time(), time.perf_counter()
        if i >= a["warmup"]:
            cpu.append((c1 - c0) * 1000)
            wall.append(w1 - w0)
            finals.append(len(final))
        else:
            path.unlink()
    return {"cpu_ms": cpu, "wall_s": wall, "uploaded": len(pdf), "final": finals}


def baseline_batch(a: dict[str, Any]) -> dict[str, Any]:
    from bench import baseline
    from bench.common import pdf_sample

    _baseline_env(a)
    pdf = pdf_sample()
    sizes = [a["warmup_size"]] * a["warmup"] + [a["class_size"]] * a["reps"]
    walls = []
    for k, size in enumerate(sizes):
        w0 = time.perf_counter()
        for _ in range(size):
            baseline.sign_role(pdf, "teacher", a["tsa_url"])
        if k >= a["warmup"]:
            walls.append(time.perf_counter() - w0)
    return {"wall_s": walls, "failed": 0}


def baseline_verify(a: dict[str, Any]) -> dict[str, Any]:
    from bench import baseline

    _baseline_env(a)
    files = [Path(f).read_bytes() for f in a["files"]]
    baseline.validate(files[0])
    cpu, passed = [], 0
    for i in range(a["n"]):
        c0 = time.process_time()
        ok = baseline.validate(files[i % len(files)])
        cpu.append((time.process_time() - c0) * 1000)
        passed += ok
    return {"cpu_ms": cpu, "passed": passed}


def baseline_renew(a: dict[str, Any]) -> dict[str, Any]:
    from pyhanko.sign.timestamps import HTTPTimeStamper
    from pyhanko_certvalidator import ValidationContext

    from bench import baseline

    _baseline_env(a)
    timestamper = HTTPTimeStamper(a["tsa_url"])
    vc = ValidationContext(trust_roots=[baseline._root()], allow_fetching=True)
    cpu = []
    for f in a["files"]:
        data = Path(f).read_bytes()
        c0 = time.process_time()
        baseline.renew(data, timestamper, vc)
        cpu.append((time.process_time() - c0) * 1000)
    return {"cpu_ms": cpu[a["warmup"]:] or cpu}


def baseline_cold(a: dict[str, Any]) -> dict[str, Any]:
    from bench import baseline

    return {"passed": baseline.validate(Path(a["file"]).read_bytes())}


def baseline_big(a: dict[str, Any]) -> dict[str, Any]:
    from bench import baseline

    _baseline_env(a)
    data = Path(a["file"]).read_bytes()
    w0 = time.perf_counter()
    final = baseline.pipeline(data, a["tsa_url"], Path(a["out"]))
    wall = time.perf_counter() - w0
    return {"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "wall_s": wall, "final": len(final)}


TASKS = {name: fn for name, fn in globals().items()
         if name.startswith(("hocba_", "baseline_")) and callable(fn)}


def main() -> int:
    task, args = sys.argv[1], json.loads(sys.argv[2])
    if os.environ.get("BENCH_PROFILE"):  # pyinstrument profile of this task, to a file
        from pyinstrument import Profiler

        with Profiler(interval=0.001) as prof:
            result = TASKS[task](args)
        Path(os.environ["BENCH_PROFILE"]).write_text(prof.output_text(unicode=True,
                                                                      show_all=False))
    else:
        result = TASKS[task](args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
