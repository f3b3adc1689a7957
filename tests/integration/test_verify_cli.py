"""`hocba verify FILE`: the installed command on a real B-LTA record (test PKI, test
responder), offline; exit status 0 / 1 / 2; and it starts without the service's index,
agent or HTTP code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit import validate_fixtures as fx

pytestmark = pytest.mark.integration

HOCBA = str(Path(sys.executable).parent / "hocba")


@pytest.fixture(scope="module")
def record_file(responder: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("verify-cli") / "hoc-ba.pdf"
    path.write_bytes(fx.lta_record())
    return path


def hocba_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HOCBA, "verify", "--trust", str(fx.PKI / "root.pem"), *args],
                          capture_output=True, text=True, timeout=120, cwd=fx.REPO)


def test_a_record_passes_offline(record_file: Path, responder: Any) -> None:
    responder.stop()  # the file and the anchor suffice (the fixture restarts it later)
    done = hocba_verify("--offline", str(record_file))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{record_file}: TOTAL_PASSED, level PAdES-B-LTA"
    assert [line.split()[0] for line in lines[1:]] == ["teacher", "principal", "seal",
                                                       "timestamp", "newest"]
    assert "newest timestamp valid until 2035-01-01T00:00:00Z" in done.stdout
    assert "Nguyễn" in done.stdout  # Vietnamese names, as they are

    report = json.loads(hocba_verify("--offline", "--json", str(record_file)).stdout)
    assert report["indication"] == "TOTAL_PASSED" and report["level"] == "PAdES-B-LTA"
    assert [s["role"] for s in report["signatures"]] == ["teacher", "principal", "seal"]


def test_a_changed_byte_fails_with_status_1(record_file: Path, tmp_path: Path) -> None:
    flipped, _ = fx.flip_signed_byte(record_file.read_bytes())
    path = tmp_path / "changed.pdf"
    path.write_bytes(flipped)
    done = hocba_verify("--offline", str(path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "TOTAL_FAILED" in done.stdout.splitlines()[0]


def test_not_a_pdf_is_status_2_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "note.pdf"
    path.write_text("not a PDF", encoding="utf-8")
    done = hocba_verify(str(path))
    assert done.returncode == 2
    assert "not a PDF" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_verify_starts_without_the_service_code(record_file: Path) -> None:
    code = (
        "import sys\n"
        "from signer.cli import main\n"
        "try:\n"
        f"    main(['verify', '--offline', '--trust', {str(fx.PKI / 'root.pem')!r}, "
        f"{str(record_file)!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('sqlalchemy', 'alembic', 'flask', 'fontTools', 'boto3', "
        "'archive.index', 'archive.store', 'archive.fixity', 'archive.package', "
        "'signer.agent', 'signer.service', 'signer.http', 'signer.keys.registry', "
        "'requests') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=fx.REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_help_starts_without_the_subcommands() -> None:
    code = (
        "import sys\n"
        "from signer.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('sqlalchemy', 'flask', 'archive', 'signer.agent', "
        "'signer.apiclient', 'signer.cli.agent', 'signer.cli.archive', 'signer.cli.batch', "
        "'signer.cli.verify', 'pkcs11', 'requests') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=fx.REPO)
    assert done.returncode == 0, done.stderr
    assert "verify " in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_lazy_help_is_the_commands_help() -> None:
    import click

    from signer.cli import LazyGroup, main

    ctx = click.Context(main)
    for name, (_, short) in LazyGroup.LAZY.items():
        command = main.get_command(ctx, name)
        assert command is not None
        for limit in (30, 45, 60, 200):
            assert (click.Command(name, help=short).get_short_help_str(limit)
                    == command.get_short_help_str(limit)), name


def test_library_fixes_are_applied_for_pyhanko_commands_only() -> None:
    code = (
        "import sys\n"
        "from signer import fixes\n"
        "from signer.cli import main\n"
        "def run(args):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "run(['jobs', 'wait', '--help'])\n"
        "print('RESULT', 'pyhanko' in sys.modules, fixes.applied())\n"
        "run(['verify', '--help'])\n"
        "print('RESULT', len(fixes.applied()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=fx.REPO)
    assert done.returncode == 0, done.stderr
    results = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert results[0] == "RESULT False []"
    assert int(results[1].split()[1]) >= 6
