"""Renewal of archived records (PAdES-B-LTA augmentation), so they stay provable after
every certificate in them expired.

A record is due when its newest version's document timestamp can be validated for less
than the renewal margin (policies/crypto/renewal.toml) more. Renewing it adds the
revocation data of that timestamp's TSA (fetched now) and a new document timestamp, as
a new archived version (reason ``renewed``), locked like the first; earlier versions
stay. Due-ness is read from the index (`versions.timestamp_valid_until`, filled from
the file for versions archived before it existed).

Crash safety: a record is renewed by one compare-and-set on its newest version, so a
rerun (or a resumed job) finds renewed records no longer due and renews the rest; a
crash between storing the renewed final and indexing it leaves one locked object no
version points to (the fixity audit lists it), never a second version.
"""

from __future__ import annotations

import logging
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError

from archive.errors import ArchiveError, StaleRevision
from archive.index import Index
from archive.index.rows import JobRow, VersionRow
from archive.store import Area, ObjectStore
from signer.aio import run
from signer.errors import ConfigError, DependencyError, HocbaError, NotFound, from_archive
from signer.pades.context import SigningServices
from signer.pades.sign import renew_lta_to
from signer.pades.validate import timestamp_valid_until
from signer.service.documents import Documents, scratch_file
from signer.service.views import job_view

log = logging.getLogger("hocba.renewal")
RENEWAL = "renewal"
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "crypto" / "renewal.toml"


@dataclass(frozen=True)
class RenewalPolicy:
    margin: timedelta
    hash_algorithm: str

    @classmethod
    def load(cls, path: Path = DEFAULT_POLICY) -> RenewalPolicy:
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
            policy = cls(timedelta(days=int(doc["margin_days"])), str(doc["hash_algorithm"]))
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"renewal policy {path}: {e!r}") from e
        if policy.margin < timedelta(0):
            raise ConfigError(f"renewal policy {path}: margin_days must not be negative")
        return policy


@dataclass
class RenewalReport:
    due: int = 0
    renewed: int = 0
    failed: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"due": self.due, "renewed": self.renewed, "failed": self.failed or []}


class Renewals:
    def __init__(self, index: Index, store: ObjectStore, documents: Documents,
                 services: SigningServices, policy: RenewalPolicy) -> None:
        self.index = index
        self.store = store
        self.documents = documents
        self.services = services
        self.policy = policy

    # -- what is due -----------------------------------------------------------------

    def due(self, now: datetime | None = None, margin: timedelta | None = None
            ) -> Iterator[VersionRow]:
        """Each record's newest version that is due at `now`, by record id."""
        before = (now or datetime.now(UTC)) + (self.policy.margin if margin is None
                                               else margin)
        after = ""
        while True:
            page = self.index.versions_due(before, after_record_id=after)
            if not page:
                return
            for v in page:
                after = v.record_id
                if v.timestamp_valid_until is None:  # archived before it was recorded
                    v = self._fill_in(v)
                    if v.timestamp_valid_until is not None and v.timestamp_valid_until > before:
                        continue
                yield v

    def counts(self, now: datetime | None = None) -> dict[str, int]:
        now = now or datetime.now(UTC)
        return self.index.renewal_counts(now, now + self.policy.margin)

    def _fill_in(self, v: VersionRow) -> VersionRow:
        with self.documents.open(v.sha256, Area.ARCHIVE) as f:
            until = timestamp_valid_until(f)
        if until is not None:
            self.index.set_timestamp_valid_until(v.record_id, v.version, until)
        return VersionRow(**{**v.__dict__, "timestamp_valid_until": until})

    # -- renewing ----------------------------------------------------------------------

    def renew(self, actor: str, version: VersionRow) -> VersionRow:
        """Renew one record from its newest version (as `due` gave it)."""
        now = datetime.now(UTC)
        if version.timestamp_valid_until is not None and version.timestamp_valid_until <= now:
            raise HocbaError(
                f"record {version.record_id}: its newest document timestamp could be "
                f"validated only until {version.timestamp_valid_until:%Y-%m-%d}; too late "
                "to renew (its earlier proofs, e.g. evidence records, are what is left)",
                code="renewal_too_late", status=409)
        started = time.process_time()
        with scratch_file() as out:
            with self.documents.open(version.sha256, Area.ARCHIVE) as current:
                try:
                    run(renew_lta_to(current, out, self.policy.hash_algorithm, self.services))
                except (PathBuildingError, PathValidationError) as e:
                    raise HocbaError(f"record {version.record_id}: the newest document "
                                     f"timestamp no longer validates: {e}",
                                     code="renewal_too_late", status=409) from e
                except (SigningError, TimestampRequestError, OSError) as e:
                    raise DependencyError(f"renewal failed (document timestamp): {e}",
                                          code="tsa_unavailable") from e
            until = timestamp_valid_until(out)
            try:
                obj = self.store.put_archived_file(out)
                renewed = self.index.add_renewed_version(
                    version.record_id, version.sha256, obj, actor=actor,
                    audit_detail={"sha256": obj.sha256, "size": obj.size,
                                  "previous_sha256": version.sha256},
                    timestamp_valid_until=until)
            except StaleRevision as e:
                raise HocbaError(f"record {version.record_id} was renewed meanwhile",
                                 code="stale_revision", status=409) from e
            except ArchiveError as e:
                raise from_archive(e, f"store or index refused the renewal: {e}",
                                   default_code="store_error") from e
        log.info("record %s renewed as version %d (%.0f ms CPU)", version.record_id,
                 renewed.version, 1000 * (time.process_time() - started))
        return renewed

    def renew_due(self, actor: str, *, now: datetime | None = None,
                  margin: timedelta | None = None, dry_run: bool = False,
                  progress: Callable[[int, int], None] | None = None,
                  stop: Callable[[], bool] | None = None,
                  on_each: Callable[[VersionRow, HocbaError | None], None] | None = None,
                  ) -> RenewalReport:
        """Renew everything due; every failure is that record's outcome."""
        due = list(self.due(now, margin))
        report = RenewalReport(due=len(due), failed=[])
        if dry_run:
            return report
        for n, v in enumerate(due, 1):
            if stop is not None and stop():
                break
            error: HocbaError | None = None
            try:
                self.renew(actor, v)
                report.renewed += 1
            except HocbaError as e:
                error = e
                assert report.failed is not None
                report.failed.append({"record_id": v.record_id, "code": e.code,
                                      "detail": e.detail})
                log.warning("record %s not renewed: %s", v.record_id, e.code)
            if on_each is not None:
                on_each(v, error)
            if progress is not None:
                progress(n, len(due))
        return report

    # -- as a job ---------------------------------------------------------------------

    def submit(self, tenant: str, actor: str, *, margin: timedelta | None = None) -> JobRow:
        margin = self.policy.margin if margin is None else margin
        total = sum(1 for _ in self.due(margin=margin))
        return self.index.create_job(tenant=tenant, kind=RENEWAL, total=total, actor=actor,
                                     params={"actor": actor,
                                             "margin_days": margin.days})

    def status(self, job_id: str) -> dict[str, Any]:
        """A renewal job's progress: renewals cover every tenant's records, so any
        operator may follow it."""
        job = self.index.get_job(job_id)
        if job is None or job.kind != RENEWAL:
            raise NotFound(f"no renewal {job_id}", code="renewal_not_found")
        return job_view(job)

    def run_job(self, job: JobRow, lost: Callable[[], bool]) -> None:
        """Renew what is due now (a resumed job finds the renewed ones no longer due)."""

        def done(v: VersionRow, error: HocbaError | None) -> None:
            failure = None if error is None else {"record_id": v.record_id,
                                                  "code": error.code, "detail": error.detail}
            self.index.update_job_progress(job.id, 1, failure)

        self.renew_due(job.params["actor"], margin=timedelta(days=job.params["margin_days"]),
                       stop=lost, on_each=done)
