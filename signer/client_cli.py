"""`hocba batch` and `hocba jobs`: talk to a running hocba over HTTP (a school system's
or an operator's view), with a progress bar while a job runs."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click
import requests


def _api_key(env: str) -> str:
    key = os.environ.get(env)
    if not key:
        raise click.UsageError(f"set the API key in the environment variable {env}")
    return key


def _call(method: str, url: str, api_key: str, **kw: Any) -> Any:
    try:
        r = requests.request(method, url, headers={"Authorization": f"Bearer {api_key}"},
                             timeout=(10, 120), **kw)
    except requests.RequestException as e:
        raise click.ClickException(f"{url}: {type(e).__name__}") from e
    body = r.json() if r.headers.get("Content-Type", "").startswith("application/") else {}
    if r.status_code >= 400:
        raise click.ClickException(f"{r.status_code} {body.get('code')}: {body.get('detail')}")
    return body


def wait_for_job(base: str, api_key: str, job_id: str, poll: float = 0.5) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} with a progress bar on stderr until it finishes."""
    job: dict[str, Any] = _call("GET", f"{base}/v1/jobs/{job_id}", api_key)
    with click.progressbar(length=job["total"], label=f"job {job_id[:8]}",
                           file=sys.stderr, show_pos=True) as bar:
        shown = 0
        while True:
            handled = job["done"] + len(job["failed"])
            bar.update(handled - shown)
            shown = handled
            if job["status"] == "finished":
                return job
            time.sleep(poll)
            job = _call("GET", f"{base}/v1/jobs/{job_id}", api_key)


def _report(job: dict[str, Any]) -> None:
    click.echo(f"{job['done']} signed, {len(job['failed'])} failed of {job['total']}")
    for f in job["failed"]:
        click.echo(f"{f['record_id']}\tfailed\t{f['code']}: {f['detail']}")
    if job["failed"]:
        raise SystemExit(1)


@click.group("batch")
def batch() -> None:
    """Sign many records by one role in one batch (one authorization)."""


@batch.command("sign")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True)
@click.option("--api-key-env", default="HOCBA_API_KEY", show_default=True)
@click.option("--role", required=True)
@click.option("--key", "signer_key", required=True, help="server-held or remote (CSC) key")
@click.option("--record", "records", multiple=True, required=True)
@click.option("--otp-env", default=None,
              help="variable holding the remote signing provider's one-time password")
def batch_sign(url: str, api_key_env: str, role: str, signer_key: str,
               records: tuple[str, ...], otp_env: str | None) -> None:
    api_key = _api_key(api_key_env)
    body: dict[str, Any] = {"role": role, "key": signer_key, "record_ids": list(records)}
    if otp_env:
        otp = os.environ.get(otp_env)
        if not otp:
            raise click.UsageError(f"set the one-time password in {otp_env}")
        body["authorization"] = {"otp": otp}
    job = _call("POST", f"{url}/v1/batches", api_key, json=body)
    _report(wait_for_job(url, api_key, job["job_id"]))


@click.group("jobs")
def jobs() -> None:
    """Follow long work (batches) on a running hocba."""


@jobs.command("wait")
@click.argument("job_id")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True)
@click.option("--api-key-env", default="HOCBA_API_KEY", show_default=True)
def jobs_wait(job_id: str, url: str, api_key_env: str) -> None:
    _report(wait_for_job(url, _api_key(api_key_env), job_id))
