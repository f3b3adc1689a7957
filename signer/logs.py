"""Logging set up by entry points (the app factory, the wsgi entry, the bench child),
never at import."""

from __future__ import annotations

import logging

# pyHanko logs every step at INFO, and validation logs expected situations (no
# document timestamp yet, an untrusted chain, a broken signature in a hostile
# upload) at WARNING with tracebacks. Quiet them, leaving loggers an operator
# configured alone; our own log says what went wrong.
QUIET_LOGGERS = {
    "pyhanko": logging.WARNING,
    "pyhanko.sign.validation": logging.ERROR,
    "pyhanko.sign.diff_analysis": logging.ERROR,
    "pyhanko_certvalidator": logging.ERROR,
}


def configure_logging() -> None:
    """Quiet the libraries' loggers an operator left unset (idempotent)."""
    for name, level in QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(level)
