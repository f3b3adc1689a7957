"""signer.fixes: nothing changes in pyHanko or asn1crypto until `apply()`, which checks
every library version before installing anything."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from tests.unpatched import REPO

# (module, object path, attribute) of everything apply() replaces, and the hocba module
# the replacement comes from.
PATCHED = [
    ("pyhanko.pdf_utils.generic", "", "read_hex_string_from_stream", "signer.fixes.hexstrings"),
    ("asn1crypto.x509", "NameTypeAndValue", "prepped_value", "signer.fixes.namecache"),
    ("asn1crypto.x509", "Name", "__eq__", "signer.fixes.namecache"),
    ("asn1crypto.x509", "Name", "hashable", "signer.fixes.namecache"),
    ("pyhanko.sign.validation.pdf_embedded", "EmbeddedPdfSignature",
     "evaluate_modifications", "signer.fixes.diffcache"),
    ("pyhanko.sign.validation.ades", "", "_build_prima_facie_poe_index_from_pdf_timestamps",
     "signer.fixes.poecache"),
    ("pyhanko.sign.validation.ades", "", "_validate_prima_facie_poe", "signer.fixes.poecache"),
    ("asn1crypto.core", "Sequence", "dump", "signer.fixes.lengthbyte"),
    ("asn1crypto.core", "Asn1Value", "dump", "signer.fixes.lengthbyte"),
]
ALL_FIXES = ["hexstrings", "attrcache", "namecache", "diffcache", "poecache", "parsedfont",
             "lengthbyte"]

_PRELUDE = f"""
import importlib, json, sys
PATCHED = {PATCHED!r}

def origins():
    out = []
    for module, owner, attr, _ in PATCHED:
        obj = importlib.import_module(module)
        for part in filter(None, owner.split(".")):
            obj = getattr(obj, part)
        value = obj.__dict__[attr] if owner else getattr(obj, attr)
        value = getattr(value, "fget", value)  # properties: their getter
        out.append(value.__module__)
    return out
"""


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PRELUDE + textwrap.dedent(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_imports_change_nothing_until_apply() -> None:
    got = _run("""
        import signer.pades, signer.pades.validate, signer.pades.fonts, signer.http.app
        import signer.service, archive
        import signer.fixes
        before, applied_before = origins(), signer.fixes.applied()
        from pyhanko.pdf_utils.font import opentype
        from pyhanko.sign.attributes import SigningCertificateV2Provider as Provider
        import fontTools.ttLib
        applied = signer.fixes.apply()
        again = signer.fixes.apply()  # idempotent
        print(json.dumps({"before": before, "applied_before": applied_before,
                          "after": origins(), "applied": applied, "again": again,
                          "listed": signer.fixes.applied(),
                          "ttlib": opentype.ttLib is fontTools.ttLib,
                          "provider": Provider.build_attr_value.__module__}))
    """)
    assert got["before"] == [m for m, *_ in PATCHED]
    assert got["applied_before"] == []
    assert got["after"] == [hocba for *_, hocba in PATCHED]
    assert got["applied"] == got["again"] == got["listed"] == ALL_FIXES
    # the font engine and the attribute cache are subclasses: pyHanko is left alone
    assert got["ttlib"] and got["provider"] == "pyhanko.sign.attributes"


def test_a_version_mismatch_installs_nothing_and_says_why() -> None:
    got = _run("""
        import signer.fixes
        from signer.errors import ConfigError
        real = signer.fixes._installed_version
        signer.fixes._installed_version = (
            lambda lib: "1.6.0" if lib == "asn1crypto" else real(lib))
        try:
            signer.fixes.apply()
            error = None
        except ConfigError as e:
            error = str(e)
        print(json.dumps({"error": error, "applied": signer.fixes.applied(),
                          "after": origins()}))
    """)
    assert got["error"] is not None
    for part in ("namecache", "asn1crypto", "1.5.1", "1.6.0", "pyproject.toml"):
        assert part in got["error"], (part, got["error"])
    assert "hexstrings" not in got["error"]  # pyHanko's version is right
    assert got["applied"] == []
    assert got["after"] == [m for m, *_ in PATCHED]  # nothing installed, not even pyHanko's


def test_the_versions_the_fixes_declare_are_installed() -> None:
    from importlib import metadata

    import signer.fixes

    for fix in signer.fixes.fixes():
        assert metadata.version(fix.library) in fix.versions, fix
    assert signer.fixes.applied() == ALL_FIXES  # tests/conftest.py applied them
