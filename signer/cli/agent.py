"""`hocba agent`: sign records with a certificate on the school's USB token (PKCS#11).

    hocba agent sign --url http://127.0.0.1:8080 --role principal --record R1 --record R2 \\
        --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label hocba-school-client
    hocba agent list-keys --pkcs11-module ... --token-label ...

The PIN and the API key come from environment variables the caller names, never from
the command line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from signer.agent import USER_AGENT, AgentError, TokenKey, TokenSession, sign_records
from signer.agent.crypto import describe
from signer.apiclient import DEFAULT_TIMEOUT, ApiClient, ApiClientError


def _token_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--pkcs11-module", required=True, envvar="HOCBA_AGENT_PKCS11_MODULE",
                     help="the token's PKCS#11 library (.so / .dll)"),
        click.option("--token-label", default=None,
                     help="the token's label (default: the first token with a key)"),
        click.option("--pin-env", default="HOCBA_TOKEN_PIN", show_default=True,
                     help="the environment variable that holds the token PIN"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.group()
def agent() -> None:
    """Sign records with a certificate on a USB token (PKCS#11) at the school."""


@agent.command("sign")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True,
              envvar="HOCBA_URL", help="the hocba service")
@click.option("--api-key-env", default="HOCBA_API_KEY", show_default=True,
              help="the environment variable that holds the API key")
@click.option("--role", required=True, help="the role signing (teacher, principal, seal...)")
@click.option("--record", "records", multiple=True, required=True, help="a record id")
@_token_options
@click.option("--cert-label", default=None, help="the certificate's label on the token")
@click.option("--cert-pem", type=click.Path(exists=True, dir_okay=False), default=None,
              help="the signing certificate (and chain) as PEM")
@click.option("--key-label", default=None,
              help="the private key's label, only if it cannot be matched to the certificate")
@click.option("--chain-pem", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="issuer certificates to send with the signing certificate")
@click.option("--batch/--no-batch", default=True, show_default=True,
              help="one batch session for several records")
@click.option("--timeout", type=float, default=DEFAULT_TIMEOUT[1], show_default=True,
              help="seconds to wait for each answer")
def sign_command(url: str, api_key_env: str, role: str, records: tuple[str, ...],
                 pkcs11_module: str, token_label: str | None, pin_env: str,
                 cert_label: str | None, cert_pem: str | None, key_label: str | None,
                 chain_pem: tuple[str, ...], batch: bool, timeout: float) -> None:
    """Sign records: one line per record, exit 1 if any failed."""
    if cert_label and cert_pem:
        raise click.UsageError("--cert-label and --cert-pem exclude each other")
    api_key = os.environ.get(api_key_env, "").strip()
    if not api_key:
        raise click.ClickException(f"put the API key in the environment variable {api_key_env}")
    record_ids = list(dict.fromkeys(records))
    timeouts = (min(DEFAULT_TIMEOUT[0], timeout), timeout)
    try:
        with TokenKey(pkcs11_module, pin_env=pin_env, token_label=token_label,
                      cert_label=cert_label, cert_pem=cert_pem, key_label=key_label,
                      chain_pems=chain_pem) as key, \
                ApiClient(url, api_key, timeout=timeouts, user_agent=USER_AGENT) as client:
            click.echo(f"certificate: {describe(key.certificate)}; key {key.key_label!r} "
                       f"(matched by {key.matched_by})", err=True)
            if batch and len(record_ids) > 1:
                with click.progressbar(length=len(record_ids), label="signing",
                                       file=sys.stderr) as bar:
                    results = sign_records(client, role, record_ids, key, batch=True,
                                           progress=lambda _rid: bar.update(1))
            else:
                results = sign_records(client, role, record_ids, key, batch=batch)
    except (AgentError, ApiClientError) as e:
        raise click.ClickException(str(e)) from None
    for result in results:
        click.echo(result.line())
    failed = sum(not r.ok for r in results)
    if failed:
        raise click.ClickException(f"{failed} of {len(results)} records not signed")


@agent.command("list-keys")
@_token_options
def list_keys_command(pkcs11_module: str, token_label: str | None, pin_env: str) -> None:
    """List the certificates on the token and whether each has its private key."""
    try:
        with TokenSession(pkcs11_module, pin_env=pin_env, token_label=token_label) as token:
            certs = token.certificates()
            click.echo(f"token {token.token_label!r}: {len(certs)} certificate(s)")
            for c in certs:
                match = token.find_key_for_certificate(c.certificate, c.cka_id or None)
                key = (f"key {match.label!r} (by {match.how})" if match is not None
                       else "no private key")
                click.echo(f"{c.label}\tid={c.cka_id.hex() or '-'}\t{c.subject}\t"
                           f"not after {c.certificate.not_valid_after_utc:%Y-%m-%d}\t{key}")
    except AgentError as e:
        raise click.ClickException(str(e)) from None

