"""`hocba verify FILE`: check a signed record from the file and a trust anchor, as a
university or an employer would, without the service or its index."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


class Unusable(click.ClickException):
    exit_code = 2


def trust_anchors(trust: tuple[Path, ...]) -> Any:
    from signer.errors import ConfigError
    from signer.truststore import load_trust

    try:
        if trust:
            return load_trust(list(trust))
        from signer.clients import load_clients
        from signer.settings import load_settings

        anchors = load_clients(load_settings().clients_file).trust_anchors
        if not anchors:
            raise click.UsageError(
                "no trust anchor: pass --trust ROOT.pem (or a trust store .toml) or set "
                "HOCBA_CLIENTS_FILE")
        return load_trust(list(anchors))
    except ConfigError as e:
        raise Unusable(str(e)) from e


def _roles() -> dict[str, str]:
    from signer.policy import load_policies
    from signer.settings import load_settings

    try:
        policies = load_policies(load_settings().policy_dir)
    except Exception:  # no policies here: fields are reported without roles
        return {}
    return {r.field.name: r.name for p in policies.values() for r in p.roles}


@click.command()
@click.argument("pdf", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--trust", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Trust anchor certificate (PEM or DER) or trust store (.toml, anchors "
                   "with purposes and dates); repeatable. Default: the trust store of "
                   "HOCBA_CLIENTS_FILE.")
@click.option("--offline", is_flag=True,
              help="Only the validation data in the file (no OCSP/CRL fetching).")
@click.option("--evidence", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An evidence record (RFC 4998, DER) of the file, used as proof of "
                   "existence when the file alone no longer proves it.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(pdf: Path, trust: tuple[Path, ...], offline: bool, evidence: Path | None,
           as_json: bool) -> None:
    """Verify a signed record: every signature, document timestamp and the PAdES level.
    Exit status 0 when TOTAL_PASSED, 1 when not, 2 for unusable input."""
    from signer.aio import run
    from signer.errors import HocbaError
    from signer.pades.validate import verify_pdf

    anchors = trust_anchors(trust)
    try:
        if evidence is not None:
            from signer.evidence import verify_pdf_with_evidence

            report = run(verify_pdf_with_evidence(
                pdf.read_bytes(), evidence.read_bytes(), trust_roots=anchors,
                role_by_field=_roles(), allow_fetching=not offline))
        else:
            report = run(verify_pdf(pdf.read_bytes(), trust_roots=anchors,
                                    role_by_field=_roles(), allow_fetching=not offline))
    except HocbaError as e:
        raise Unusable(f"{pdf}: {e.detail}") from e
    doc = report.as_dict()
    doc.pop("archived")
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        _print(pdf, doc)
    sys.exit(0 if report.passed else 1)


def _print(pdf: Path, doc: dict[str, Any]) -> None:
    sub = f" ({doc['sub_indication']})" if doc["sub_indication"] else ""
    click.echo(f"{pdf}: {doc['indication']}{sub}, level {doc['level'] or '-'}")
    for s in doc["signatures"]:
        sub = f" ({s['sub_indication']})" if s["sub_indication"] else ""
        click.echo(f"  {s['role'] or s['field']:<10} {s['indication']}{sub}  "
                   f"{s['signer']['subject']}  timestamp {s['timestamp_time'] or '-'}")
    for t in doc["document_timestamps"]:
        state = "intact, trusted" if t["intact"] and t["trusted"] else "NOT intact/trusted"
        click.echo(f"  {'timestamp':<10} {t['time']}  {state}  {t['tsa']}")
    if doc["explanation"]:
        click.echo(f"  {doc['explanation']}")
    if doc.get("evidence"):
        ev = doc["evidence"]
        click.echo(f"  evidence record: {'valid' if ev['valid'] else 'NOT valid'}"
                   + (f", the file existed at {ev['existed_at']}" if ev["existed_at"] else "")
                   + (f" ({ev['problem']})" if ev["problem"] else ""))
    if doc["timestamp_valid_until"]:
        click.echo(f"  newest timestamp valid until {doc['timestamp_valid_until']} "
                   "(renew before then)")
