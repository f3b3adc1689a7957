"""The dev/test TSA, OCSP responder and CRL/certificate repository over HTTP.

    python -m certs.responder --state var/dev --port 9780

certomancer's Animator, served on 127.0.0.1 only. Dev and tests only: production
points HOCBA_TSA_URL at a real TSA, and certificates carry the real CA's URLs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from certs.provision import pki_config


def build_app(state: Path, port: int) -> object:
    from certomancer.integrations.animator import Animator, AnimatorArchStore

    cfg = pki_config(port, state / "pki" / "keys")
    return Animator(AnimatorArchStore(cfg.pki_archs), with_web_ui=False,
                    allow_time_override=False)


def serve_on_loopback(app: Any, port: int, banner: str) -> None:
    """Serve a WSGI app on 127.0.0.1 until SIGTERM or Ctrl-C (dev and bench servers)."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per OCSP/TSA call
    server = make_server("127.0.0.1", port, app, threaded=True)

    def _stop(*_: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    print(f"{banner} on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="dev TSA/OCSP/CRL responder")
    ap.add_argument("--state", type=Path, default=Path("var/dev"))
    ap.add_argument("--port", type=int, default=9780)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    serve_on_loopback(build_app(args.state.resolve(), args.port), args.port,
                      "TSA/OCSP/CRL responder")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
