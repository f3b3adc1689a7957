"""The dev/test TSA, OCSP responder and CRL/certificate repository over HTTP.

    python -m certs.responder --state var/dev --port 9780

certomancer's Animator, served on 127.0.0.1 only. Dev and tests only: production
points HOCBA_TSA_URL at a real TSA, and certificates carry the real CA's URLs.

Eras (for tests under libfaketime, 2026 -> 2076): dev-pki.yml has several TSA and OCSP
responder certificates with overlapping validity. A request to a public URL -- the TSA
whose certificate starts first (/dev/tsa/tsa), and per issuer the OCSP service whose
responder certificate starts first (/dev/ocsp/interm, /dev/ocsp/interm-g2, the URLs in
certificates' AIA) -- is served by the service of that group (all TSAs; the OCSP
services for the same issuer) whose certificate is valid at the current time with the
latest valid-from. Other labels (/dev/tsa/tsa-2033, ...) are served as they are; with no
certificate of the group valid now the public label is served as it is.

certomancer 0.16's TSA encodes signing-time as UTCTime, which fails from 2050 on:
_fix_tsa_signing_time makes it GeneralizedTime then (RFC 5652, 11.3).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from certs.provision import pki_config


@dataclass(frozen=True)
class Era:
    """A service and the validity of its signing certificate."""

    label: str
    valid_from: datetime
    valid_to: datetime


def era_groups(pki_archs: dict[Any, Any]) -> dict[str, list[Era]]:
    """Public path ("/dev/tsa/tsa") -> the eras serving it, by the config: all TSAs of an
    architecture form one group, the OCSP services for one issuer another; the public
    label is the group's earliest."""
    groups: dict[str, list[Era]] = {}

    def add(prefix: str, arch: Any, members: Iterable[tuple[str, Any]]) -> None:
        eras = sorted(
            (Era(label, (c := arch.get_cert(cert)).not_valid_before, c.not_valid_after)
             for label, cert in members),
            key=lambda e: e.valid_from)
        if len(eras) > 1:
            groups[f"/{arch.arch_label}/{prefix}/{eras[0].label}"] = eras

    for arch in pki_archs.values():
        reg = arch.service_registry
        add("tsa", arch, ((str(t.label), t.signing_cert)
                          for t in reg.list_time_stamping_services()))
        by_issuer: dict[str, list[tuple[str, Any]]] = {}
        for o in reg.list_ocsp_responders():
            by_issuer.setdefault(str(o.for_issuer), []).append((str(o.label), o.responder_cert))
        for members in by_issuer.values():
            add("ocsp", arch, members)
    return groups


def current_era(eras: list[Era], now: datetime) -> Era | None:
    valid = [e for e in eras if e.valid_from <= now < e.valid_to]
    return max(valid, key=lambda e: e.valid_from) if valid else None


def era_router(app: Callable[..., Any], groups: dict[str, list[Era]]) -> Callable[..., Any]:
    """WSGI middleware: a public path goes to the service of the era valid now."""

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        eras = groups.get(path)
        era = current_era(eras, datetime.now(UTC)) if eras else None
        if era is not None:
            environ = {**environ, "PATH_INFO": path.rsplit("/", 1)[0] + "/" + era.label}
        return app(environ, start_response)

    return route


CERTOMANCER_FIXED = "0.16.0"


class _Forward:
    """A module's namespace with some names replaced."""

    def __init__(self, module: Any, **replaced: Any) -> None:
        self._module = module
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def _fix_tsa_signing_time() -> None:
    """certomancer.services builds `cms.Time({'utc_time': core.UTCTime(dt)})`: keep dt
    as it is there and pick UTCTime (1950-2049) or GeneralizedTime when building Time."""
    from importlib.metadata import version

    from asn1crypto import cms, core
    from certomancer import services

    if isinstance(services.cms, _Forward):
        return
    if version("certomancer") != CERTOMANCER_FIXED:  # the fix reads its internals
        raise SystemExit(f"certs/responder.py: the TSA signing-time fix was written for "
                         f"certomancer {CERTOMANCER_FIXED}, found {version('certomancer')}"
                         " (docs/upstream/certomancer-tsa-time.md)")

    def time(value: dict[str, datetime]) -> cms.Time:
        dt = value["utc_time"]
        return cms.Time({"utc_time" if 1950 <= dt.year < 2050 else "generalized_time": dt})

    services.core = _Forward(core, UTCTime=lambda dt: dt)
    services.cms = _Forward(cms, Time=time)


def build_app(state: Path, port: int) -> object:
    from certomancer.integrations.animator import Animator, AnimatorArchStore

    _fix_tsa_signing_time()

    cfg = pki_config(port, state / "pki" / "keys")
    animator = Animator(AnimatorArchStore(cfg.pki_archs), with_web_ui=False,
                        allow_time_override=False)
    return era_router(animator, era_groups(cfg.pki_archs))


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
