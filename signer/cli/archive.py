"""`hocba archive ...`: operator commands on the archive (run where the service runs)."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import make_url

from archive.errors import ArchiveError
from archive.fixity import FixityReport, audit
from archive.index import Index
from archive.store import ObjectStore, open_store
from signer.errors import ConfigError, HocbaError
from signer.settings import Settings, load_settings

EXIT_PROBLEMS = 1
EXIT_CANNOT_AUDIT = 2


class CannotAudit(click.ClickException):
    exit_code = EXIT_CANNOT_AUDIT


@click.group("archive")
def archive() -> None:
    """Check and export what the archive holds."""


def _open(settings: Settings) -> tuple[ObjectStore, Index]:
    """The store and the index as the service opens them (HOCBA_STORE, HOCBA_INDEX_URL);
    the index must already exist: an audit against a wrong URL must not create one."""
    try:
        store = open_store(settings.store, s3_endpoint_url=settings.s3_endpoint_url or None)
    except ValueError as e:
        raise CannotAudit(f"HOCBA_STORE: {e}") from e
    url = make_url(settings.index_url)
    database = url.database or ""
    if (url.get_backend_name() == "sqlite" and database not in ("", ":memory:")
            and not Path(database).is_file()):
        raise CannotAudit(f"index {settings.index_url}: no such file; "
                              "is HOCBA_INDEX_URL right?")
    index = Index(settings.index_url)
    try:
        revision = index.schema_revision()
    except ArchiveError as e:
        index.close()
        raise CannotAudit(f"index {settings.index_url}: {e}") from e
    if revision is None:
        index.close()
        raise CannotAudit(f"index {settings.index_url} holds no hocba schema; "
                          "is HOCBA_INDEX_URL right?")
    return store, index


def _progress(stack: ExitStack, label: str) -> Callable[[int, int], None]:
    """A progress callback (done, total) drawing a bar on stderr from its first call."""
    bar: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = stack.enter_context(click.progressbar(
                length=total, label=label, file=sys.stderr, show_pos=True))
            bar["shown"] = 0
        bar["bar"].update(done - bar["shown"])
        bar["shown"] = done

    return progress


def _service() -> Any:
    """The service over HOCBA_STORE and HOCBA_INDEX_URL; the index must exist already
    (never make a new one from a CLI run against a wrong URL)."""
    from signer.service.core import Hocba

    try:
        settings = load_settings()
        _store, index = _open(settings)
        index.close()
        return Hocba(settings)
    except (ConfigError, HocbaError) as e:
        raise CannotAudit(str(e)) from e


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _summary(report: FixityReport) -> str:
    c = report.counts()
    return (f"checked {c['checked']} indexed objects: {c['intact']} intact, "
            f"{c['released']} released (working, record archived), {c['missing']} missing, "
            f"{c['mismatched']} mismatched, {c['unreadable']} unreadable, "
            f"{c['lock_problems']} lock problems; "
            f"{c['store_objects']} objects in the store, {c['orphans']} orphans")


def _lines(report: FixityReport) -> list[str]:
    lines = []
    for name, items in (("missing", report.missing), ("mismatched", report.mismatched),
                        ("unreadable", report.unreadable)):
        lines += [f"{name}\t{p.area}/{p.sha256}\trecord {p.record_id or '-'}\t{p.detail}"
                  for p in items]
    lines += [f"lock\tarchive/{p.sha256}\trecord {p.record_id or '-'}\t{p.detail} "
              f"(mode {p.mode}, until {p.retain_until}, legal hold {p.legal_hold})"
              for p in report.lock_problems]
    lines += [f"orphan\t{o.area}/{o.sha256}\t{o.size} bytes"
              + (f"\textends record {o.extends_record}" if o.extends_record else "")
              + (f"\t{o.detail}" if o.detail else "")
              for o in report.orphans]
    return lines


@archive.command("audit")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def audit_command(as_json: bool) -> None:
    """Fixity audit: re-read and hash every indexed object, check archive locks, list
    objects without an index row (reported and audited, never deleted).

    Exit 0 when all is well, 1 when anything is missing, mismatched, unreadable,
    wrongly locked or orphaned, 2 when the audit could not run."""
    try:
        settings = load_settings()
    except ConfigError as e:
        raise CannotAudit(str(e)) from e
    store, index = _open(settings)
    try:
        with ExitStack() as stack:
            progress = _progress(stack, "objects checked")
            try:
                report = audit(store, index, progress=progress, actor=_actor())
            except ArchiveError as e:
                raise CannotAudit(f"audit failed: {e.code}: {e.detail}") from e
    finally:
        index.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(_summary(report))
        for line in _lines(report):
            click.echo(line)
        click.echo("OK" if report.ok else "PROBLEMS FOUND (recorded in the audit log)")
    if not report.ok:
        sys.exit(EXIT_PROBLEMS)


@archive.command("extend-retention")
@click.option("--horizon-days", type=int, default=3650, show_default=True,
              help="extend objects whose retention ends within this many days")
@click.option("--extend-days", type=int, default=36500, show_default=True,
              help="new retention: this many days from now (S3 allows 100 years)")
def extend_retention_command(horizon_days: int, extend_days: int) -> None:
    """Move COMPLIANCE retention of archived objects later before it nears its end
    (S3 Object Lock; never shorter; read back). Run it yearly, e.g. from cron."""
    from datetime import UTC, datetime, timedelta

    from archive.retention import extend_due

    if not 0 < horizon_days < extend_days:
        raise click.UsageError("need 0 < --horizon-days < --extend-days")
    try:
        settings = load_settings()
    except ConfigError as e:
        raise CannotAudit(str(e)) from e
    store, index = _open(settings)
    try:
        with click.progressbar(length=1, label="objects checked", file=sys.stderr,
                               show_pos=True) as bar:
            def progress(done: int, total: int) -> None:
                bar.length = total
                bar.update(done - bar.pos)

            report = extend_due(store, index, now=datetime.now(UTC),
                                horizon=timedelta(days=horizon_days),
                                extend_by=timedelta(days=extend_days), progress=progress)
    finally:
        index.close()
    click.echo(f"{report.checked} archived objects checked, {len(report.extended)} extended, "
               f"{report.without_dates} without retention dates, {len(report.errors)} errors")
    for err in report.errors:
        click.echo(f"{err['sha256']}\t{err['code']}\t{err['detail']}")
    if report.errors:
        sys.exit(EXIT_PROBLEMS)


@archive.command("renew")
@click.option("--dry-run", is_flag=True, help="only count what is due")
@click.option("--margin-days", type=click.IntRange(min=0), default=None,
              help="renew what stays valid for less than this (default: "
                   "policies/crypto/renewal.toml)")
@click.option("--json", "as_json", is_flag=True, help="print the outcome as JSON")
def renew_command(dry_run: bool, margin_days: int | None, as_json: bool) -> None:
    """Renew every archived record whose newest document timestamp is due: revocation
    data for its TSA (fetched now) and a new document timestamp, as a new locked version
    (reason `renewed`). Idempotent; after a crash, run it again to finish the rest.

    Exit 0 when everything due was renewed, 1 when some record failed, 2 when the
    renewal could not run."""
    from datetime import timedelta

    hocba = _service()
    margin = None if margin_days is None else timedelta(days=margin_days)
    try:
        with ExitStack() as stack:
            report = hocba.renewals.renew_due(_actor(), margin=margin, dry_run=dry_run,
                                              progress=_progress(stack, "records renewed"))
    except (HocbaError, ArchiveError) as e:
        raise CannotAudit(f"renewal failed: {e}") from e
    finally:
        hocba.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(f"{report.due} records due (dry run: nothing renewed)" if dry_run else
                   f"{report.due} records due, {report.renewed} renewed, "
                   f"{len(report.failed or [])} failed")
        for f in report.failed or []:
            click.echo(f"{f['record_id']}\t{f['code']}\t{f['detail']}")
    if report.failed:
        sys.exit(EXIT_PROBLEMS)


@archive.command("evidence")
@click.option("--all", "everything", is_flag=True,
              help="also build a batch smaller than batch_size before max_wait")
@click.option("--renew", is_flag=True,
              help="renew the evidence records that are due instead (one timestamp per "
                   "batch, or a new hash tree when the hash algorithm weakens)")
@click.option("--margin-days", type=click.IntRange(min=0), default=None,
              help="with --renew: renew what stays valid for less than this (default: "
                   "policies/crypto/renewal.toml)")
@click.option("--json", "as_json", is_flag=True, help="print the outcome as JSON")
def evidence_command(everything: bool, renew: bool, margin_days: int | None,
                     as_json: bool) -> None:
    """Build evidence records (RFC 4998) for archived objects that have none: one hash
    tree and one timestamp per batch (policies/crypto/evidence.toml). Idempotent; after a
    crash, run it again to finish the rest.

    Exit 0 when everything was done, 1 when a batch failed, 2 when it could not run."""
    from datetime import timedelta

    hocba = _service()
    try:
        with ExitStack() as stack:
            if renew:
                margin = None if margin_days is None else timedelta(days=margin_days)
                report = hocba.evidence.renew(
                    _actor(), margin=margin,
                    progress=_progress(stack, "evidence records renewed"))
            else:
                report = hocba.evidence.build(
                    _actor(), everything=everything,
                    progress=_progress(stack, "objects given evidence"))
    except (HocbaError, ArchiveError) as e:
        raise CannotAudit(f"evidence failed: {e}") from e
    finally:
        hocba.close()
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(f"{report.built} objects given evidence in {report.batches} batches, "
                   f"{report.renewed} evidence records renewed, {report.timestamp_requests} "
                   f"TSA requests, {report.waiting} waiting for a fuller batch, "
                   f"{len(report.failed)} failed")
        for f in report.failed:
            click.echo(f"{f.get('batch_id', '-')}\t{f['code']}\t{f['detail']}")
    if report.failed:
        sys.exit(EXIT_PROBLEMS)
