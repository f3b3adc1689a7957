"""PAdES signing, timestamps and validation (pyHanko), with the hex string fix."""

from signer.pades.hexstrings import install as _install_hex_reader

_install_hex_reader()
