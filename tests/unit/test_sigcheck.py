"""RememberingSignatureValidator: a valid signature is checked once, an invalid one
raises every time; and the newest revocation data per scope for a DSS."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from asn1crypto import crl as acrl
from asn1crypto.keys import PublicKeyInfo
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhanko_certvalidator.sig_validate import DEFAULT_SIGNATURE_VALIDATOR, SignatureValidator

from signer.pades.context import newest_crls
from signer.pades.sigcheck import RememberingSignatureValidator

KEY = ec.generate_private_key(ec.SECP256R1())


class Counting(SignatureValidator):
    def __init__(self) -> None:
        self.calls = 0
        self.inner = DEFAULT_SIGNATURE_VALIDATOR

    def validate_signature(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        self.inner.validate_signature(*args, **kwargs)


def _crl(issuer: str, this_update: dt.datetime) -> acrl.CertificateList:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    built = (x509.CertificateRevocationListBuilder().issuer_name(name)
             .last_update(this_update).next_update(this_update + dt.timedelta(days=7))
             .sign(KEY, hashes.SHA256()))
    return acrl.CertificateList.load(built.public_bytes(serialization.Encoding.DER))


PUBLIC = PublicKeyInfo.load(KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def _check(validator: Any, c: acrl.CertificateList) -> None:
    validator.validate_signature(c["signature"].native, c["tbs_cert_list"].dump(), PUBLIC,
                                 c["signature_algorithm"])


def test_a_valid_signature_is_checked_once() -> None:
    inner = Counting()
    validator = RememberingSignatureValidator(inner)
    c = _crl("CA", dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    for _ in range(5):
        _check(validator, c)
    assert inner.calls == 1


def test_an_invalid_signature_raises_every_time() -> None:
    inner = Counting()
    validator = RememberingSignatureValidator(inner)
    c = _crl("CA", dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    bad = bytearray(c["tbs_cert_list"].dump())
    bad[-5] ^= 1
    for _ in range(3):
        with pytest.raises(InvalidSignature):
            validator.validate_signature(c["signature"].native, bytes(bad), PUBLIC,
                                         c["signature_algorithm"])
    assert inner.calls == 3
    _check(validator, c)  # the genuine data still validates
    assert inner.calls == 4


def test_the_dss_keeps_the_newest_crl_per_issuer() -> None:
    day = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    old_a, new_a = _crl("CA A", day), _crl("CA A", day + dt.timedelta(hours=3))
    b = _crl("CA B", day)
    kept = newest_crls([old_a, b, new_a, _crl("CA A", day + dt.timedelta(hours=1))])
    assert sorted(c.dump() for c in kept) == sorted([new_a.dump(), b.dump()])
