"""`hocba dev`: the dev service with its TSA/OCSP/CRL responder and CSC server; the
helpers tests and benchmarks start the same processes with."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

DEV_STATE = Path("var/dev")
DEV_RESPONDER_PORT = 9780
DEV_CSC_PORT = 9782


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise click.ClickException(f"nothing answered on 127.0.0.1:{port} after {timeout}s")


def dev_environment(state: Path, responder_port: int) -> dict[str, str]:
    """The settings a dev/test service runs with, for a provisioned state directory."""
    return {
        "HOCBA_ENV": "dev",
        "HOCBA_CLIENTS_FILE": str(state / "clients.json"),
        "SOFTHSM2_CONF": str(state / "softhsm2.conf"),
        "HOCBA_HSM_PIN": (state / "hsm-pin").read_text().strip(),
        "HOCBA_TSA_URL": f"http://127.0.0.1:{responder_port}/dev/tsa/tsa",
    }


@click.command()
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", "8080")))
def dev(port: int) -> None:
    """Provision dev state if needed, then run the TSA/OCSP/CRL responder and the service."""
    from certs.provision import provision  # dev tooling, not in the production image

    state = provision(DEV_STATE, DEV_RESPONDER_PORT, csc_port=DEV_CSC_PORT)
    env = {**os.environ, **dev_environment(DEV_STATE, DEV_RESPONDER_PORT), "PORT": str(port),
           "HOCBA_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    bin_dir = Path(sys.executable).parent
    procs: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "certs.responder", "--state",
                                       str(DEV_STATE), "--port", str(DEV_RESPONDER_PORT)]))
        wait_for_port(DEV_RESPONDER_PORT)
        procs.append(subprocess.Popen([sys.executable, "-m", "certs.csc_server", "--state",
                                       str(DEV_STATE), "--port", str(DEV_CSC_PORT),
                                       "--responder-port", str(DEV_RESPONDER_PORT)]))
        wait_for_port(DEV_CSC_PORT)
        procs.append(subprocess.Popen([str(bin_dir / "gunicorn"), "-c", "gunicorn.conf.py",
                                       "signer.http.wsgi:app"], env=env))
        wait_for_port(port, timeout=60)
        click.echo(
            f"\nhocba is running on http://127.0.0.1:{port}\n"
            f"  API keys and signer keys: {state / 'clients.json'}\n"
            f"  trust anchor:             {state / 'pki' / 'root.pem'}\n"
            f"  TSA/OCSP/CRL:             http://127.0.0.1:{DEV_RESPONDER_PORT}\n"
            f"  CSC remote signing (dev): http://127.0.0.1:{DEV_CSC_PORT}/csc/v1\n"
            "Ctrl-C stops everything.\n", err=True)
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        raise click.ClickException("a dev process exited; stopping the rest")
    except KeyboardInterrupt:
        pass
    finally:
        stop()
