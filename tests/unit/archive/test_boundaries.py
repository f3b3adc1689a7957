"""`archive` knows nothing of HTTP or of signing: it never imports Flask or `signer`."""

from __future__ import annotations

import ast
from pathlib import Path

import archive

FORBIDDEN = {"flask", "signer", "werkzeug"}


def imported_top_levels(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_archive_never_imports_flask_or_signer() -> None:
    package_dir = Path(archive.__file__).parent
    sources = sorted(package_dir.rglob("*.py"))
    assert len(sources) >= 8

    offenders = {
        str(path.relative_to(package_dir)): sorted(imported_top_levels(path) & FORBIDDEN)
        for path in sources
        if imported_top_levels(path) & FORBIDDEN
    }
    assert offenders == {}
