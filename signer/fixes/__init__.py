"""hocba's changes to pyHanko and asn1crypto internals, active after `apply()` only.

Each fix module declares a `FIX`: the library it changes and the exact version(s) it was
written and tested against. Most replace a library attribute (`install`); two are
subclasses of pyHanko's own classes that hocba's code uses once applied (attrcache,
parsedfont). Importing this package or a fix module changes nothing; entry points (the
app factory, the bench child, the tests, the CLI) call `apply()` once at start-up. It
checks every fix's library version first and installs nothing on any mismatch.
docs/upstream/ describes each fix as a proposed upstream change."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from signer.errors import ConfigError

__all__ = ["Fix", "applied", "apply"]


@dataclass(frozen=True)
class Fix:
    name: str
    library: str  # distribution name, as importlib.metadata knows it
    versions: tuple[str, ...]  # exact versions it was written and tested against
    # None: a subclass of the library's own, used by hocba code only (no global change)
    install: Callable[[], None] | None = None


MODULES = ("hexstrings", "attrcache", "namecache", "diffcache", "poecache", "parsedfont",
           "lengthbyte")

_lock = threading.Lock()
_applied: list[str] = []


def _installed_version(library: str) -> str:
    return metadata.version(library)


def fixes() -> list[Fix]:
    return [importlib.import_module(f"signer.fixes.{m}").FIX for m in MODULES]


def _mismatch(fix: Fix) -> str | None:
    try:
        found = _installed_version(fix.library)
    except metadata.PackageNotFoundError:
        found = "not installed"
    if found in fix.versions:
        return None
    expected = " or ".join(fix.versions)
    return (f"hocba fix {fix.name!r} (signer/fixes/{fix.name}.py) relies on {fix.library} "
            f"internals and was tested with {fix.library} {expected}, but {found} is "
            f"installed. Install {fix.library}=={fix.versions[-1]} (pinned in "
            "pyproject.toml), or check the fix against the new version and add it to "
            "the fix's versions.")


def apply() -> list[str]:
    """Install every fix once (thread-safe, idempotent); ConfigError, and nothing
    installed, when a library is not a version the fixes were tested with."""
    with _lock:
        if _applied:
            return list(_applied)
        all_fixes = fixes()
        problems = [p for p in map(_mismatch, all_fixes) if p is not None]
        if problems:
            raise ConfigError("cannot start: " + " | ".join(problems))
        for fix in all_fixes:
            if fix.install is not None:
                fix.install()
            _applied.append(fix.name)
        return list(_applied)


def applied() -> list[str]:
    """The names of the fixes installed (empty before `apply()`)."""
    with _lock:
        return list(_applied)


def is_applied(name: str) -> bool:
    with _lock:
        return name in _applied
