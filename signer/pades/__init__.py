"""PAdES signing, timestamps and validation (pyHanko), with three speed fixes installed:
hex strings read in one pass, signing-certificate-v2 encoded once per certificate,
X.509 name values prepared for comparison once per value."""

from signer.pades.attrcache import install as _install_attribute_cache
from signer.pades.hexstrings import install as _install_hex_reader
from signer.pades.namecache import install as _install_name_cache

_install_hex_reader()
_install_attribute_cache()
_install_name_cache()
