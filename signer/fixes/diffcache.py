"""pyHanko's difference analysis done once per signed revision of a document.

Validating a record runs the analysis of the revisions after each signature again for
every signature, timestamp and proof-of-existence check (pyHanko's own TODO in
`EmbeddedPdfSignature.compute_integrity_info`): 13 analyses per three-signature
record, ~25 % of verification CPU (bench/README.md). The answer depends only on the
file, the signed revision, the policy and the field/document MDP settings, so it is
kept on the reader for as long as the reader lives.

Installed by `signer.fixes.apply()` only: replaces
`EmbeddedPdfSignature.evaluate_modifications`. Upstream proposal:
docs/upstream/diffcache.md."""

from __future__ import annotations

from typing import Any

from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

from signer.fixes import Fix

_ORIGINAL = EmbeddedPdfSignature.evaluate_modifications
_ATTRIBUTE = "_hocba_diff_results"


def _evaluate_modifications(self: Any, diff_policy: Any) -> Any:
    key = (self.signed_revision, diff_policy, repr(self.fieldmdp), self.docmdp_level,
           self.coverage)
    try:
        hash(key)
    except TypeError:  # a policy that cannot be a key: analysed every time, as pyHanko does
        return _ORIGINAL(self, diff_policy)
    results: dict[Any, Any] = self.reader.__dict__.setdefault(_ATTRIBUTE, {})
    if key not in results:
        results[key] = _ORIGINAL(self, diff_policy)
    return results[key]


def install() -> None:
    """Make pyHanko keep each revision's difference analysis on its reader (idempotent)."""
    EmbeddedPdfSignature.evaluate_modifications = _evaluate_modifications  # type: ignore[method-assign]


FIX = Fix(name="diffcache", library="pyHanko", versions=("0.38.0",), install=install)
