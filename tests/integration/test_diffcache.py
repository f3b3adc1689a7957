"""Difference analysis once per signed revision: the same reports as unpatched pyHanko
in another process (tests/unpatched.py), for a valid record and for one changed after
signing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pyhanko.sign.diff_analysis import policies

from signer.fixes import diffcache
from tests import unpatched
from tests.unit import validate_fixtures as fx

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def record(responder: Any) -> bytes:
    return fx.lta_record()



def plain_pyhanko(files: list[Path]) -> dict[str, Any]:
    """hocba's reports on `files` over unpatched pyHanko, and its count of analyses."""
    return unpatched.run(f"""
        import json
        from pyhanko.sign.diff_analysis import policies
        from tests.unit import validate_fixtures as fx
        reviewed = [0]
        real = policies.StandardDiffPolicy.review_file

        def counting(self, *args, **kwargs):
            reviewed[0] += 1
            return real(self, *args, **kwargs)

        policies.StandardDiffPolicy.review_file = counting
        reports = [fx.offline_report(open(p, "rb").read()) for p in {[str(f) for f in files]!r}]
        print(json.dumps({{"reports": reports, "reviewed": reviewed[0]}}))
    """)


def test_same_reports_and_one_analysis_per_revision(
        record: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
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

    files = [tmp_path / "record.pdf", tmp_path / "changed.pdf"]
    files[0].write_bytes(record)
    files[1].write_bytes(changed)
    plain = plain_pyhanko(files)
    assert json.loads(json.dumps(cached)) == plain["reports"]
    assert plain["reviewed"] > once  # what the cache saves
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
