"""`python -m bench.floor`: the physical floor under one record's signing, and what a
pre-encoded CMS template could save, measured on this machine (bench/README.md).

Per record hocba does three PAdES signatures and one document timestamp. What cannot go
away: three RSA-2048 PKCS#1 v1.5 signatures (the dev keys; a token or HSM does its own),
the document hashes (each signature and the timestamp hash the whole file as it then is),
and checking the signatures on what the responders send back (OCSP responses, the TSA's
tokens). Everything above that is assembly: building the CMS, the PDF objects, the index.
A pre-encoded CMS template would replace pyHanko's SignedData assembly (signed attributes
built, DER-encoded, certificates embedded) with a splice of digest and signature into
fixed bytes: the saving is bounded by the assembly time measured here (`Signer.async_sign`
with the key parsed once, minus its raw RSA signature).
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
from collections.abc import Callable

from bench.baseline import CachedKeySigner
from bench.common import REPO, STATE

SAMPLE = REPO.parent / "shared" / "samples" / "hoc-ba-thcs-libreoffice-pdfa.pdf"
REPS = 200


def per_call_ms(fn: Callable[[], object], reps: int = REPS) -> float:
    for _ in range(10):
        fn()
    times = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(reps):
            fn()
        times.append((time.process_time() - t0) * 1000 / reps)
    return statistics.median(times)


def main() -> int:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    pki = STATE / "pki"
    key_file = pki / "keys" / "teacher-1.key.pem"
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    pub = key.public_key()
    data = SAMPLE.read_bytes()
    final_size = len(data) + 60_000  # the record grows by ~20 KB a signature
    digest = hashlib.sha256(data).digest()
    sig = key.sign(digest, padding.PKCS1v15(), hashes.SHA256())

    rsa_sign = per_call_ms(lambda: key.sign(digest, padding.PKCS1v15(), hashes.SHA256()))
    rsa_verify = per_call_ms(lambda: pub.verify(sig, digest, padding.PKCS1v15(),
                                                hashes.SHA256()))
    blob = data + b"\0" * (final_size - len(data))
    sha_file = per_call_ms(lambda: hashlib.sha256(blob).digest())

    signer = CachedKeySigner.load_cached(str(key_file), str(pki / "certs" / "teacher-1.pem"),
                                         (str(pki / "certs" / "interm.pem"),))
    loop = asyncio.new_event_loop()
    cms = per_call_ms(lambda: loop.run_until_complete(
        signer.async_sign(digest, "sha256", use_pades=True)), reps=50)

    # hocba's own signer: its library fixes applied (signing-certificate attribute cached,
    # DER lengths of parsed values reused), the key parsed once
    from signer import fixes
    from signer.keys.base import cms_certificates
    from signer.keys.local import _CachedKeySigner

    fixes.apply()
    ours = _CachedKeySigner(signing_cert=signer.signing_cert, signing_key=signer.signing_key,
                            cert_registry=cms_certificates(
                                signer.signing_cert, list(signer.cert_registry)))
    cms_ours = per_call_ms(lambda: loop.run_until_complete(
        ours.async_sign(digest, "sha256", use_pades=True)), reps=50)
    loop.close()

    # per record: 3 signatures; 4 hashes of the file (3 signatures + the timestamp);
    # ~8 signature checks (3 OCSP responses, 4 timestamp tokens, the TSA's OCSP)
    floor = 3 * rsa_sign + 4 * sha_file + 8 * rsa_verify
    assembly = cms - rsa_sign
    print(f"bench.floor — {SAMPLE.name} ({len(data) / 1024:.0f} KB, hashed at "
          f"{final_size / 1024:.0f} KB), process CPU per call, median of 5×{REPS}")
    rows = [
        ("RSA-2048 PKCS#1 v1.5 sign (cryptography)", rsa_sign),
        ("RSA-2048 verify", rsa_verify),
        ("SHA-256 of the record", sha_file),
        ("pyHanko Signer.async_sign (PAdES CMS, no TSA/revocation)", cms),
        ("  of which CMS assembly (async_sign − RSA sign)", assembly),
        ("the same with hocba's signer and signer.fixes", cms_ours),
        ("floor per record: 3 sign + 4 hashes + 8 verify", floor),
        ("pre-encoded CMS template would save at most, per record, pyHanko (3 × assembly)",
         3 * assembly),
        ("  ... with hocba's signer (3 × (its async_sign − RSA sign))",
         3 * (cms_ours - rsa_sign)),
    ]
    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"{name.ljust(width)}  {ms:7.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
