"""Difference analysis once per signed revision: the same reports as pyHanko without the
cache, for a valid record and for one changed after signing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from pyhanko.sign.diff_analysis import policies
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature

from signer.pades import diffcache
from tests.unit import validate_fixtures as fx

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def record(responder: Any) -> bytes:
    return fx.lta_record()



def test_same_reports_and_one_analysis_per_revision(
        record: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    changed = fx.with_text_added_after_signing(record)
    reviewed: Counter[int] = Counter()
    real = policies.StandardDiffPolicy.review_file

    def counting(self: Any, reader: Any, base_revision: Any, *args: Any, **kwargs: Any) -> Any:
        reviewed[base_revision] += 1
        return real(self, reader, base_revision, *args, **kwargs)

    monkeypatch.setattr(policies.StandardDiffPolicy, "review_file", counting)
    diffcache.install()
    cached = [fx.offline_report(record), fx.offline_report(changed)]
    once = sum(reviewed.values())
    assert reviewed and all(n <= 2 for n in reviewed.values()), reviewed  # one per file

    reviewed.clear()
    monkeypatch.setattr(EmbeddedPdfSignature, "evaluate_modifications", diffcache._ORIGINAL)
    plain = [fx.offline_report(record), fx.offline_report(changed)]
    assert cached == plain
    assert sum(reviewed.values()) > once  # what the cache saves
    assert cached[0]["indication"] == "TOTAL_PASSED"
    assert cached[1]["indication"] == "TOTAL_FAILED"
    assert {s["changes_after"] for s in cached[1]["signatures"]} == {"OTHER"}


def test_a_policy_that_cannot_be_a_key_is_analysed_every_time(record: bytes) -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.diff_analysis import DEFAULT_DIFF_POLICY

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def review_file(self, *args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            return DEFAULT_DIFF_POLICY.review_file(*args, **kwargs)

    calls: list[int] = []
    diffcache.install()
    import io

    sig = PdfFileReader(io.BytesIO(record)).embedded_regular_signatures[0]
    sig.compute_integrity_info(diff_policy=Unhashable())
    sig.compute_integrity_info(diff_policy=Unhashable())
    assert len(calls) == 2
    assert sig.diff_result is not None
