"""PAdES signing, timestamps and validation (pyHanko). The speed fixes to pyHanko and
asn1crypto live in signer.fixes and are installed by `signer.fixes.apply()` only."""
