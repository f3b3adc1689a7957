"""PAdES signing, timestamps and validation (pyHanko), with speed fixes installed: hex
strings read in one pass, signing-certificate-v2 encoded once per certificate, X.509
names compared once per pair, difference analysis once per signed revision, the document
timestamp chain processed once per verified file."""

from signer.pades.attrcache import install as _install_attribute_cache
from signer.pades.diffcache import install as _install_diff_cache
from signer.pades.hexstrings import install as _install_hex_reader
from signer.pades.namecache import install as _install_name_cache
from signer.pades.poecache import install as _install_poe_cache

_install_hex_reader()
_install_attribute_cache()
_install_name_cache()
_install_diff_cache()
_install_poe_cache()
