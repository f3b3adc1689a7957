"""Where private keys live: PKCS#11 HSMs and tokens, dev software keys, CSC, two-step."""

from typing import Any

from signer.keys.base import KeyBackend, cms_certificates, load_chain

__all__ = ["KeyBackend", "KeyRegistry", "cms_certificates", "load_chain"]


def __getattr__(name: str) -> Any:
    # The registry (PKCS#11, CSC) is loaded when asked for: `hocba verify` needs only
    # load_chain, and a cold verification should not pay for the key backends.
    if name == "KeyRegistry":
        from signer.keys.registry import KeyRegistry

        return KeyRegistry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
