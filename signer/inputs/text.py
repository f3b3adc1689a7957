"""Document-supplied text as our error details may quote it."""

from __future__ import annotations


def safe_text(value: object, limit: int = 40) -> str:
    """Printable ASCII only, truncated: document-supplied names in our messages."""
    text = "".join(c if " " <= c <= "~" else "?" for c in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"
