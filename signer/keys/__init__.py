"""Where private keys live: PKCS#11 HSMs and tokens, dev software keys (and later CSC, two-step)."""

from signer.keys.base import KeyBackend, cms_certificates, load_chain
from signer.keys.registry import KeyRegistry

__all__ = ["KeyBackend", "KeyRegistry", "cms_certificates", "load_chain"]
