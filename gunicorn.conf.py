"""gunicorn settings for hocba (dev and production; override with GUNICORN_* / flags)."""

import os
import shutil
import tempfile
from typing import Any

# prometheus_client's multiprocess mode (signer/http/metrics.py): every worker writes its
# metrics to files in this directory and a scrape, whichever worker answers, adds them
# all up. Set here, in the master, before any worker imports prometheus_client: a new
# directory per run (an earlier run's values must not be added), removed on exit. A
# directory the operator names instead must be emptied before each start.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="hocba-metrics-")
    os.environ["HOCBA_METRICS_DIR_MADE"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8080')}"
workers = int(os.environ.get("HOCBA_WORKERS", "2"))
threads = int(os.environ.get("HOCBA_THREADS", "1"))
# gunicorn's gthread/sync workers whose own 400/414/431 answers are problem+json
worker_class = f"signer.http.workers.{'ThreadWorker' if threads > 1 else 'SyncWorker'}"
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


def child_exit(server: object, worker: Any) -> None:
    """A worker exited: its live gauges go (counters and histograms stay counted)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: object) -> None:
    made = os.environ.get("HOCBA_METRICS_DIR_MADE")
    if made and made == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(made, ignore_errors=True)
