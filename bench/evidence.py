"""`make bench-evidence`: evidence records (RFC 4998) for a million objects, against one
RFC 3161 timestamp per object (what a competent user without evidence records does),
measured in the same run. Prints one table and, last, the ratios line.

Rows (bench/README.md, "Evidence records"): (1) build for BENCH_EVIDENCE_OBJECTS synthetic
SHA-256 leaves in batches of BENCH_EVIDENCE_BATCH, (2) build for a real sample through
the service (store + index), (3) verifying one record (hocba offline/online, Bouncy
Castle), (4) timestamp renewal of the million, (5) the baseline. Each side that is timed
for CPU runs in its own process (`python -m bench.evidence child TASK JSON`). The
million, its renewal and the baseline use the cheap TSA (bench/tsa.py); validation data
(OCSP, CRL) comes from the certomancer Animator. BENCH_QUICK=1: small quick defaults.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    CHEAP_TSA,
    CSC_PORT,
    KEYS,
    QUICK,
    REPO,
    RESPONDER_PORT,
    RUN,
    SAMPLE,
    STATE,
    TSA_PORT,
    Server,
    _int,
)

OUT = RUN / "evidence"
ALG = "sha256"
ACTOR = "bench"


class Knobs:
    objects = _int("BENCH_EVIDENCE_OBJECTS", 1_000_000, 20_000)
    batch = _int("BENCH_EVIDENCE_BATCH", 100_000, 5_000)
    # batches renewed in (4), the rest extrapolated; 0: every batch of (1)
    renew_batches = _int("BENCH_EVIDENCE_RENEW_BATCHES", 0, 0)
    real = _int("BENCH_EVIDENCE_REAL", 20, 4)
    verify_n = _int("BENCH_EVIDENCE_VERIFY_N", 30, 6)
    bc_n = _int("BENCH_EVIDENCE_BC_N", 300, 20)
    baseline = _int("BENCH_EVIDENCE_BASELINE", 2000, 200)
    concurrency = _int("BENCH_EVIDENCE_CONCURRENCY", 8, 8)


def log(msg: str) -> None:
    print(f"[bench-evidence {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _count_requests(timestamper: Any) -> list[int]:
    """Count the RFC 3161 requests `timestamper` (an HTTPTimeStamper) sends."""
    counter = [0]
    inner = timestamper.async_request_tsa_response

    async def counted(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return await inner(*args, **kwargs)

    timestamper.async_request_tsa_response = counted
    return counter


# -- children ----------------------------------------------------------------------------

def _evidence_service(a: dict[str, Any]) -> tuple[Any, Any, list[int]]:
    from bench.child import _hocba

    h, actor = _hocba(a["tsa_url"], a["workdir"])
    return h, actor, _count_requests(h.evidence.services.timestamper)


def _batches(objects: int, batch: int) -> list[int]:
    sizes = [batch] * (objects // batch)
    if objects % batch:
        sizes.append(objects % batch)
    return sizes


def _leaves(n: int) -> list[bytes]:
    raw = os.urandom(32 * n)
    return [raw[i:i + 32] for i in range(0, 32 * n, 32)]


def _one_batch(ev: Any, leaves: list[bytes]) -> tuple[Any, Any]:
    """Row (1)'s steps for one batch: the tree, one timestamp, its encoder."""
    from archive.evidence import BatchEncoder, HashTree

    tree = HashTree(leaves, ALG)
    token, _until = ev.timestamp(tree.root, ALG)
    return tree, BatchEncoder(ALG, token)


def child_build_million(a: dict[str, Any]) -> dict[str, Any]:
    """(1) Synthetic leaves (made untimed); per batch: HashTree, one Evidence.timestamp
    (with the TSA chain's validation data), BatchEncoder.records for every leaf (only
    the sizes kept)."""
    from archive.evidence import check_hashes, parse

    h, _actor, requests = _evidence_service(a)
    ev = h.evidence
    ev.timestamp(hashlib.sha256(b"warm-up").digest(), ALG)  # TLS, OCSP cache, imports
    requests[0] = 0
    cpu = wall = 0.0
    sizes_total = n = 0
    smallest, largest = 1 << 60, 0
    batches = _batches(a["objects"], a["batch"])
    for b, size in enumerate(batches):
        leaves = _leaves(size)
        c0, w0 = time.process_time(), time.perf_counter()
        tree, encoder = _one_batch(ev, leaves)
        first = b""
        for i, der in enumerate(encoder.records(tree)):
            k = len(der)
            sizes_total += k
            smallest = min(smallest, k)
            largest = max(largest, k)
            if i == 0:
                first = der
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        n += size
        check_hashes(parse(first), {ALG: leaves[0]})  # untimed sanity: it proves leaf 0
        log(f"(1) batch {b + 1}/{len(batches)}: {n} objects, {cpu:.1f} s CPU")
    h.close()
    return {"objects": n, "batches": len(batches), "cpu_s": cpu, "wall_s": wall,
            "tsa_requests": requests[0], "bytes_mean": sizes_total / n,
            "bytes_min": smallest, "bytes_max": largest, "maxrss_mb": _maxrss_mb()}


def child_renew_million(a: dict[str, Any]) -> dict[str, Any]:
    """(4) Each batch made again as in (1), untimed (keeping the million DERs of (1)
    would take gigabytes), then renewed as the service's `_renew_timestamp` does, timed:
    the first member parsed, the old token's validation data refreshed, one timestamp
    over the renewal value, `appended_timestamp_der` per member (which checks each
    member's newest timestamp is the batch's); the store writes and the index
    transaction are not part of it."""
    from archive.evidence import (
        appended_timestamp_der,
        check_hashes,
        parse,
        renewal_ats,
        replace_last_timestamp,
        timestamp_renewal_value,
    )
    from archive.evidence.records import last_timestamp

    h, _actor, requests = _evidence_service(a)
    ev = h.evidence
    ev.timestamp(hashlib.sha256(b"warm-up").digest(), ALG)
    batches = _batches(a["objects"], a["batch"])
    if a["renew_batches"]:
        batches = batches[:a["renew_batches"]]
    cpu = wall = 0.0
    n = renew_requests = 0
    for b, size in enumerate(batches):
        leaves = _leaves(size)
        tree, encoder = _one_batch(ev, leaves)
        ders = list(encoder.records(tree))
        del tree
        before = requests[0]
        c0, w0 = time.process_time(), time.perf_counter()
        head = parse(ders[0], lazy=True)
        old = last_timestamp(head)
        old_der = old.dump()
        enriched = ev.with_validation_data(old)
        enriched_der = enriched.dump()
        value = timestamp_renewal_value(replace_last_timestamp(head, enriched))
        token, _until = ev.timestamp(value, ALG)
        new_ats = renewal_ats(ALG, token)
        first = b""
        for i, old_record in enumerate(ders):
            der = appended_timestamp_der(old_record, old_der, enriched_der, new_ats)
            if i == 0:
                first = der
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
        renew_requests += requests[0] - before
        n += size
        proven = check_hashes(parse(first), {ALG: leaves[0]})  # untimed sanity
        assert len(proven) == 2, proven
        del ders
        log(f"(4) batch {b + 1}/{len(batches)}: {n} renewed, {cpu:.1f} s CPU")
    h.close()
    return {"objects": n, "batches": len(batches), "cpu_s": cpu, "wall_s": wall,
            "tsa_requests": renew_requests, "maxrss_mb": _maxrss_mb()}


def child_build_real(a: dict[str, Any]) -> dict[str, Any]:
    """(2) Archive `n` real records of the sample (untimed), then time
    `hocba.evidence.build(everything=True)`; write each final PDF and its evidence record
    to `outdir` for (3)."""
    from bench.child import ROLES, _create
    from bench.common import pdf_sample

    h, actor, requests = _evidence_service(a)
    pdf = pdf_sample()
    rows = []
    for i in range(a["n"]):
        row = _create(h, actor, pdf, a["id_base"] + i)
        for role in ROLES:
            row = h.key_signing.sign(actor, row.id, role, KEYS[role])
        assert row.status == "archived", row.status
        rows.append(row)
    requests[0] = 0
    c0, w0 = time.process_time(), time.perf_counter()
    report = h.evidence.build(ACTOR, everything=True)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    out = Path(a["outdir"])
    out.mkdir(parents=True, exist_ok=True)
    sizes = []
    for row in rows:
        der, _found = h.evidence.of_newest_version(row)
        (out / f"{row.id}.pdf").write_bytes(h.records.document(row))
        (out / f"{row.id}.ers").write_bytes(der)
        sizes.append(len(der))
    h.close()
    return {"objects": report.built, "batches": report.batches, "cpu_s": cpu,
            "wall_s": wall, "tsa_requests": requests[0], "bytes": sizes,
            "failed": report.failed}


def child_verify(a: dict[str, Any]) -> dict[str, Any]:
    """(3) `verify_evidence` (through Evidence.check) CPU per record, offline and online."""
    from bench.child import _hocba

    h, _actor = _hocba(a["tsa_url"], a["workdir"])
    pairs = [(Path(p).read_bytes(), Path(p).with_suffix(".ers").read_bytes())
             for p in a["files"]]
    result: dict[str, Any] = {}
    for online in (False, True):
        h.evidence.check(*pairs[0], online=online)  # warm-up
        cpu, passed = [], 0
        for i in range(a["n"]):
            data, der = pairs[i % len(pairs)]
            c0 = time.process_time()
            report = h.evidence.check(data, der, online=online)
            cpu.append((time.process_time() - c0) * 1000)
            passed += report.valid
        result["online" if online else "offline"] = {"cpu_ms": cpu, "passed": passed}
    h.close()
    return result


def child_baseline(a: dict[str, Any]) -> dict[str, Any]:
    """(5) One RFC 3161 timestamp per object with pyHanko's HTTPTimeStamper (one client,
    one aiohttp session, `concurrency` requests in flight); then its renewal: one new
    timestamp per object over the hash of its token."""
    import aiohttp
    from pyhanko.sign.timestamps import HTTPTimeStamper

    digests = [hashlib.sha256(x).digest() for x in _leaves(a["n"])]

    async def stamp_all(values: list[bytes]) -> tuple[list[Any], int]:
        async with aiohttp.ClientSession() as session:
            stamper = HTTPTimeStamper(a["tsa_url"], session=session)
            counter = _count_requests(stamper)
            await stamper.async_timestamp(hashlib.sha256(b"warm-up").digest(), ALG)
            counter[0] = 0
            gate = asyncio.Semaphore(a["concurrency"])

            async def one(value: bytes) -> Any:
                async with gate:
                    return await stamper.async_timestamp(value, ALG)

            tokens = await asyncio.gather(*(one(v) for v in values))
            return tokens, counter[0]

    c0, w0 = time.process_time(), time.perf_counter()
    tokens, n_build = asyncio.run(stamp_all(digests))
    build_cpu, build_wall = time.process_time() - c0, time.perf_counter() - w0
    sizes = [len(t.dump()) for t in tokens]
    c0, w0 = time.process_time(), time.perf_counter()
    _renewed, n_renew = asyncio.run(stamp_all([hashlib.sha256(t.dump()).digest()
                                               for t in tokens]))
    renew_cpu, renew_wall = time.process_time() - c0, time.perf_counter() - w0
    return {"objects": a["n"], "build_cpu_s": build_cpu, "build_wall_s": build_wall,
            "build_requests": n_build, "renew_cpu_s": renew_cpu,
            "renew_wall_s": renew_wall, "renew_requests": n_renew,
            "bytes_mean": statistics.mean(sizes), "maxrss_mb": _maxrss_mb()}


CHILDREN = {name[len("child_"):]: fn for name, fn in globals().items()
            if name.startswith("child_") and callable(fn)}


def run_child(task: str, args: dict[str, Any], timeout: float = 1800) -> Any:
    """This module's `child TASK JSON` in a fresh process; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-m", "bench.evidence", "child", task,
                           json.dumps(args)], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    sys.stderr.write("".join(line + "\n" for line in proc.stderr.splitlines()
                             if line.startswith("[bench-evidence")))
    if proc.returncode != 0:
        raise RuntimeError(f"child {task} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- Bouncy Castle -----------------------------------------------------------------------

def bouncy_castle(files: list[str], n: int) -> dict[str, Any]:
    """ErsCheck --batch over `n` (evidence, data) lines cycling through `files`: wall
    time with 0 lines (JVM start) and with n; every verdict must be valid."""
    from tests.integration.bcers import JVM_FLAGS, SOURCE, classpath

    classes = OUT / "ers-classes"
    classes.mkdir(parents=True, exist_ok=True)
    subprocess.run(["javac", "-nowarn", "-d", str(classes), "-cp", classpath(),
                    str(SOURCE)], check=True, capture_output=True, timeout=120)
    argv = ["java", *JVM_FLAGS, "-cp", classpath(classes), "ErsCheck", "--batch"]

    def batch(lines: list[str]) -> tuple[float, list[dict[str, Any]]]:
        w0 = time.perf_counter()
        proc = subprocess.run(argv, input="".join(lines), capture_output=True, text=True,
                              timeout=600, check=True)
        wall = time.perf_counter() - w0
        return wall, [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]

    lines = [f"{Path(f).with_suffix('.ers')}\t{f}\n" for f in files]
    start, _ = batch([])
    wall, verdicts = batch([lines[i % len(lines)] for i in range(n)])
    return {"jvm_start_s": start, "wall_s": wall, "n": n,
            "per_record_ms": (wall - start) / n * 1000,
            "valid": sum(bool(v.get("valid")) for v in verdicts)}


# -- the run -----------------------------------------------------------------------------

def main() -> int:
    k = Knobs()
    t_start = time.perf_counter()
    from certs.provision import provision

    log(f"provisioning {STATE} (responder :{RESPONDER_PORT}, cheap TSA :{TSA_PORT})")
    provision(STATE, RESPONDER_PORT, csc_port=CSC_PORT)
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    py = sys.executable
    servers = [
        Server("responder", [py, "-m", "certs.responder", "--state", str(STATE),
                             "--port", str(RESPONDER_PORT)], RESPONDER_PORT,
               log=OUT / "responder.log"),
        Server("tsa", [py, "-m", "bench.tsa", "--state", str(STATE),
                       "--port", str(TSA_PORT)], TSA_PORT, log=OUT / "tsa.log"),
    ]
    common = {"tsa_url": CHEAP_TSA}
    try:
        for s in servers:
            s.start()
        log(f"(1) build: {k.objects} synthetic objects in batches of {k.batch}")
        b1 = run_child("build_million", {**common, "objects": k.objects, "batch": k.batch,
                                         "workdir": str(OUT / "million")})
        log(f"(4) timestamp renewal of the {k.objects} objects")
        r4 = run_child("renew_million", {**common, "objects": k.objects, "batch": k.batch,
                                         "renew_batches": k.renew_batches,
                                         "workdir": str(OUT / "renew")})
        log(f"(2) archiving {k.real} real records (untimed), then their evidence")
        b2 = run_child("build_real", {**common, "n": k.real, "id_base": 70_000,
                                      "workdir": str(OUT / "real"),
                                      "outdir": str(OUT / "real-out")})
        files = sorted(str(p) for p in (OUT / "real-out").glob("*.pdf"))
        log(f"(3) verifying: {k.verify_n} per mode; Bouncy Castle {k.bc_n} in one JVM")
        v3 = run_child("verify", {**common, "files": files, "n": k.verify_n,
                                  "workdir": str(OUT / "real")})
        bc = bouncy_castle(files, k.bc_n)
        log(f"(5) baseline: {k.baseline} objects, one timestamp each, "
            f"{k.concurrency} in flight")
        b5 = run_child("baseline", {**common, "n": k.baseline,
                                    "concurrency": k.concurrency})
    finally:
        for s in reversed(servers):
            s.stop()

    million = 1_000_000
    h_build_us = b1["cpu_s"] / b1["objects"] * 1e6
    h_renew_us = r4["cpu_s"] / r4["objects"] * 1e6
    b_build_us = b5["build_cpu_s"] / b5["objects"] * 1e6
    b_renew_us = b5["renew_cpu_s"] / b5["objects"] * 1e6
    b_build_req = b5["build_requests"] / b5["objects"]
    b_renew_req = b5["renew_requests"] / b5["objects"]
    h_build_req = b1["tsa_requests"] / b1["objects"]
    h_renew_req = r4["tsa_requests"] / r4["objects"]
    renew_scope = (f"{r4['batches']} batches of {k.batch}, each made again untimed"
                   if r4["objects"] == b1["objects"] else
                   f"{r4['batches']} of {b1['batches']} batches, each made again untimed")

    def per_million(cpu_us: float) -> str:
        return f"{cpu_us * million / 1e6:.0f} s"

    def r(x: float, y: float) -> str:
        return f"{x / y:.1f}x" if y else "–"

    off, on = v3["offline"], v3["online"]
    rows = [
        (f"(1) build {b1['objects']:,} synthetic objects, {b1['batches']} batches: CPU s",
         f"{b1['cpu_s']:.1f} s ({b1['wall_s']:.1f} s wall)",
         f"EXTRAPOLATED {b_build_us * b1['objects'] / 1e6:.0f} s "
         f"(from {b5['objects']:,})", r(b_build_us, h_build_us)),
        ("(1) build CPU µs / object", f"{h_build_us:.1f} µs", f"{b_build_us:.0f} µs",
         r(b_build_us, h_build_us)),
        ("(1) build TSA requests", f"{b1['tsa_requests']} ({h_build_req:.0e}/object)",
         f"EXTRAPOLATED {b_build_req * b1['objects']:,.0f} "
         f"({b5['build_requests']} for {b5['objects']:,})",
         r(b_build_req, h_build_req)),
        ("(1) bytes / evidence record mean [min–max] (baseline: the bare token)",
         f"{b1['bytes_mean']:.0f} B [{b1['bytes_min']}–{b1['bytes_max']}]",
         f"{b5['bytes_mean']:.0f} B", r(b5["bytes_mean"], b1["bytes_mean"])),
        ("(1) peak RSS of the side's process", f"{b1['maxrss_mb']:.0f} MB",
         f"{b5['maxrss_mb']:.0f} MB ({b5['objects']:,} tokens kept)", "–"),
        (f"(2) build, {b2['objects']} real records via hocba.evidence.build (store + "
         "index)", f"{b2['cpu_s'] * 1000 / max(b2['objects'], 1):.1f} ms CPU / object "
         f"({b2['cpu_s'] * 1000:.0f} ms in all, {b2['tsa_requests']} TSA request"
         f"{'' if b2['tsa_requests'] == 1 else 's'}, {statistics.mean(b2['bytes']):.0f} B"
         " / record)", "–", "–"),
        (f"(3) verify one record, offline: CPU ms median [min–max] of {len(off['cpu_ms'])}"
         f", passed {off['passed']}/{len(off['cpu_ms'])}",
         _fmt(off["cpu_ms"]), "–", "–"),
        (f"(3) verify one record, online (OCSP fetched): CPU ms, passed "
         f"{on['passed']}/{len(on['cpu_ms'])}", _fmt(on["cpu_ms"]), "–", "–"),
        (f"(3) Bouncy Castle ErsCheck --batch, {bc['n']} records in one JVM: wall ms / "
         f"record, valid {bc['valid']}/{bc['n']}",
         f"{bc['per_record_ms']:.1f} ms (JVM start {bc['jvm_start_s']:.2f} s, "
         f"{bc['wall_s']:.2f} s in all)", "–", "–"),
        (f"(4) timestamp renewal of {r4['objects']:,} ({renew_scope}): CPU s",
         f"{r4['cpu_s']:.1f} s ({r4['wall_s']:.1f} s wall)"
         + ("" if r4["objects"] == b1["objects"] else
            f"; EXTRAPOLATED to {b1['objects']:,}: {h_renew_us * b1['objects'] / 1e6:.0f} s"),
         f"EXTRAPOLATED {b_renew_us * b1['objects'] / 1e6:.0f} s", r(b_renew_us, h_renew_us)),
        ("(4) renewal CPU µs / object", f"{h_renew_us:.1f} µs", f"{b_renew_us:.0f} µs",
         r(b_renew_us, h_renew_us)),
        ("(4) renewal TSA requests", f"{r4['tsa_requests']} for {r4['batches']} batches",
         f"EXTRAPOLATED {b_renew_req * b1['objects']:,.0f} "
         f"({b5['renew_requests']} for {b5['objects']:,})", r(b_renew_req, h_renew_req)),
        (f"(5) baseline measured: {b5['objects']:,} timestamps, {k.concurrency} in flight",
         "–", f"build {b5['build_wall_s']:.1f} s wall, renewal {b5['renew_wall_s']:.1f} s "
         "wall", "–"),
        ("goals: build ≤ 60 s CPU for the million; renewal 1 request/batch, ≤ 60 s CPU",
         f"build {per_million(h_build_us)}, renewal {per_million(h_renew_us)} "
         f"(per million); {'met' if h_build_us <= 60 and h_renew_us <= 60 else 'NOT met'}",
         "–", "–"),
    ]
    head = ("figure", "hocba", "baseline (1 RFC 3161 token per object)", "baseline÷hocba")
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(4)]
    from importlib.metadata import version

    print(f"hocba bench-evidence — sample {SAMPLE}, pyHanko {version('pyHanko')}, "
          f"{os.cpu_count()} CPUs, cheap TSA (bench/tsa.py) for both "
          f"sides, OCSP from the Animator, {'QUICK, ' if QUICK else ''}"
          f"{time.perf_counter() - t_start:.0f} s")
    for row in [head, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    ratios = {"build_tsa_requests": b_build_req / h_build_req,
              "build_cpu_per_object": b_build_us / h_build_us,
              "renew_tsa_requests": b_renew_req / h_renew_req,
              "renew_cpu_per_object": b_renew_us / h_renew_us}
    print("ratios: " + " ".join(f"{name}={v:.2f}x" for name, v in ratios.items()))
    return 0


def _fmt(values: list[float]) -> str:
    return (f"{statistics.median(values):.1f} ms "
            f"[{min(values):.1f}–{max(values):.1f}]")


def child_main(argv: list[str]) -> int:
    task, args = argv[0], json.loads(argv[1])
    if os.environ.get("BENCH_PROFILE"):  # cProfile of this task, to a file
        import cProfile
        import pstats

        prof = cProfile.Profile()
        result = prof.runcall(CHILDREN[task], args)
        with open(os.environ["BENCH_PROFILE"], "w") as f:
            pstats.Stats(prof, stream=f).sort_stats("cumulative").print_stats(40)
    else:
        result = CHILDREN[task](args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    if sys.argv[1:2] == ["child"]:
        raise SystemExit(child_main(sys.argv[2:]))
    raise SystemExit(main())
