"""Bouncy Castle's ERS implementation as an outside checker of hocba's evidence records:
tests/ers/ErsCheck.java, compiled once per source version into a temp dir, then run
with the Debian Bouncy Castle jars (libbcprov-java, libbcpkix-java; bcutil ships in
libbcprov-java on Debian 12)."""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCE = REPO / "tests" / "ers" / "ErsCheck.java"
JARS = [Path("/usr/share/java") / name for name in ("bcprov.jar", "bcpkix.jar", "bcutil.jar")]
PACKAGES = "default-jdk-headless (javac, java), libbcprov-java and libbcpkix-java"
TIMEOUT = 60
# A short-lived JVM: the C1 compiler only and the serial collector start faster (about
# 1.0 s instead of 1.8 s per run here, 2.9 s instead of 5.4 s for 160 records).
JVM_FLAGS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")

_compiled: dict[str, Path] = {}
_workdir: Path | None = None


def _tools() -> tuple[str, str]:
    javac, java = shutil.which("javac"), shutil.which("java")
    missing = [str(j) for j in JARS if not j.is_file()]
    if javac is None or java is None or missing:
        what = ", ".join([*(["javac/java"] if javac is None or java is None else []),
                          *missing])
        pytest.fail(f"Bouncy Castle check needs {what}: apt-get install {PACKAGES}",
                    pytrace=False)
    return javac, java


def classes_dir() -> Path:
    """ErsCheck compiled, cached by the sha256 of its source for this process."""
    global _workdir
    javac, _ = _tools()
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    if digest not in _compiled:
        if _workdir is None:
            _workdir = Path(tempfile.mkdtemp(prefix="hocba-erscheck-"))
            atexit.register(shutil.rmtree, _workdir, True)
        out = _workdir / digest[:16]
        out.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [javac, "-nowarn", "-d", str(out), "-cp", classpath(), str(SOURCE)],
            capture_output=True, text=True, timeout=TIMEOUT, check=False)
        if result.returncode != 0:
            pytest.fail(f"javac ErsCheck.java failed:\n{result.stderr}", pytrace=False)
        _compiled[digest] = out
    return _compiled[digest]


def classpath(*extra: Path) -> str:
    return ":".join(str(p) for p in (*extra, *JARS))


def bc_check(evidence: Path, data: Path) -> dict[str, Any]:
    """Bouncy Castle's verdict on `evidence` for `data` (ErsCheck's JSON line); the exit
    status must agree with its "valid"."""
    _, java = _tools()
    result = subprocess.run(
        [java, *JVM_FLAGS, "-cp", classpath(classes_dir()), "ErsCheck", str(evidence),
         str(data)],
        capture_output=True, text=True, timeout=TIMEOUT, check=False)
    lines = result.stdout.strip().splitlines()
    assert lines, f"ErsCheck printed nothing (exit {result.returncode}): {result.stderr}"
    verdict: dict[str, Any] = json.loads(lines[-1])
    assert result.returncode == (0 if verdict["valid"] else 1), (result.returncode, verdict)
    return verdict


def bc_check_many(pairs: Sequence[tuple[Path, Path]]) -> list[dict[str, Any]]:
    """bc_check for many (evidence, data) pairs in one JVM (ErsCheck --batch)."""
    if not pairs:
        return []
    _, java = _tools()
    lines = "".join(f"{evidence}\t{data}\n" for evidence, data in pairs)
    result = subprocess.run(
        [java, *JVM_FLAGS, "-cp", classpath(classes_dir()), "ErsCheck", "--batch"],
        input=lines, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 0, result.stderr
    verdicts = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(verdicts) == len(pairs), result.stdout + result.stderr
    return verdicts
