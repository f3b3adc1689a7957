"""`make bench`: provision var/bench, start our own responders, measure figures (a)–(g)
for hocba and the straightforward pyHanko baseline in the same run, print one table and,
last, the ratios line. Knobs: see bench/README.md (BENCH_QUICK=1 for a smoke run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from io import BytesIO
from pathlib import Path
from queue import Empty, Queue
from typing import Any

from bench.common import (
    ANIMATOR_TSA,
    CHEAP_TSA,
    CSC_PORT,
    HTTP_PORT,
    QUICK,
    REPO,
    RESPONDER_PORT,
    RUN,
    SAMPLE,
    STATE,
    TSA_PORT,
    Knobs,
    Server,
    metadata,
    pdf_sample,
    run_child,
    service_env,
    summary,
)

Row = tuple[str, str, str, str]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def fmt(values: list[float] | None, unit: str, digits: int = 0) -> str:
    s = summary(values or [])
    if s is None:
        return "not measured"
    med, lo, hi = s
    return f"{med:.{digits}f} {unit} [{lo:.{digits}f}–{hi:.{digits}f}]"


def ratio(base: list[float] | None, ours: list[float] | None) -> float | None:
    b, o = summary(base or []), summary(ours or [])
    if b is None or o is None or o[0] == 0:
        return None
    return b[0] / o[0]


def rtxt(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}x"


# -- (e) a large PDF ----------------------------------------------------------------------

def make_big_pdf(path: Path, megabytes: int) -> None:
    """The sample record plus an incompressible stream of `megabytes` MB (an attachment-
    like payload referenced from the catalog), rewritten by qpdf into one revision."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    w = IncrementalPdfFileWriter(BytesIO(pdf_sample()))
    stream = generic.StreamObject(stream_data=os.urandom(megabytes * 1024 * 1024))
    w.root["/BenchPayload"] = w.add_object(stream)
    w.update_root()
    tmp = path.with_suffix(".incr.pdf")
    with tmp.open("wb") as f:
        w.write(f)
    if shutil.which("qpdf"):
        subprocess.run(["qpdf", "--compress-streams=n", str(tmp), str(path)], check=True)
        tmp.unlink()
    else:
        tmp.rename(path)


# -- (f) HTTP load -----------------------------------------------------------------------

def http_load(tsa_url: str, tag: str, requests_n: int, clients: int,
              seconds: int) -> dict[str, Any]:
    import requests

    work = RUN / f"http-{tag}"
    work.mkdir(parents=True, exist_ok=True)
    env = {**service_env(tsa_url, work), "PORT": str(HTTP_PORT), "HOCBA_WORKERS": "2",
           "HOCBA_THREADS": "1", "HOCBA_LOG_LEVEL": "warning",
           "HOCBA_PUBLIC_BASE_URL": f"http://127.0.0.1:{HTTP_PORT}"}
    gunicorn = Server("gunicorn", [str(Path(sys.executable).parent / "gunicorn"), "-c",
                                   "gunicorn.conf.py", "signer.http.wsgi:app"],
                      HTTP_PORT, env=env, log=RUN / f"gunicorn-{tag}.log").start()
    base = f"http://127.0.0.1:{HTTP_PORT}"
    doc = json.loads((STATE / "clients.json").read_text(encoding="utf-8"))
    key = next(c["api_key"] for c in doc["clients"] if c["name"] == "school-1")
    headers = {"Authorization": f"Bearer {key}"}
    pdf = pdf_sample()
    warm = 4
    id_base = 500_000 + (0 if tag == "cheap" else 100_000)
    try:
        ids: Queue[str] = Queue()
        up_errors = 0

        def upload(n: int, s: Any) -> None:
            nonlocal up_errors
            r = s.post(f"{base}/v1/records", headers=headers, timeout=60,
                       files={"document": ("r.pdf", pdf, "application/pdf")},
                       data={"metadata": json.dumps(metadata(n), ensure_ascii=False)})
            if r.status_code == 201:
                ids.put(r.json()["id"])
            else:
                up_errors += 1

        todo: Queue[int] = Queue()
        for n in range(requests_n + warm):
            todo.put(id_base + n)

        def uploader() -> None:
            s = requests.Session()
            while True:
                try:
                    upload(todo.get_nowait(), s)
                except Empty:
                    return

        threads = [threading.Thread(target=uploader) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        def sign(rid: str, s: Any) -> tuple[float, bool]:
            t0 = time.perf_counter()
            try:
                r = s.post(f"{base}/v1/records/{rid}/signatures", headers=headers,
                           json={"role": "teacher", "key": "school-1-teacher"}, timeout=120)
                ok = r.status_code in (200, 201)
            except requests.RequestException:
                ok = False
            return time.perf_counter() - t0, ok

        s0 = requests.Session()
        for _ in range(warm):  # both workers load keys, fonts, revocation data
            sign(ids.get_nowait(), s0)
        latencies: list[float] = []
        errors = 0
        lock = threading.Lock()
        deadline = time.monotonic() + seconds

        def client() -> None:
            nonlocal errors
            s = requests.Session()
            while time.monotonic() < deadline:
                try:
                    rid = ids.get_nowait()
                except Empty:
                    return
                dt, ok = sign(rid, s)
                with lock:
                    latencies.append(dt)
                    errors += not ok

        w0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - w0
    finally:
        gunicorn.stop()
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, round(p * (len(lat) - 1)))] if lat else float("nan")

    return {"requests": len(lat), "errors": errors, "upload_errors": up_errors,
            "rps": len(lat) / wall if wall else 0.0, "p50": pct(0.50), "p99": pct(0.99),
            "wall": wall}


# -- pyhanko-cli check -------------------------------------------------------------------

def cli_validate(path: Path) -> bool:
    proc = subprocess.run([str(Path(sys.executable).parent / "pyhanko"), "sign", "adesverify",
                           "--trust", str(STATE / "pki" / "root.pem"), "--trust-replace",
                           str(path)], capture_output=True, text=True, timeout=600)
    return proc.returncode == 0


def hocba_verify_command(path: str) -> bool:
    """`hocba verify --trust ROOT FILE` in a fresh process: exit status 0 = TOTAL_PASSED."""
    hocba = str(Path(sys.executable).parent / "hocba")
    proc = subprocess.run([hocba, "verify", "--trust", str(STATE / "pki" / "root.pem"), path],
                          capture_output=True, text=True, timeout=300)
    return proc.returncode == 0


# -- the run -----------------------------------------------------------------------------

def main() -> int:
    k = Knobs()
    t_start = time.perf_counter()
    from certs.provision import provision

    log(f"provisioning {STATE} (responder :{RESPONDER_PORT}, cheap TSA :{TSA_PORT})")
    provision(STATE, RESPONDER_PORT, csc_port=CSC_PORT)
    if RUN.exists():
        shutil.rmtree(RUN)
    RUN.mkdir(parents=True)
    py = sys.executable
    servers = [
        Server("responder", [py, "-m", "certs.responder", "--state", str(STATE),
                             "--port", str(RESPONDER_PORT)], RESPONDER_PORT,
               log=RUN / "responder.log"),
        Server("tsa", [py, "-m", "bench.tsa", "--state", str(STATE), "--port",
                       str(TSA_PORT)], TSA_PORT, log=RUN / "tsa.log"),
    ]
    rows: list[Row] = []
    notes: list[str] = []
    ratios: dict[str, float | None] = {}
    try:
        for s in servers:
            s.start()
        common = {"tsa_url": CHEAP_TSA, "warmup": k.warmup}

        # (a) CPU per record, full pipeline --------------------------------------------
        log(f"(a) {k.records} records per side after {k.warmup} warm-up")
        ha = run_child("hocba_pipeline", {**common, "n": k.records, "id_base": 1000,
                                          "workdir": str(RUN / "svc"),
                                          "outdir": str(RUN / "out" / "hocba")})
        ba = run_child("baseline_pipeline", {**common, "n": k.records,
                                             "workdir": str(RUN / "naive"),
                                             "outdir": str(RUN / "out" / "baseline")})
        ratios["cpu_per_record"] = ratio(ba["cpu_ms"], ha["cpu_ms"])
        rows.append(("(a) CPU ms / record, 3 sig + B-LTA (signing process)",
                     fmt(ha["cpu_ms"], "ms"), fmt(ba["cpu_ms"], "ms"),
                     rtxt(ratios["cpu_per_record"])))
        rows.append(("(a') wall s / record (cheap TSA)", fmt(ha["wall_s"], "s", 2),
                     fmt(ba["wall_s"], "s", 2), rtxt(ratio(ba["wall_s"], ha["wall_s"]))))
        st = ha["statements"]
        rows.append(("(a'') index SQL statements (create / teacher / principal / seal + "
                     "archive; SQLite, median)",
                     " / ".join(f"{st[k]:.0f}" for k in ("create", "teacher", "principal",
                                                         "seal")),
                     "n/a (no index)", "–"))

        # (b) a class of N by one role -------------------------------------------------
        log(f"(b) class of {k.class_size}, {k.batch_reps} rep(s) per side")
        bargs = {**common, "class_size": k.class_size, "reps": k.batch_reps,
                 "warmup_size": 2}
        hb = run_child("hocba_batch", {**bargs, "id_base": 10_000,
                                       "workdir": str(RUN / "batch")})
        bb = run_child("baseline_batch", {**bargs, "workdir": str(RUN / "naive")})
        ratios["batch40"] = ratio(bb["wall_s"], hb["wall_s"])
        rows.append((f"(b) wall s, class of {k.class_size}, teacher, cheap TSA"
                     + (f" ({hb['failed']} failed)" if hb["failed"] else ""),
                     fmt(hb["wall_s"], "s", 1), fmt(bb["wall_s"], "s", 1),
                     rtxt(ratios["batch40"])))
        if k.batch_reps and not QUICK:
            hb_an = run_child("hocba_batch", {**bargs, "tsa_url": ANIMATOR_TSA, "reps": 1,
                                              "id_base": 20_000,
                                              "workdir": str(RUN / "batch-animator")})
            bb_an = run_child("baseline_batch", {**bargs, "tsa_url": ANIMATOR_TSA,
                                                 "reps": 1, "workdir": str(RUN / "naive")})
            rows.append((f"(b) wall s, class of {k.class_size}, Animator TSA (1 run)",
                         fmt(hb_an["wall_s"], "s", 1), fmt(bb_an["wall_s"], "s", 1),
                         rtxt(ratio(bb_an["wall_s"], hb_an["wall_s"]))))

        # (c) bulk verification CPU ----------------------------------------------------
        hfiles = sorted(str(p) for p in (RUN / "out" / "hocba").glob("*.pdf"))
        bfiles = sorted(str(p) for p in (RUN / "out" / "baseline").glob("*.pdf"))
        log(f"(c) archiving {k.verify_records} records (untimed), then verifying each once; "
            f"baseline: {k.verify_n} verifications over its {len(bfiles)} outputs")
        run_child("hocba_pipeline", {**common, "warmup": 0, "n": k.verify_records,
                                     "id_base": 40_000, "workdir": str(RUN / "bulk"),
                                     "outdir": str(RUN / "out" / "bulk")})
        bulk = sorted(str(p) for p in (RUN / "out" / "bulk").glob("*.pdf"))
        hc = run_child("hocba_verify", {**common, "files": bulk, "n": len(bulk),
                                        "workdir": str(RUN / "bulk")})
        bc = run_child("baseline_verify", {**common, "files": bfiles, "n": k.verify_n,
                                           "workdir": str(RUN / "naive")})
        ratios["verify_cpu"] = ratio(bc["cpu_ms"], hc["cpu_ms"])
        rows.append((f"(c) verify CPU ms / record ({len(bulk)} records once; baseline "
                     f"{k.verify_n}× its {len(bfiles)}; passed {hc['passed']}/{len(bulk)}, "
                     f"{bc['passed']}/{k.verify_n})",
                     fmt(hc["cpu_ms"], "ms"), fmt(bc["cpu_ms"], "ms"),
                     rtxt(ratios["verify_cpu"])))

        # (d) cold single verification -------------------------------------------------
        log(f"(d) cold verification x{k.cold_reps} per side")
        hd: list[float] = []
        bd: list[float] = []
        for _ in range(k.cold_reps):
            w0 = time.perf_counter()
            passed = hocba_verify_command(hfiles[0])
            hd.append(time.perf_counter() - w0)
            if not passed:
                notes.append("(d) hocba cold verification did not pass")
            w0 = time.perf_counter()
            res = run_child("baseline_cold", {**common, "file": bfiles[0],
                                              "workdir": str(RUN / "naive")})
            bd.append(time.perf_counter() - w0)
            if not res["passed"]:
                notes.append("(d) baseline cold verification did not pass")
        rows.append(("(d) cold verify wall s (`hocba verify FILE`; baseline: fresh python)",
                     fmt(hd, "s", 2), fmt(bd, "s", 2), rtxt(ratio(bd, hd))))

        # (e) large PDF ----------------------------------------------------------------
        if k.big_mb > 0:
            log(f"(e) {k.big_mb} MB PDF per side")
            big = RUN / "big.pdf"
            make_big_pdf(big, k.big_mb)
            size_mb = big.stat().st_size / 2**20
            he = run_child("hocba_big", {**common, "file": str(big), "id_base": 30_000,
                                         "out": str(RUN / "big-hocba.pdf"),
                                         "workdir": str(RUN / "big")})
            be = run_child("baseline_big", {**common, "file": str(big),
                                            "out": str(RUN / "big-baseline.pdf"),
                                            "workdir": str(RUN / "naive")})

            # Each output validated in a fresh process, as a verifier would.
            he["valid"] = hocba_verify_command(str(RUN / "big-hocba.pdf"))
            be["valid"] = run_child("baseline_cold", {**common,
                                                      "file": str(RUN / "big-baseline.pdf"),
                                                      "workdir": str(RUN / "naive")})["passed"]

            def rss(r: dict[str, Any]) -> str:
                mb = r["maxrss_kb"] / 1024
                return (f"{mb:.0f} MB (file+{mb - size_mb:.0f}) "
                        f"{'valid' if r['valid'] else 'NOT valid'}, {r['wall_s']:.0f} s")

            rows.append((f"(e) peak RSS signing, {size_mb:.0f} MB PDF, 1 run", rss(he), rss(be),
                         rtxt(be["maxrss_kb"] / he["maxrss_kb"])))
        else:
            rows.append(("(e) peak RSS, large PDF", "not measured (BENCH_BIG_MB=0)",
                         "not measured", "–"))

        # (f) HTTP ---------------------------------------------------------------------
        loads = [("cheap", CHEAP_TSA, k.http_requests)]
        if k.http_animator_requests:
            loads.append(("animator", ANIMATOR_TSA, k.http_animator_requests))
        for tag, url, n in loads:
            log(f"(f) HTTP {k.http_clients} clients, {n} sign calls, {tag} TSA")
            f = http_load(url, tag, n, k.http_clients, k.http_seconds)
            rows.append((f"(f) HTTP sign (teacher), {k.http_clients} clients, gunicorn 2 "
                         f"workers, {tag} TSA",
                         f"{f['rps']:.1f} req/s p50 {f['p50']:.2f} s p99 {f['p99']:.2f} s "
                         f"errors {f['errors']}/{f['requests']}",
                         "n/a (no service)", "–"))

        # (g) bytes --------------------------------------------------------------------
        h_over = [x - ha["uploaded"] for x in ha["final"]]
        b_over = [x - ba["uploaded"] for x in ba["final"]]
        rows.append((f"(g) overhead bytes / record (final − {ha['uploaded']} B upload)",
                     fmt([x / 1024 for x in h_over], "KB", 1),
                     fmt([x / 1024 for x in b_over], "KB", 1), rtxt(ratio(b_over, h_over))))
        rows.append(("(g) bytes kept permanently / archived record",
                     f"{ha['archive_bytes_per_record'] / 1024:.1f} KB (final only; "
                     f"{ha['working_objects_left']} working objects left)",
                     fmt([x / 1024 for x in ba["final"]], "KB", 1),
                     rtxt(ratio(ba["final"], [ha["archive_bytes_per_record"]]))))

        # (h) renewal ------------------------------------------------------------------
        log(f"(h) renewing the {len(bulk)} records of (c) per side")
        hh = run_child("hocba_renew", {**common, "workdir": str(RUN / "bulk")})
        bh = run_child("baseline_renew", {**common, "files": bulk,
                                          "workdir": str(RUN / "naive")})
        ratios["renew_cpu"] = ratio(bh["cpu_ms"], hh["cpu_ms"])
        rows.append(("(h) renewal CPU ms / record (new document timestamp + TSA revocation "
                     "data; hocba: as a new locked version, indexed)",
                     fmt(hh["cpu_ms"], "ms"), fmt(bh["cpu_ms"], "ms"),
                     rtxt(ratios["renew_cpu"])))

        # pyhanko-cli on a sample of outputs -------------------------------------------
        sample = (hfiles[: k.validate_sample] + bfiles[: k.validate_sample]
                  + [str(p) for p in (RUN / "big-hocba.pdf", RUN / "big-baseline.pdf")
                     if p.exists() and not QUICK])
        log(f"pyhanko-cli adesverify on {len(sample)} outputs")
        results = [(Path(p).name, cli_validate(Path(p))) for p in sample]
        cli_passed = sum(ok for _n, ok in results)
        rows.append(("pyhanko sign adesverify on a sample of outputs",
                     f"{sum(ok for n, ok in results if not n.startswith(('naive', 'big-b')))}"
                     f"/{sum(1 for n, _ in results if not n.startswith(('naive', 'big-b')))}"
                     " passed",
                     f"{sum(ok for n, ok in results if n.startswith(('naive', 'big-b')))}"
                     f"/{sum(1 for n, _ in results if n.startswith(('naive', 'big-b')))}"
                     " passed", "–"))
        if cli_passed != len(results):
            notes.append("FAILED pyhanko-cli: " + ", ".join(n for n, ok in results if not ok))
    finally:
        for s in reversed(servers):
            s.stop()

    # The HTTP path per producer, against naive and tuned pipelines (bench/http_path.py)
    http_lines: list[str] = []
    if os.environ.get("BENCH_HTTP_PATH", "1") != "0":
        from bench import http_path

        log("HTTP path per producer (bench.http_path)")
        http_lines, http_ratios = http_path.measure()
        ratios.update(http_ratios)

    from importlib.metadata import version

    head = ("figure", "hocba median [min–max]", "baseline median [min–max]",
            "baseline÷hocba")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    print(f"hocba bench — sample {SAMPLE}, pyHanko {version('pyHanko')}, "
          f"{os.cpu_count()} CPUs, load avg at end {os.getloadavg()[0]:.1f}, "
          f"{'QUICK, ' if QUICK else ''}{time.perf_counter() - t_start:.0f} s")
    for r in [head, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for note in notes:
        print(f"note: {note}")
    if http_lines:
        print()
        print("\n".join(line for line in http_lines if not line.startswith("ratios:")))
        print()
    print("ratios: " + " ".join(f"{name}={'n/a' if v is None else f'{v:.2f}'}x"
                                for name, v in ratios.items()))
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    raise SystemExit(main())
