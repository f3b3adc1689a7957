"""PAdES signing, timestamps and validation (pyHanko), with two speed fixes installed:
hex strings read in one pass, signing-certificate-v2 encoded once per certificate."""

from signer.pades.attrcache import install as _install_attribute_cache
from signer.pades.hexstrings import install as _install_hex_reader

_install_hex_reader()
_install_attribute_cache()
