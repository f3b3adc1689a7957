"""Paths, ports, knobs, servers and small helpers shared by the benchmark processes."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "tests" / "fixtures" / "samples"
STATE = REPO / "var" / "bench"
RUN = STATE / "run"  # everything one run writes (wiped at the start of a run)

BASE_PORT = int(os.environ.get("BENCH_PORT", "9840"))
RESPONDER_PORT = BASE_PORT      # certomancer Animator: TSA + OCSP + CRL
TSA_PORT = BASE_PORT + 1        # bench/tsa.py: cheap RFC 3161 TSA
CSC_PORT = BASE_PORT + 2        # provisioned into clients.json, not started
HTTP_PORT = BASE_PORT + 3       # gunicorn for figure (f)

ANIMATOR_TSA = f"http://127.0.0.1:{RESPONDER_PORT}/dev/tsa/tsa"
CHEAP_TSA = f"http://127.0.0.1:{TSA_PORT}/"

SAMPLE = os.environ.get("BENCH_SAMPLE", "hoc-ba-tieu-hoc-fpdf2.pdf")
SAMPLE_META = {  # the pupil in each sample (the id number varies per benchmark record)
    "hoc-ba-tieu-hoc-fpdf2.pdf": ("hoc_ba_tieu_hoc", "Phạm Gia Huy", 2017, 2, "2B"),
    "hoc-ba-thcs-libreoffice-pdfa.pdf": ("hoc_ba_thcs", "Lê Hoàng Minh Khôi", 2011, 8, "8/3"),
}
SCHOOL = ("DEMO-SCHOOL-1", "Trường Tiểu học Nguyễn Du")
KEYS = {"teacher": "school-1-teacher", "principal": "school-1-principal",
        "seal": "school-1-seal"}


def _int(name: str, full: int, quick: int) -> int:
    return int(os.environ.get(name, str(quick if QUICK else full)))


QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")


@dataclass(frozen=True)
class Knobs:
    records: int = _int("BENCH_RECORDS", 8, 3)            # (a) measured records per side
    warmup: int = _int("BENCH_WARMUP", 1, 1)              # warm-up records / batches
    class_size: int = _int("BENCH_CLASS", 40, 10)          # (b)
    batch_reps: int = _int("BENCH_BATCH_REPS", 2, 1)       # (b)
    verify_records: int = _int("BENCH_VERIFY_RECORDS", 200, 6)  # (c) hocba: each once
    verify_n: int = _int("BENCH_VERIFY_N", 24, 6)          # (c) baseline: over its outputs
    cold_reps: int = _int("BENCH_COLD_REPS", 3, 1)         # (d)
    big_mb: int = _int("BENCH_BIG_MB", 200, 5)             # (e), the size
    http_requests: int = _int("BENCH_HTTP_REQUESTS", 128, 32)   # (f), cheap TSA
    http_animator_requests: int = _int("BENCH_HTTP_ANIMATOR_REQUESTS", 64, 0)
    http_seconds: int = _int("BENCH_HTTP_SECONDS", 60, 30)      # (f) time bound per load
    http_clients: int = _int("BENCH_HTTP_CLIENTS", 32, 32)
    validate_sample: int = _int("BENCH_CLI_SAMPLE", 2, 1)  # outputs checked by pyhanko-cli


def pdf_sample() -> bytes:
    return (SAMPLES / SAMPLE).read_bytes()


def metadata(n: int) -> dict[str, Any]:
    """Metadata for benchmark pupil `n` (unique id number per record in a run)."""
    record_type, name, year, grade, class_name = SAMPLE_META[SAMPLE]
    century = 2 if year >= 2000 else 0
    id_number = f"001{century}{year % 100:02d}{n % 1_000_000:06d}"
    return {
        "record_type": record_type,
        "school": {"code": SCHOOL[0], "name": SCHOOL[1]},
        "student": {"id_number": id_number, "full_name": name,
                    "date_of_birth": f"{year}-05-17", "student_code": f"HS-{n:06d}"},
        "school_year": "2024-2025", "grade": grade, "class_name": class_name,
        "supersedes": None,
    }


def service_env(tsa_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """HOCBA_* settings for a hocba over var/bench with its own store and index."""
    from signer.cli import dev_environment

    env = dev_environment(STATE, RESPONDER_PORT)
    env.update({"HOCBA_TSA_URL": tsa_url, "HOCBA_STORE": str(workdir / "store"),
                "HOCBA_INDEX_URL": f"sqlite:///{workdir / 'index.sqlite3'}"})
    env.update(extra)
    return env


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port}")


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Server:
    """A child server process in its own process group, stopped by its own pid."""

    def __init__(self, name: str, argv: list[str], port: int,
                 env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.name, self.argv, self.port, self.env, self.log = name, argv, port, env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Server:
        if port_taken(self.port):
            raise RuntimeError(f"{self.name}: port {self.port} is taken; set BENCH_PORT "
                               "to another base port")
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env={**os.environ, **(self.env or {})},
                                     stdout=out, stderr=out, start_new_session=True)
        try:
            wait_port(self.port, timeout)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)
        self.proc = None


def run_child(task: str, args: dict[str, Any], env: dict[str, str] | None = None,
              timeout: float = 1800) -> Any:
    """Run `python -m bench.child task` in a fresh process; its last stdout line is JSON."""
    proc = subprocess.run([sys.executable, "-m", "bench.child", task, json.dumps(args)],
                          cwd=REPO, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"bench child {task} failed ({proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(values: list[float]) -> tuple[float, float, float] | None:
    if not values:
        return None
    return statistics.median(values), min(values), max(values)
