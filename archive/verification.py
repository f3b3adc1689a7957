"""Verification codes: what a record's QR code and printed code carry. A code grants
nothing but the public verification view, so it only has to be unguessable and easy to
type from paper: 16 Crockford base32 symbols (80 bits), shown in groups of four."""

from __future__ import annotations

import re
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
LENGTH = 16
_CANONICAL = re.compile(f"^[{ALPHABET}]{{{LENGTH}}}$")
# Typing from paper: case, hyphens and spaces do not matter; I/L read as 1, O as 0.
_TYPED = str.maketrans({"I": "1", "L": "1", "O": "0"})


def new_code() -> str:
    """A fresh code in canonical form (no separators)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def canonical(text: str) -> str | None:
    """The canonical form of a typed or scanned code, or None if it cannot be one."""
    if len(text) > 3 * LENGTH:
        return None
    code = re.sub(r"[\s-]", "", text).upper().translate(_TYPED)
    return code if _CANONICAL.match(code) else None


def display(code: str) -> str:
    """'ABCD-EFGH-JKMN-PQRS', as printed on the record."""
    return "-".join(code[i:i + 4] for i in range(0, len(code), 4))


def verify_url(public_base_url: str, code: str) -> str:
    """The public page a code opens (what the QR code encodes and the API answers)."""
    return f"{public_base_url.rstrip('/')}/verify/{display(code)}"
