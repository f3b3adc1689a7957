"""The document timestamp chain, processed once per document verification.

pyHanko's PAdES LTA validation (`ades_lta_validation`) starts, for each signature, by
collecting proof of existence from the file's document timestamps (hashing every
object of every revision) and validating that chain of timestamps (their CMS, the TSA
certificate path, its revocation data). Both depend only on the file, the
validation settings and the validation time, not on the signature, yet for a record
with three signatures they were done three times (the chain's validation alone: 22.7
-> 8.1 ms of CPU per record once kept, bench/README.md).

Inside `document_scope()` (hocba's verification of one file) the first answer of each
is kept and handed to the next signature: the same proof-of-existence list, and a copy
of the validated POE manager (pyHanko adds the signature's own POE to it afterwards).
A different file, other settings, another validation time or different local
knowledge (e.g. a signature's Adobe revocation archival attribute) is a different key.
Outside the scope pyHanko runs as it always does.


Installed by `signer.fixes.apply()` only: replaces
`ades._build_prima_facie_poe_index_from_pdf_timestamps` and
`ades._validate_prima_facie_poe`. Upstream proposal: docs/upstream/poecache.md."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from copy import copy
from typing import Any

from pyhanko.sign.validation import ades

from signer.fixes import Fix

_memo: ContextVar[dict[Any, Any] | None] = ContextVar("hocba_poe_memo", default=None)
_original_build = ades._build_prima_facie_poe_index_from_pdf_timestamps
_original_validate = ades._validate_prima_facie_poe


@contextmanager
def document_scope() -> Iterator[None]:
    """Keep the document timestamp chain's processing for the signatures of one file."""
    token = _memo.set({})
    try:
        yield
    finally:
        _memo.reset(token)


def _build(r: Any, include_content_ts: bool, diff_policy: Any) -> Any:
    memo = _memo.get()
    if memo is None:
        return _original_build(r, include_content_ts, diff_policy)
    key = ("build", id(r), include_content_ts, id(diff_policy))
    if key not in memo:
        # the arguments are kept with the answer: their ids cannot be reused meanwhile
        memo[key] = (r, diff_policy, _original_build(r, include_content_ts, diff_policy))
    return memo[key][-1]


def _knowledge_key(knowledge: Any) -> tuple[Any, ...] | None:
    if knowledge.known_poes or knowledge.nonrevoked_assertions:
        return None  # not worth describing: never kept
    return (tuple(o.ocsp_response_data.dump() for o in knowledge.known_ocsps),
            tuple(c.crl_data.dump() for c in knowledge.known_crls),
            tuple(c.dump() for c in knowledge.known_certs))


def _spec_key(spec: Any) -> tuple[Any, ...] | None:
    """Settings by identity, except what pyHanko makes anew for each validation: the
    fetcher backend (one per operation) and the local knowledge (by content)."""
    parts: list[Any] = []
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if f.name == "local_knowledge":
            knowledge = _knowledge_key(value)
            if knowledge is None:
                return None
            parts.append(knowledge)
        elif f.name == "revinfo_gathering_policy":
            parts.append(tuple(id(getattr(value, g.name)) for g in dataclasses.fields(value)
                               if g.name != "fetcher_backend"))
        else:
            parts.append(id(value))
    return tuple(parts)


async def _validate(prima_facie_poe_sets: Any, validation_spec: Any,
                    cur_timing_info: Any = None) -> Any:
    memo = _memo.get()
    spec_key = _spec_key(validation_spec) if memo is not None else None
    if memo is None or spec_key is None or cur_timing_info is None:
        return await _original_validate(prima_facie_poe_sets, validation_spec,
                                        cur_timing_info)
    key = ("validate", id(prima_facie_poe_sets), id(cur_timing_info), spec_key)
    if key not in memo:
        try:
            outcome: tuple[str, Any] = ("ok", await _original_validate(
                prima_facie_poe_sets, validation_spec, cur_timing_info))
        except Exception as e:  # kept, and raised again for each signature
            outcome = ("error", e)
        memo[key] = (prima_facie_poe_sets, cur_timing_info, validation_spec, outcome)
    kind, value = memo[key][-1]
    if kind == "error":
        raise value
    return copy(value)  # the caller adds its signature's POE to it


def install() -> None:
    """Route pyHanko's two steps through the per-document memo (idempotent)."""
    ades._build_prima_facie_poe_index_from_pdf_timestamps = _build
    ades._validate_prima_facie_poe = _validate


FIX = Fix(name="poecache", library="pyHanko", versions=("0.38.0",), install=install)
