"""`hocba batch` and `hocba jobs`: talk to a running hocba over HTTP (a school system's
or an operator's view), with a progress bar while a job runs."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import click

from signer.apiclient import ApiClient, ApiClientError, ApiError, ApiUnreachable, Job

T = TypeVar("T")


def _api_key(env: str) -> str:
    key = os.environ.get(env)
    if not key:
        raise click.UsageError(f"set the API key in the environment variable {env}")
    return key


def _call(fn: Callable[[], T]) -> T:
    """One API call; its failure as one line (never the API key or the OTP)."""
    try:
        return fn()
    except ApiError as e:
        raise click.ClickException(f"{e.status} {e.code}: {e.detail}") from e
    except ApiUnreachable as e:
        raise click.ClickException(f"{e.url}: {e.reason}") from e
    except ApiClientError as e:
        raise click.ClickException(e.detail) from e


def wait_for_job(client: ApiClient, job_id: str, poll: float = 0.5) -> Job:
    """Poll GET /v1/jobs/{id} with a progress bar on stderr until it finishes."""
    job = _call(lambda: client.get_job(job_id))
    with click.progressbar(length=job.total, label=f"job {job_id[:8]}",
                           file=sys.stderr, show_pos=True) as bar:
        shown = 0
        while True:
            handled = job.done + len(job.failed)
            bar.update(handled - shown)
            shown = handled
            if job.status == "finished":
                return job
            time.sleep(poll)
            job = _call(lambda: client.get_job(job_id))


def _report(job: Job) -> None:
    click.echo(f"{job.done} signed, {len(job.failed)} failed of {job.total}")
    for f in job.failed:
        click.echo(f"{f.record_id}\tfailed\t{f.code}: {f.detail}")
    if job.failed:
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
    authorization = None
    if otp_env:
        otp = os.environ.get(otp_env)
        if not otp:
            raise click.UsageError(f"set the one-time password in {otp_env}")
        authorization = {"otp": otp}
    with ApiClient(url, api_key) as client:
        job = _call(lambda: client.create_batch(role, signer_key, list(records),
                                                authorization=authorization))
        _report(wait_for_job(client, job.job_id))


@click.group("jobs")
def jobs() -> None:
    """Follow long work (batches) on a running hocba."""


@jobs.command("wait")
@click.argument("job_id")
@click.option("--url", default="http://127.0.0.1:8080", show_default=True)
@click.option("--api-key-env", default="HOCBA_API_KEY", show_default=True)
def jobs_wait(job_id: str, url: str, api_key_env: str) -> None:
    with ApiClient(url, _api_key(api_key_env)) as client:
        _report(wait_for_job(client, job_id))
