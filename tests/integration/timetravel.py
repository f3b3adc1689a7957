"""Running the responder, `hocba` and pyHanko's `adesverify` at a faked date (libfaketime),
for the time-travel tests: every process sees the clock start at that date and run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HOCBA = str(BIN / "hocba")
PYHANKO = str(BIN / "pyhanko")
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
TIMEOUT = 240


def faked_env(when: datetime, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a process whose clock starts at `when` (UTC) and runs."""
    when = when.astimezone(UTC)
    return {**os.environ, **(extra or {}), "TZ": "UTC", "LD_PRELOAD": LIBFAKETIME,
            "FAKETIME": f"@{when:%Y-%m-%d %H:%M:%S}", "FAKETIME_DONT_RESET": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout}s: {what}")


@contextmanager
def responder_at(state: Path, port: int, when: datetime) -> Iterator[subprocess.Popen[bytes]]:
    """The dev TSA/OCSP/CRL responder on `port` (the port the certificates' URLs name),
    its clock at `when`. The port must be free (stop the session responder first)."""
    wait_until(lambda: not port_open(port), 15, f"port {port} free")
    proc = subprocess.Popen([sys.executable, "-m", "certs.responder", "--state", str(state),
                             "--port", str(port)], cwd=REPO, env=faked_env(when))
    try:
        wait_until(lambda: port_open(port) or proc.poll() is not None, 90,
                   f"responder on {port}")
        if proc.poll() is not None:
            raise RuntimeError(f"responder at {when} exited with {proc.returncode}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        wait_until(lambda: not port_open(port), 15, f"port {port} released")


@dataclass
class Run:
    """One finished command: its arguments, exit status and output."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def passed(self) -> bool:
        return self.returncode == 0

    def text(self) -> str:
        return (f"$ {' '.join(self.args)}\n[exit {self.returncode}]\n"
                f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-4000:]}")


def run_at(when: datetime, args: Sequence[str], env: dict[str, str] | None = None) -> Run:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=REPO, env=faked_env(when, env))
    return Run(list(args), done.returncode, done.stdout, done.stderr)


def hocba_at(when: datetime, *args: str, env: dict[str, str] | None = None) -> Run:
    """`hocba ARGS` with its clock at `when` (env: extra settings, e.g. HOCBA_STORE)."""
    return run_at(when, [HOCBA, *args], env)


@dataclass
class HocbaVerdict:
    run: Run
    report: dict[str, Any] | None  # the --json report (None: exit 2, unusable input)

    @property
    def passed(self) -> bool:
        return self.run.passed

    @property
    def indication(self) -> str:
        if self.report is None:
            return f"(exit {self.run.returncode})"
        return str(self.report.get("indication"))


def hocba_verify_at(when: datetime, pdf: Path, trust: Sequence[Path], online: bool,
                    evidence: Path | None = None) -> HocbaVerdict:
    args = ["verify", "--json", *(a for t in trust for a in ("--trust", str(t)))]
    if not online:
        args.append("--offline")
    if evidence is not None:
        args += ["--evidence", str(evidence)]
    done = hocba_at(when, *args, str(pdf))
    try:
        report: dict[str, Any] | None = json.loads(done.stdout)
    except ValueError:
        report = None
    return HocbaVerdict(done, report)


def pyhanko_at(when: datetime, pdf: Path, anchors: Sequence[Path], online: bool) -> Run:
    """pyHanko's AdES validation with its clock at `when`; `online` only documents whether
    a responder runs (offline: connection refused, pyHanko has only the file's data)."""
    del online
    return run_at(when, [PYHANKO, "sign", "adesverify",
                         *(a for t in anchors for a in ("--trust", str(t))),
                         "--trust-replace", str(pdf)])


def pyhanko_verdict(done: Run) -> str:
    if done.passed:
        return "ok"
    lines = [ln for ln in (done.stdout + "\n" + done.stderr).splitlines() if ln.strip()]
    return "REFUSED" + (f" ({lines[-1].strip()[:60]})" if lines else "")


def both(first: Any, second: Any) -> tuple[Any, Any]:
    """Run two independent callables concurrently (the box has two cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        a, b = pool.submit(first), pool.submit(second)
        return a.result(), b.result()
