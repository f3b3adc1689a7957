"""gunicorn settings for hocba (dev and production; override with GUNICORN_* / flags)."""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("HOCBA_WORKERS", "2"))
threads = int(os.environ.get("HOCBA_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
# A signature waits on the TSA and OCSP responders: allow it, then give up.
timeout = int(os.environ.get("HOCBA_WORKER_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
max_requests = 2000
max_requests_jitter = 200
accesslog = None  # the app logs one structured line per request
errorlog = "-"
loglevel = os.environ.get("HOCBA_LOG_LEVEL", "info")
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "hocba": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "fontTools": {"level": "ERROR"},
        "pyhanko": {"level": "WARNING"},
        "pyhanko_certvalidator": {"level": "WARNING"},
    },
}


def on_starting(server: object) -> None:
    """In the master, before any worker: a library version the fixes were not tested
    with stops gunicorn once, with signer.fixes' message (workers get the fixes from
    create_app as well)."""
    from signer import fixes
    from signer.logs import configure_logging

    fixes.apply()
    configure_logging()
