"""`hocba evidence verify FILE EVIDENCE`: check an evidence record (RFC 4998) against a
file, without the service or its index."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from signer.cli.verify import Unusable, trust_anchors


@click.group("evidence")
def evidence() -> None:
    """Check evidence records (RFC 4998) of archived files."""


@evidence.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("record", metavar="EVIDENCE",
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--trust", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trust anchor certificate or trust store (.toml); repeatable. Default: "
                   "the trust store of HOCBA_CLIENTS_FILE.")
@click.option("--offline", is_flag=True,
              help="Only the validation data in the evidence record (no fetching).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify_command(file: Path, record: Path, trust: tuple[Path, ...], offline: bool,
                   as_json: bool) -> None:
    """Check that EVIDENCE covers FILE and that its archive timestamps are valid, each
    as of the next one's time; report since when the file is proven to exist.

    Exit 0 when the record proves the file's existence, 1 when it does not, 2 when the
    check could not run."""
    from signer.aio import run
    from signer.evidence import verify_evidence

    anchors = trust_anchors(trust)
    try:
        data = file.read_bytes()
        der = record.read_bytes()
    except OSError as e:
        raise Unusable(str(e)) from e
    report = run(verify_evidence(data, der, anchors, online=not offline))
    if as_json:
        click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        if report.valid and report.existed_at is not None:
            click.echo(f"VALID: {file.name} existed at {report.existed_at:%Y-%m-%d %H:%M:%S} "
                       "UTC (proven by the evidence record)")
        else:
            click.echo(f"NOT PROVEN: {report.problem}")
        for t in report.timestamps:
            at = "now" if t.validated_at is None else f"as of {t.validated_at:%Y-%m-%d}"
            click.echo(f"  archive timestamp {t.chain}.{t.position} {t.time:%Y-%m-%d} "
                       f"{t.algorithm} by {t.tsa or '?'}: {t.indication}"
                       + (f"/{t.sub_indication}" if t.sub_indication else "")
                       + f" ({at})")
    sys.exit(0 if report.valid else 1)
