"""`python -m bench.http_path`: what users feel, per producer — hocba through gunicorn over
HTTP with the real create path, against the naive and a tuned pyHanko pipeline, in the
same run, on several producers' PDFs.

hocba: gunicorn (gunicorn.conf.py, 2 sync workers) over a fresh store and index; per
record, sequentially from one client, `POST /v1/records` (multipart upload + metadata)
then `POST /v1/records/{id}/signatures` for teacher, principal and seal (server-held
keys). CPU = utime+stime (+ cutime+cstime of any waited-for children) of the gunicorn
WORKER processes only (from /proc/<pid>/stat, the master's children), read before and
after the measured records, ÷ N. Not counted: the gunicorn master, the client, the TSA and
the OCSP responder (separate processes, as for the baselines).

Baselines, each in its own child process (CPU = time.process_time of that process):
NAIVE = bench/baseline.py's `pipeline` (fresh context, TSA client and keys per
signature); TUNED = `tuned_records` below: one ValidationContext and one HTTPTimeStamper
sharing one aiohttp session, signers loaded once (the PKCS#11 seal: one session), one
PdfSigner per role, pyHanko's async API in one event loop, PAdES with embedded
validation info, the seal signed with `use_pades_lta` (DSS + document timestamp).

Producers: the two samples (fpdf2, LibreOffice PDF/A), a generated 12-page image-heavy
record, and the fpdf2 sample rewritten by `qpdf --object-streams=generate`.

Knobs (env): BENCH_QUICK=1, BENCH_HTTP_PATH_RECORDS (20; quick 4), BENCH_HTTP_PATH_WARMUP
(3; quick 2), BENCH_HTTP_PATH_PAGES (12), BENCH_HTTP_PATH_PRODUCERS (comma list of
producer names, default all), BENCH_HTTP_PATH_SIDES (comma list of hocba, naive, tuned;
default all), BENCH_PORT (as bench/common.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

from bench.common import (
    CHEAP_TSA,
    CSC_PORT,
    HTTP_PORT,
    KEYS,
    QUICK,
    REPO,
    RESPONDER_PORT,
    RUN,
    SAMPLE_META,
    SAMPLES,
    SCHOOL,
    STATE,
    TSA_PORT,
    Server,
    service_env,
)

ROLES = ("teacher", "principal", "seal")
WORK = RUN / "http-path"


def _int(name: str, full: int, quick: int) -> int:
    return int(os.environ.get(name, str(quick if QUICK else full)))


RECORDS = _int("BENCH_HTTP_PATH_RECORDS", 20, 4)
WARMUP = _int("BENCH_HTTP_PATH_WARMUP", 3, 2)
PAGES = _int("BENCH_HTTP_PATH_PAGES", 12, 12)
SIDES = tuple(os.environ.get("BENCH_HTTP_PATH_SIDES", "hocba,naive,tuned").split(","))

FPDF2 = "hoc-ba-tieu-hoc-fpdf2.pdf"
LIBRE = "hoc-ba-thcs-libreoffice-pdfa.pdf"
# producer -> the sample whose pupil (record type, name, birth year, grade, class) it uses
PRODUCERS: dict[str, str] = {
    "fpdf2": FPDF2,
    "libreoffice-pdfa": LIBRE,
    "image-heavy": FPDF2,
    "object-streams": FPDF2,
}


def log(msg: str) -> None:
    print(f"[http_path {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def metadata(sample: str, n: int) -> dict[str, Any]:
    """Metadata for benchmark pupil `n` of `sample`'s kind (a distinct id number per n)."""
    record_type, name, year, grade, class_name = SAMPLE_META[sample]
    century = 2 if year >= 2000 else 0
    return {
        "record_type": record_type,
        "school": {"code": SCHOOL[0], "name": SCHOOL[1]},
        "student": {"id_number": f"001{century}{year % 100:02d}{n % 1_000_000:06d}",
                    "full_name": name, "date_of_birth": f"{year}-05-17",
                    "student_code": f"HS-{n:06d}"},
        "school_year": "2024-2025", "grade": grade, "class_name": class_name,
        "supersedes": None,
    }


# -- the producers' files (untimed) -------------------------------------------------------

def _pdf_file(objects: list[bytes], info: int) -> bytes:
    """A classic one-revision PDF (xref table) from object bodies numbered 1..n."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    file_id = os.urandom(16).hex().encode()
    out += (b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R /ID [<%s> <%s>] >>\n"
            b"startxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, file_id, file_id, xref))
    return bytes(out)


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return (b"<< /Length %d /Filter /FlateDecode %s>>\nstream\n" % (len(data), extra)
            + data + b"\nendstream")


def image_heavy_pdf(pages: int, seed: int = 13) -> bytes:
    """A scanned-looking record: `pages` A4 pages, each one full-page 850×1200 RGB scan
    (Flate, paper noise and darker 'handwriting' bands, so it compresses like a scan)
    under a line of text (Helvetica)."""
    rng = random.Random(seed)
    width, height = 850, 1200
    row = width * 3
    paper = bytes(236 + 3 * (b < 24) for b in range(256))
    ink = bytes(40 + (b & 7) * 8 for b in range(256))
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 3 0 R >>",
        b"<< /Producer (hocba bench: image-heavy record generator) /Creator (bench.http_path)"
        b" /CreationDate (D:20250115093000+07'00') >>",
        b"",  # the page tree, below
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    kids = []
    for p in range(pages):
        noise = rng.randbytes(row * height)
        rows = []
        for y in range(height):
            line = noise[y * row:(y + 1) * row]
            band = (y // 14) % 4 == 0 and 120 < y < height - 120
            rows.append(line.translate(ink if band and (y * 7 + p) % 5 else paper))
        image = zlib.compress(b"".join(rows), 6)
        first = len(objects) + 1  # page, content, image
        text = f"So hoc ba - trang {p + 1}/{pages} (ban quet)".encode("ascii")
        content = zlib.compress(b"q 595.28 0 0 841.89 0 0 cm /Im0 Do Q BT /F1 9 Tf 36 20 Td "
                                b"(" + text + b") Tj ET")
        objects.append(b"<< /Type /Page /Parent 3 0 R /MediaBox [0 0 595.28 841.89] "
                       b"/Resources << /Font << /F1 4 0 R >> /XObject << /Im0 %d 0 R >> >> "
                       b"/Contents %d 0 R >>" % (first + 2, first + 1))
        objects.append(_stream(content))
        objects.append(_stream(image, b"/Type /XObject /Subtype /Image /Width %d /Height %d "
                               b"/ColorSpace /DeviceRGB /BitsPerComponent 8 "
                               % (width, height)))
        kids.append(b"%d 0 R" % first)
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), pages)
    return _pdf_file(objects, info=2)


def make_inputs(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """Each producer's file; notes on anything that could not be made."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {"fpdf2": SAMPLES / FPDF2, "libreoffice-pdfa": SAMPLES / LIBRE}
    notes: list[str] = []
    img = directory / f"image-heavy-{PAGES}p.pdf"
    img.write_bytes(image_heavy_pdf(PAGES))
    files["image-heavy"] = img
    qpdf = shutil.which("qpdf")
    if qpdf:
        check = subprocess.run([qpdf, "--check", str(img)], capture_output=True, text=True)
        if check.returncode not in (0, 3):
            notes.append(f"qpdf --check on the image-heavy file: {check.stdout[-300:]}")
        objstm = directory / "fpdf2-object-streams.pdf"
        subprocess.run([qpdf, "--object-streams=generate", str(SAMPLES / FPDF2), str(objstm)],
                       check=True)
        files["object-streams"] = objstm
    else:
        notes.append("qpdf not found: no object-streams producer")
    wanted = os.environ.get("BENCH_HTTP_PATH_PRODUCERS", "")
    if wanted:
        keep = {w.strip() for w in wanted.split(",")}
        files = {k: v for k, v in files.items() if k in keep}
    return files, notes


# -- CPU of the gunicorn workers ----------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on


def proc_cpu(pid: int) -> tuple[float, float]:
    """(utime+stime, cutime+cstime) of `pid` in seconds."""
    f = _stat_fields(pid)
    return (int(f[11]) + int(f[12])) / TICK, (int(f[13]) + int(f[14])) / TICK


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    if path.exists():
        return sorted(int(x) for x in path.read_text().split())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError):
                continue
    return sorted(found)


def workers_cpu(pids: list[int]) -> tuple[float, float]:
    own = waited = 0.0
    for pid in pids:
        a, b = proc_cpu(pid)
        own += a
        waited += b
    return own, waited


# -- hocba over HTTP ------------------------------------------------------------------------

class Refused(Exception):
    def __init__(self, step: str, status: int, code: str, detail: str) -> None:
        super().__init__(f"{step}: {status} {code}: {detail}")
        self.step, self.status, self.code, self.detail = step, status, code, detail


def _refused(step: str, r: Any) -> Refused:
    try:
        body = r.json()
        return Refused(step, r.status_code, str(body.get("code")),
                       str(body.get("detail"))[:300])
    except ValueError:
        return Refused(step, r.status_code, "?", r.text[:300])


def http_record(s: Any, base: str, headers: dict[str, str], pdf: bytes,
                meta: dict[str, Any]) -> str:
    """Create + three signatures over HTTP; the record id (archived)."""
    r = s.post(f"{base}/v1/records", headers=headers, timeout=300,
               files={"document": ("record.pdf", pdf, "application/pdf")},
               data={"metadata": json.dumps(meta, ensure_ascii=False)})
    if r.status_code != 201:
        raise _refused("create", r)
    rid: str = r.json()["id"]
    for role in ROLES:
        r = s.post(f"{base}/v1/records/{rid}/signatures", headers=headers, timeout=300,
                   json={"role": role, "key": KEYS[role]})
        if r.status_code != 200:
            raise _refused(f"sign {role}", r)
    if r.json()["status"] != "archived":
        raise RuntimeError(f"record {rid} not archived: {r.json()['status']}")
    return rid


def hocba_http(files: dict[str, Path], notes: list[str]) -> dict[str, dict[str, Any]]:
    import requests

    WORK.mkdir(parents=True, exist_ok=True)
    env = {**service_env(CHEAP_TSA, WORK), "PORT": str(HTTP_PORT), "HOCBA_WORKERS": "2",
           "HOCBA_THREADS": "1", "HOCBA_LOG_LEVEL": "warning",
           "HOCBA_PUBLIC_BASE_URL": f"http://127.0.0.1:{HTTP_PORT}"}
    gunicorn = Server("gunicorn", [str(Path(sys.executable).parent / "gunicorn"), "-c",
                                   "gunicorn.conf.py", "signer.http.wsgi:app"],
                      HTTP_PORT, env=env, log=WORK / "gunicorn.log").start()
    assert gunicorn.proc is not None
    master = gunicorn.proc.pid
    base = f"http://127.0.0.1:{HTTP_PORT}"
    doc = json.loads((STATE / "clients.json").read_text(encoding="utf-8"))
    key = next(c["api_key"] for c in doc["clients"] if c["name"] == "school-1")
    headers = {"Authorization": f"Bearer {key}"}
    out_dir = WORK / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    n = 600_000
    try:
        deadline = time.monotonic() + 60
        while len(children(master)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        s = requests.Session()
        # Both workers' first requests pay lazy imports and per-process state: warm them
        # up before any producer is measured (else the first producer pays it).
        first = next(iter(files))
        log(f"hocba HTTP: {2 * WARMUP} server warm-up records ({first})")
        for _ in range(2 * WARMUP):
            try:
                http_record(s, base, headers, files[first].read_bytes(),
                            metadata(PRODUCERS[first], n))
            except Refused:
                break  # reported when the producer itself is measured
            n += 1
        for producer, path in files.items():
            pdf = path.read_bytes()
            sample = PRODUCERS[producer]
            log(f"hocba HTTP {producer}: {WARMUP} warm-up + {RECORDS} records "
                f"({len(pdf) / 1024:.0f} KB)")
            pids = children(master)
            cpu0, waited0 = workers_cpu(pids)
            per_cpu, walls, ids = [], [], []
            try:
                for i in range(WARMUP + RECORDS):
                    if i == WARMUP:
                        pids = children(master)
                        cpu0, waited0 = workers_cpu(pids)
                    c0 = workers_cpu(pids)[0]
                    w0 = time.perf_counter()
                    rid = http_record(s, base, headers, pdf, metadata(sample, n))
                    n += 1
                    if i >= WARMUP:
                        walls.append(time.perf_counter() - w0)
                        per_cpu.append((workers_cpu(pids)[0] - c0) * 1000)
                        ids.append(rid)
            except Refused as e:
                notes.append(f"{producer}: refused by hocba ({e}); producer skipped")
                results[producer] = {"refused": f"{e.step}: {e.code}"}
                continue
            cpu1, waited1 = workers_cpu(pids)
            if children(master) != pids:
                notes.append(f"{producer}: gunicorn workers changed during the measured "
                             f"records ({pids} -> {children(master)}); CPU undercounted")
            if waited1 > waited0:
                notes.append(f"{producer}: workers' waited-for children used "
                             f"{(waited1 - waited0) * 1000:.0f} ms (counted)")
            r = s.get(f"{base}/v1/records/{ids[0]}/document", headers=headers, timeout=120)
            r.raise_for_status()
            out = out_dir / f"hocba-{producer}.pdf"
            out.write_bytes(r.content)
            results[producer] = {
                "cpu_ms": ((cpu1 - cpu0) + (waited1 - waited0)) * 1000 / RECORDS,
                "cpu_ms_per_record": per_cpu, "wall_s": walls, "out": str(out),
                "uploaded": len(pdf), "final": len(r.content), "workers": pids,
            }
    finally:
        gunicorn.stop()
    return results


# -- the baselines (child processes) ------------------------------------------------------

def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def naive_records(a: dict[str, Any]) -> dict[str, Any]:
    """bench/baseline.py's pipeline per record (its 'archive': the file, fsynced)."""
    from bench import baseline

    pdf = Path(a["file"]).read_bytes()
    out_dir = Path(a["outdir"])
    cpu, wall = [], []
    for i in range(a["warmup"] + a["n"]):
        path = out_dir / f"naive-{a['producer']}-{i:03d}.pdf"
        c0, w0 = time.process_time(), time.perf_counter()
        baseline.pipeline(pdf, a["tsa_url"], path)
        c1, w1 = time.process_time(), time.perf_counter()
        if i < a["warmup"]:
            path.unlink()
        else:
            cpu.append((c1 - c0) * 1000)
            wall.append(w1 - w0)
    return {"cpu_ms_per_record": cpu, "wall_s": wall,
            "out": str(out_dir / f"naive-{a['producer']}-{a['warmup']:03d}.pdf")}


async def tuned_records(a: dict[str, Any]) -> dict[str, Any]:
    """What a competent user writes for a service: everything that can be shared across
    records is built once; pyHanko's async signing API in one event loop."""
    import aiohttp
    from pyhanko.config.pkcs11 import PKCS11SignatureConfig, TokenCriteria
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.sign.pkcs11 import PKCS11SigningContext
    from pyhanko.sign.timestamps import HTTPTimeStamper
    from pyhanko_certvalidator import ValidationContext
    from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

    from bench import baseline

    pdf = Path(a["file"]).read_bytes()
    out_dir = Path(a["outdir"])
    pki = STATE / "pki"
    cpu, wall = [], []
    cut_font = _vietnamese_cut(baseline.FONT, out_dir / "tuned-font.ttf")
    async with aiohttp.ClientSession() as session:
        vc = ValidationContext(trust_roots=[baseline._root()], allow_fetching=True,
                               fetcher_backend=AIOHttpFetcherBackend(session))
        timestamper = HTTPTimeStamper(a["tsa_url"], session=session)
        keys: dict[str, signers.Signer] = {}
        for role in ("teacher", "principal"):
            label = f"{role}-1"
            keys[role] = baseline.CachedKeySigner.load_cached(
                str(pki / "keys" / f"{label}.key.pem"), str(pki / "certs" / f"{label}.pem"),
                (str(pki / "certs" / "interm.pem"),))
        p11 = baseline._clients()["pkcs11"]
        config = PKCS11SignatureConfig(
            module_path=p11["module"], token_criteria=TokenCriteria(label=p11["token_label"]),
            user_pin=(STATE / "hsm-pin").read_text().strip(), cert_label="seal-1",
            key_label="seal-1", other_certs=[baseline._cert(pki / "certs" / "interm.pem")])
        async with PKCS11SigningContext(config) as seal:
            keys["seal"] = seal
            pdf_signers = {}
            for role in ROLES:
                name, box, title = baseline.FIELDS[role]
                meta = signers.PdfSignatureMetadata(
                    field_name=name, md_algorithm="sha256",
                    subfilter=fields.SigSeedSubFilter.PADES, certify=role == "teacher",
                    docmdp_permissions=fields.MDPPerm.FILL_FORMS,
                    embed_validation_info=True, validation_context=vc,
                    use_pades_lta=role == "seal",
                    reason=title, location=SCHOOL[1])
                pdf_signers[role] = signers.PdfSigner(
                    meta, signer=keys[role], timestamper=timestamper,
                    stamp_style=baseline._style(title, font=cut_font),
                    new_field_spec=fields.SigFieldSpec(name, on_page=-1, box=box))
            for i in range(a["warmup"] + a["n"]):
                c0, w0 = time.process_time(), time.perf_counter()
                data = pdf
                for role in ROLES:
                    w = IncrementalPdfFileWriter(BytesIO(data))
                    if role == "teacher":
                        for other, (fname, fbox, _t) in baseline.FIELDS.items():
                            if other != role:
                                fields.append_signature_field(
                                    w, fields.SigFieldSpec(fname, on_page=-1, box=fbox))
                    out = await pdf_signers[role].async_sign_pdf(w)
                    data = out.getvalue()
                path = out_dir / f"tuned-{a['producer']}-{i:03d}.pdf"
                _write(path, data)
                c1, w1 = time.process_time(), time.perf_counter()
                if i < a["warmup"]:
                    path.unlink()
                else:
                    cpu.append((c1 - c0) * 1000)
                    wall.append(w1 - w0)
    return {"cpu_ms_per_record": cpu, "wall_s": wall,
            "out": str(out_dir / f"tuned-{a['producer']}-{a['warmup']:03d}.pdf")}


def _vietnamese_cut(font: str, out: Path) -> str:
    """What a user does once the profile shows pyHanko parsing the 0.5 MB font per stamp:
    cut it, once, to the characters Vietnamese text uses (layout tables kept)."""
    from fontTools import subset

    chars = [*range(0x20, 0x7F), *range(0xA0, 0x180), 0x1A0, 0x1A1, 0x1AF, 0x1B0,
             *range(0x300, 0x324), *range(0x1EA0, 0x1EFA), *range(0x2010, 0x203B), 0x20AB]
    subset.main([font, f"--output-file={out}", "--layout-features=*", "--name-IDs=*",
                 "--unicodes=" + ",".join(f"{c:x}" for c in chars)])
    return str(out)


def child_main(task: str, a: dict[str, Any]) -> dict[str, Any]:
    workdir = Path(a["outdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.update(service_env(a["tsa_url"], workdir))  # SOFTHSM2_CONF first
    if task == "naive":
        return naive_records(a)
    if task == "tuned":
        return asyncio.run(tuned_records(a))
    raise SystemExit(f"unknown task {task}")


def run_side(task: str, args: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.http_path", "--child", task,
                           json.dumps(args)], cwd=REPO, capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{task} child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def cli_validate(path: str) -> bool:
    proc = subprocess.run([str(Path(sys.executable).parent / "pyhanko"), "sign", "adesverify",
                           "--trust", str(STATE / "pki" / "root.pem"), "--trust-replace",
                           path], capture_output=True, text=True, timeout=600)
    return proc.returncode == 0


# -- the run ----------------------------------------------------------------------------------

def _machine() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return f"{os.cpu_count()} CPUs ({model}), {mem} RAM"


def main() -> int:
    lines, _ratios = measure()
    print("\n".join(lines))
    return 0


def measure() -> tuple[list[str], dict[str, float | None]]:
    """Run the whole measurement; the printed table's lines, and its median ratios
    (http_vs_naive, http_vs_tuned) for `make bench`'s ratios line."""
    t_start = time.perf_counter()
    from certs.provision import provision

    log(f"provisioning {STATE}")
    provision(STATE, RESPONDER_PORT, csc_port=CSC_PORT)
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    files, notes = make_inputs(WORK / "inputs")
    py = sys.executable
    servers = [
        Server("responder", [py, "-m", "certs.responder", "--state", str(STATE),
                             "--port", str(RESPONDER_PORT)], RESPONDER_PORT,
               log=WORK / "responder.log"),
        Server("tsa", [py, "-m", "bench.tsa", "--state", str(STATE), "--port",
                       str(TSA_PORT)], TSA_PORT, log=WORK / "tsa.log"),
    ]
    naive: dict[str, dict[str, Any]] = {}
    tuned: dict[str, dict[str, Any]] = {}
    try:
        for s in servers:
            s.start()
        hocba = hocba_http(files, notes)
        for producer, path in files.items():
            if "refused" in hocba.get(producer, {"refused": "?"}):
                continue
            args = {"producer": producer, "file": str(path), "tsa_url": CHEAP_TSA,
                    "warmup": WARMUP, "n": RECORDS, "outdir": str(WORK / "out")}
            for task, into in (("naive", naive), ("tuned", tuned)):
                if task not in SIDES:
                    continue
                log(f"{task} {producer}: {WARMUP} warm-up + {RECORDS} records")
                try:
                    into[producer] = run_side(task, args)
                except RuntimeError as e:
                    notes.append(f"{task} {producer} failed: {str(e)[-600:]}")
    finally:
        for s in reversed(servers):
            s.stop()

    log("pyhanko sign adesverify on one output per side and producer")
    checks: dict[tuple[str, str], bool] = {}
    for producer in files:
        for side, res in (("hocba", hocba), ("naive", naive), ("tuned", tuned)):
            out = res.get(producer, {}).get("out")
            if out:
                checks[(side, producer)] = cli_validate(out)

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    head = ("producer", "upload KB", "hocba HTTP ms CPU/rec", "naive ms", "tuned ms",
            "naive÷hocba", "tuned÷hocba", "wall s/rec hocba/naive/tuned",
            "adesverify h/n/t")
    rows: list[tuple[str, ...]] = []
    r_naive: list[float] = []
    r_tuned: list[float] = []
    for producer in files:
        h = hocba.get(producer, {})
        if "refused" in h:
            rows.append((producer, f"{files[producer].stat().st_size / 1024:.0f}",
                         f"refused ({h['refused']})", "–", "–", "–", "–", "–", "–"))
            continue
        hc = h["cpu_ms"]
        nv = naive.get(producer)
        tv = tuned.get(producer)
        nc = mean(nv["cpu_ms_per_record"]) if nv else None
        tc = mean(tv["cpu_ms_per_record"]) if tv else None
        rn = nc / hc if nc is not None and hc else None
        rt = tc / hc if tc is not None and hc else None
        if rn is not None:
            r_naive.append(rn)
        if rt is not None:
            r_tuned.append(rt)

        def wall(res: dict[str, Any] | None) -> str:
            return f"{statistics.median(res['wall_s']):.2f}" if res else "–"

        def ok(side: str, p: str = producer) -> str:
            v = checks.get((side, p))
            return "–" if v is None else ("pass" if v else "FAIL")

        rows.append((producer, f"{h['uploaded'] / 1024:.0f}", f"{hc:.0f}",
                     "–" if nc is None else f"{nc:.0f}", "–" if tc is None else f"{tc:.0f}",
                     "–" if rn is None else f"{rn:.2f}x", "–" if rt is None else f"{rt:.2f}x",
                     f"{wall(h)}/{wall(nv)}/{wall(tv)}",
                     f"{ok('hocba')}/{ok('naive')}/{ok('tuned')}"))

    from importlib.metadata import version

    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    out = [f"bench.http_path — {'QUICK' if QUICK else 'full'}, N={RECORDS} after {WARMUP} "
           f"warm-up per producer and side, pyHanko {version('pyHanko')}, {_machine()}, "
           f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load avg at end "
           f"{os.getloadavg()[0]:.1f}, {time.perf_counter() - t_start:.0f} s",
           "CPU ms per record: hocba = gunicorn workers' CPU ÷ N (create + 3 signatures over "
           "HTTP); naive/tuned = process_time of the baseline's child, mean; wall = median"]
    for r in [head, tuple("-" * w for w in widths), *rows]:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    out += [f"note: {note}" for note in notes]
    ratios = {"http_vs_naive": statistics.median(r_naive) if r_naive else None,
              "http_vs_tuned": statistics.median(r_tuned) if r_tuned else None}
    out.append("ratios: " + " ".join(f"{name}={'n/a' if v is None else f'{v:.2f}'}x"
                                     for name, v in ratios.items()))
    return out, ratios

if __name__ == "__main__":
    os.chdir(REPO)
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(child_main(sys.argv[2], json.loads(sys.argv[3]))))
        raise SystemExit(0)
    raise SystemExit(main())
