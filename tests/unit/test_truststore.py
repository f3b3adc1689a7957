"""The trust store with history (signer.truststore) and the dated algorithm policy
(signer.algorithms): Vietnam's production roots load and match their fingerprints; a
wrong fingerprint, a missing field or an unknown purpose is refused; dates become
pyHanko trust qualifiers."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import algos, pem, x509

from signer.algorithms import load_algorithm_policy
from signer.errors import ConfigError
from signer.truststore import SIGNING, TIMESTAMPING, load_trust, load_trust_store

REPO = Path(__file__).resolve().parents[2]
VN = REPO / "policies" / "trust" / "vn.toml"


def test_vietnam_roots_load_and_match_their_fingerprints() -> None:
    store = load_trust_store(VN)
    ids = {a.id for a in store.anchors}
    assert {"vgca-root-g2", "neac-root-g2", "neac-root-g3"} <= ids
    for a in store.anchors:
        assert a.source, a.id  # where each came from is recorded
        assert a.trusted_from is not None
        assert a.certificate.self_signed in ("maybe", "yes")
    g3 = next(a for a in store.anchors if a.id == "neac-root-g3")
    assert g3.trusted_at(datetime(2030, 1, 1, tzinfo=UTC))
    assert not g3.trusted_at(datetime(2020, 1, 1, tzinfo=UTC))  # before it existed
    # an ended root stays in the store, trusted only for what its dates cover
    sha1 = next(a for a in store.anchors if a.id == "neac-root-mic-sha1")
    assert sha1.trusted_until is not None and sha1.trusted_until.year == 2014
    assert sha1.trusted_at(datetime(2010, 1, 1, tzinfo=UTC))
    assert not sha1.trusted_at(datetime(2026, 1, 1, tzinfo=UTC))
    # a TSA-only root is not an anchor for signers' certificates
    tsa_only = [a for a in store.anchors if a.purposes == {TIMESTAMPING}]
    assert len(store.for_purpose(SIGNING)) == len(store.anchors) - len(tsa_only)
    assert len(store.for_purpose(TIMESTAMPING)) >= 1


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(VN.parent / "vn", tmp_path / "vn")
    target = tmp_path / "vn.toml"
    target.write_text(VN.read_text(encoding="utf-8"), encoding="utf-8")
    return target


def test_a_wrong_fingerprint_is_refused(tmp_path: Path) -> None:
    path = _copy(tmp_path)
    text = path.read_text(encoding="utf-8")
    first = load_trust_store(VN).anchors[0].sha256
    path.write_text(text.replace(first, "0" * 64, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match="SHA-256"):
        load_trust_store(path)


@pytest.mark.parametrize(("old", "new", "message"), [
    ('purposes = ["signing"', 'purposes = ["everything"', "purposes"),
    ("sha256 = ", "sha256_ = ", "missing"),
])
def test_bad_entries_are_refused(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = _copy(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_trust_store(path)


def test_dates_become_trust_qualifiers() -> None:
    store = load_trust_store(VN)
    anchor = store.anchors[0]
    quals = anchor.trust_anchor().trust_qualifiers
    assert (quals.valid_from, quals.valid_until) == (anchor.trusted_from, anchor.trusted_until)
    # a plain certificate file is an anchor for every purpose, at every time
    pem_path = VN.parent / "vn" / f"{anchor.id}.pem"
    plain = load_trust([pem_path]).anchors[0]
    assert plain.trusted_from is None and plain.purposes == {SIGNING, TIMESTAMPING}


def _cert(name: str) -> x509.Certificate:
    data = (VN.parent / "vn" / f"{name}.pem").read_bytes()
    return x509.Certificate.load(pem.unarmor(data)[2])


def test_algorithm_policy_is_dated() -> None:
    policy = load_algorithm_policy()
    sha1 = algos.DigestAlgorithm({"algorithm": "sha1"})
    sha256 = algos.DigestAlgorithm({"algorithm": "sha256"})
    assert policy.digest_algorithm_allowed(sha1, datetime(2010, 1, 1, tzinfo=UTC)).allowed
    assert not policy.digest_algorithm_allowed(sha1, datetime(2026, 1, 1, tzinfo=UTC)).allowed
    assert policy.digest_algorithm_allowed(sha256, datetime(2076, 1, 1, tzinfo=UTC)).allowed
    md2 = algos.DigestAlgorithm({"algorithm": "md2"})
    assert not policy.digest_algorithm_allowed(md2, None).allowed  # not listed
    root = _cert("neac-root-g2")  # RSA-2048 or more, SHA-256
    sig = root["signature_algorithm"]
    bits = root.public_key.bit_size
    at_2030 = policy.signature_algorithm_allowed(sig, datetime(2030, 6, 1, tzinfo=UTC),
                                                 root.public_key)
    at_2040 = policy.signature_algorithm_allowed(sig, datetime(2040, 6, 1, tzinfo=UTC),
                                                 root.public_key)
    assert at_2030.allowed
    assert at_2040.allowed == (bits >= 3000)
    if bits < 3000:
        assert at_2040.not_allowed_after == datetime(2031, 1, 1, tzinfo=UTC)
        assert policy.weakens_before(root) == datetime(2031, 1, 1, tzinfo=UTC)
