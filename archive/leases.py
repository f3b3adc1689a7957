"""A job's lease kept alive while it runs, so that no other worker takes it over; and
told when it could not be (the job was taken over: stop)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from archive.errors import ArchiveError

log = logging.getLogger("hocba.leases")


class LeaseHolder(Protocol):
    def renew_job_lease(self, job_id: str, owner: str, lease_seconds: int) -> bool: ...


@contextmanager
def kept_lease(index: LeaseHolder, job_id: str, owner: str, lease_seconds: int
               ) -> Iterator[threading.Event]:
    """Renew the lease every third of its length in a background thread; the event is
    set once a renewal finds the job taken over. An index error only skips a beat."""
    lost, done = threading.Event(), threading.Event()

    def beat() -> None:
        while not done.wait(max(lease_seconds / 3, 0.2)):
            try:
                if not index.renew_job_lease(job_id, owner, lease_seconds):
                    lost.set()
                    return
            except ArchiveError:
                log.warning("could not renew the lease of job %s", job_id)

    thread = threading.Thread(target=beat, name=f"hocba-lease-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield lost
    finally:
        done.set()
        thread.join()
