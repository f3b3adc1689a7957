"""The document timestamp chain processed once per verified file: the same reports as
unpatched pyHanko (in another process, tests/unpatched.py) processing it for every
signature, for a valid record, one changed after signing, and when the chain fails to
validate."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import x509
from pyhanko.sign.validation import errors
from pyhanko.sign.validation.policy_decl import LocalKnowledge

from signer.fixes import poecache
from signer.pades import validate
from signer.truststore import TrustStore
from tests import unpatched
from tests.unit import validate_fixtures as fx

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def record(responder: Any) -> bytes:
    return fx.lta_record()



def counting(monkeypatch: pytest.MonkeyPatch, *, fail: bool = False) -> dict[str, int]:
    calls = {"build": 0, "validate": 0}
    build, validate_chain = poecache._original_build, poecache._original_validate

    def counted_build(*args: Any) -> Any:
        calls["build"] += 1
        return build(*args)

    async def counted_validate(*args: Any) -> Any:
        calls["validate"] += 1
        if fail:
            raise errors.SignatureValidationError("the chain does not validate (test)")
        return await validate_chain(*args)

    monkeypatch.setattr(poecache, "_original_build", counted_build)
    monkeypatch.setattr(poecache, "_original_validate", counted_validate)
    return calls


def plain_pyhanko(files: list[Path], *, fail: bool) -> dict[str, Any]:
    """hocba's reports on `files` over unpatched pyHanko, and its count of each step."""
    return unpatched.run(f"""
        import json
        from pyhanko.sign.validation import ades, errors
        from tests.unit import validate_fixtures as fx
        calls = {{"build": 0, "validate": 0}}
        build, validate_chain = (ades._build_prima_facie_poe_index_from_pdf_timestamps,
                                 ades._validate_prima_facie_poe)

        def counted_build(*args, **kwargs):
            calls["build"] += 1
            return build(*args, **kwargs)

        async def counted_validate(*args, **kwargs):
            calls["validate"] += 1
            if {fail!r}:
                raise errors.SignatureValidationError("the chain does not validate (test)")
            return await validate_chain(*args, **kwargs)

        ades._build_prima_facie_poe_index_from_pdf_timestamps = counted_build
        ades._validate_prima_facie_poe = counted_validate
        reports = [fx.offline_report(open(p, "rb").read()) for p in {[str(f) for f in files]!r}]
        # put back: the check after this snippet looks for unpatched pyHanko
        ades._build_prima_facie_poe_index_from_pdf_timestamps = build
        ades._validate_prima_facie_poe = validate_chain
        print(json.dumps({{"reports": reports, "calls": calls}}))
    """)


@pytest.mark.parametrize("fail", [False, True], ids=["chain-valid", "chain-fails"])
def test_once_per_file_and_the_same_reports(record: bytes, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path, fail: bool) -> None:
    poecache.install()
    changed = fx.with_text_added_after_signing(record)
    calls = counting(monkeypatch, fail=fail)
    kept = [fx.offline_report(record), fx.offline_report(changed)]
    assert calls == {"build": 2, "validate": 2}  # one each per file, not per signature

    files = [tmp_path / "record.pdf", tmp_path / "changed.pdf"]
    files[0].write_bytes(record)
    files[1].write_bytes(changed)
    plain = plain_pyhanko(files, fail=fail)
    assert plain["calls"] == {"build": 6, "validate": 6}  # three signatures each
    assert json.loads(json.dumps(kept)) == plain["reports"]
    if not fail:
        assert kept[0]["indication"] == "TOTAL_PASSED"
        assert kept[0]["level"] == "PAdES-B-LTA"
    assert kept[1]["indication"] == "TOTAL_FAILED"


def test_keys_take_settings_by_identity_and_knowledge_by_content(record: bytes) -> None:
    base = validate._spec(TrustStore.of([fx.dev_root()]),
                          fetching=False).signature_validation_spec
    root = fx.dev_root()
    one = replace(base, local_knowledge=LocalKnowledge(known_certs=[root]))
    same = replace(base, local_knowledge=LocalKnowledge(
        known_certs=[x509.Certificate.load(root.dump())]))
    assert poecache._spec_key(one) == poecache._spec_key(same)
    assert poecache._spec_key(one) != poecache._spec_key(base)
    per_operation = replace(base, revinfo_gathering_policy=replace(
        base.revinfo_gathering_policy, fetcher_backend=object()))
    assert poecache._spec_key(per_operation) == poecache._spec_key(base)
    other_policy = replace(base, cert_validation_policy=replace(base.cert_validation_policy))
    assert poecache._spec_key(other_policy) != poecache._spec_key(base)
    assert poecache._spec_key(replace(base, local_knowledge=LocalKnowledge(
        known_poes=[object()]))) is None  # never kept
