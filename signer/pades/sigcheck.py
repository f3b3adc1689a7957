"""Signature checks done once per process, through pyhanko-certvalidator's extension
point (`CertValidationPolicySpec.signature_validator`).

Validating a three-signature record checks the same signatures again and again: each
certificate of every path, CRL and OCSP response, for each signature, timestamp, past
validation and proof-of-existence step (about 180 checks over some 25 distinct signed
objects), and the next record of the school shares its chains and, signed the same day,
its revocation data. Whether a signature is valid depends only on the signature, the
signed bytes, the public key, the algorithm and the validation context's flags, so a
check that passed is remembered under those (the signed bytes by their SHA-256). A
failed check is never remembered: it raises each time."""

from __future__ import annotations

import hashlib
import threading

from asn1crypto import algos
from asn1crypto.keys import PublicKeyInfo
from pyhanko_certvalidator.sig_validate import (
    DEFAULT_SIGNATURE_VALIDATOR,
    DEFAULT_VALIDATION_CONTEXT,
    SignatureValidationContext,
    SignatureValidator,
)

MAX_ENTRIES = 100_000


class RememberingSignatureValidator(SignatureValidator):
    def __init__(self, inner: SignatureValidator = DEFAULT_SIGNATURE_VALIDATOR,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.inner = inner
        self.max_entries = max_entries
        self._valid: set[tuple[object, ...]] = set()
        self._lock = threading.Lock()

    def validate_signature(
        self,
        signature: bytes,
        signed_data: bytes,
        public_key_info: PublicKeyInfo,
        signature_algorithm: algos.SignedDigestAlgorithm,
        context: SignatureValidationContext = DEFAULT_VALIDATION_CONTEXT,
    ) -> None:
        key = (bytes(signature), hashlib.sha256(signed_data).digest(),
               public_key_info.dump(), signature_algorithm.dump(), context)
        if key in self._valid:
            return
        self.inner.validate_signature(signature, signed_data, public_key_info,
                                      signature_algorithm, context)
        with self._lock:
            if len(self._valid) >= self.max_entries:
                self._valid.clear()
            self._valid.add(key)


SIGNATURES = RememberingSignatureValidator()
