"""Run a snippet against plain pyHanko and asn1crypto (no `signer.fixes.apply()`) in a
fresh interpreter and return what it printed as JSON: the reference the fixes' tests
compare with."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# After the snippet: prove nothing of hocba's was installed while it ran.
_CHECK = """
import signer.fixes as _fixes
from pyhanko.pdf_utils import generic as _generic
from asn1crypto import x509 as _x509
assert _fixes.applied() == [], _fixes.applied()
assert _generic.read_hex_string_from_stream.__module__ == "pyhanko.pdf_utils.generic"
assert _x509.Name.__eq__.__module__ == "asn1crypto.x509"
"""


def run(snippet: str, *, timeout: float = 300) -> Any:
    """`snippet` must print one JSON document as the last line of its stdout."""
    env = {**os.environ, "HOCBA_TEST_UNPATCHED": "1"}
    code = textwrap.dedent(snippet) + "\n" + _CHECK
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"unpatched run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
