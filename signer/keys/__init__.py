"""Where private keys live: PKCS#11 HSMs and tokens, dev software keys (and later CSC, two-step)."""

from signer.keys.base import KeyBackend, load_chain
from signer.keys.registry import KeyRegistry

__all__ = ["KeyBackend", "KeyRegistry", "load_chain"]
