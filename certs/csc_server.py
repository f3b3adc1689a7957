"""The dev/test remote signing provider: a Cloud Signature Consortium (CSC) API server.

    python -m certs.csc_server --state var/dev --port 9782 --responder-port 9780

certomancer-csc-dummy's `CSCWithCertomancer` over our dev PKI (certs/dev-pki.yml, keys
under <state>/pki/keys), served on 127.0.0.1 only, with hash pinning required (SCAL2:
a SAD is bound to the hashes it authorizes). Dev and tests only: the keys are software
keys, there is no OAuth and no user account.

Where the dummy does not behave like a real provider, a middleware makes it:
- `credentials/authorize` needs the user's one-time password (`"OTP"` in the body), here
  the dev OTP that provision wrote to <state>/csc-otp (compared in constant time); a
  wrong or missing one answers 400 `{"error": "invalid_otp", "error_description": ...}`,
  the CSC error format. `credentials/info` says so (`authMode` "explicit", `OTP`).
- Only the remote signing credentials provision lists (`CSC_CREDENTIALS`, credential IDs
  "dev/<label>") are served; the dummy alone would sign with any key of the PKI, the
  CAs' included. Unknown credentials answer 400 `invalid_request`.
- A SAD is good for one `signatures/signHash` call within `SAD_LIFETIME` seconds (the
  dummy accepts a SAD forever and any number of times).
- The dummy's own refusals (plain-text 4xx) become CSC JSON errors.
- It counts calls: `GET /_test/stats` -> {"authorize_calls", "authorize_refused",
  "authorize_hashes": [hashes per call], "sign_hash_calls", "sign_hash_hashes",
  "credentials_info_calls"}; `POST /_test/reset` zeroes them (dev/test only).

API versions, honestly: the dummy implements CSC API v1.0.4.0 at `/csc/v1/...`
(`info`, `credentials/list|info|authorize`, `signatures/signHash|timestamp`; no `auth/*`,
no `extendTransaction`, no `sendOTP`). `/csc/v2/...` routes to the same handlers: request
bodies may use the v2 names (`hashes`, `hashAlgorithmOID`) or the v1 ones (`hash`,
`hashAlgo`; pyHanko's CSCSigner sends v1 bodies whatever `api_ver` says), and
`credentials/info` answers v2's `auth` object instead of v1's `authMode`/`OTP`; every
other answer is v1-shaped (the fields pyHanko reads are the same in v2). Nothing of v2's
OAuth2 credential authorization, asynchronous `operationMode` or `signatures/signDoc`.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import re
import secrets
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from certs.provision import CSC_CREDENTIALS, DEFAULT_CSC_PORT, pki_config

SAD_LIFETIME = 300  # seconds
MULTISIGN = 100  # signatures per authorization (a class is 30 to 45 pupils)
_CSC_PATH = re.compile(r"/csc/(v1|v2)/(.+)")
_V2_NAMES = {"hashes": "hash", "hashAlgorithmOID": "hashAlgo"}
_OTP_DESCRIPTION = "Mã OTP gửi tới điện thoại của giáo viên (dev: <state>/csc-otp)"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def csc_error(status: int, error: str, description: str) -> web.Response:
    """An error in the CSC API's format (RFC 6749 style)."""
    return web.json_response({"error": error, "error_description": description},
                             status=status)


class _V1Body:
    """What the dummy's handlers read of a request (only `json()`), with v2 names mapped
    to v1 ones."""

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    async def json(self) -> dict[str, Any]:
        return self._body


class DevProvider:
    """The real-provider behaviour around the dummy (see the module docstring)."""

    def __init__(self, otp: str, credentials: frozenset[str]) -> None:
        self._otp = otp.encode()
        self.credentials = credentials
        self._sads: dict[str, float] = {}  # SAD -> expiry (monotonic)
        self.stats: dict[str, Any] = {}
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats = {"authorize_calls": 0, "authorize_refused": 0, "authorize_hashes": [],
                      "sign_hash_calls": 0, "sign_hash_hashes": [],
                      "credentials_info_calls": 0}

    def _otp_ok(self, otp: object) -> bool:
        given = otp.encode() if isinstance(otp, str) else b""
        return hmac.compare_digest(given, self._otp)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        m = _CSC_PATH.fullmatch(request.path)
        if m is None or request.method != "POST":
            return await handler(request)
        version, endpoint = m.groups()
        try:
            body = await request.json() if await request.read() else {}
        except ValueError:
            return csc_error(400, "invalid_request", "The request body is not JSON")
        if not isinstance(body, dict):
            return csc_error(400, "invalid_request", "The request body is not a JSON object")
        if endpoint == "credentials/list":
            return web.json_response({"credentialIDs": sorted(self.credentials)})
        if endpoint.startswith(("credentials/", "signatures/signHash")) and \
                body.get("credentialID") not in self.credentials:
            return csc_error(400, "invalid_request", "Invalid parameter credentialID")
        hashes = body.get("hashes", body.get("hash"))
        n_hashes = len(hashes) if isinstance(hashes, list) else 0

        if endpoint == "credentials/authorize":
            self.stats["authorize_calls"] += 1
            self.stats["authorize_hashes"].append(n_hashes)
            if not self._otp_ok(body.get("OTP")):
                self.stats["authorize_refused"] += 1
                return csc_error(400, "invalid_otp", "The OTP is invalid")
            resp = await _call(handler, request)
            if resp.status != 200:
                return resp
            answer = json.loads(resp.text or "{}")
            now = time.monotonic()
            self._sads = {s: exp for s, exp in self._sads.items() if exp > now}
            self._sads[answer["SAD"]] = now + SAD_LIFETIME
            return web.json_response({**answer, "expiresIn": SAD_LIFETIME})

        if endpoint == "signatures/signHash":
            self.stats["sign_hash_calls"] += 1
            self.stats["sign_hash_hashes"].append(n_hashes)
            expiry = self._sads.pop(str(body.get("SAD")), None)
            if expiry is None or expiry < time.monotonic():
                return csc_error(400, "invalid_request",
                                 "Invalid parameter SAD (unknown, expired or already used)")
            return await _call(handler, request)

        if endpoint == "credentials/info":
            self.stats["credentials_info_calls"] += 1
            resp = await _call(handler, request)
            if resp.status != 200:
                return resp
            return web.json_response(_explicit_otp(json.loads(resp.text or "{}"), version))

        return await _call(handler, request)

    def v2(self, v1_handler: Callable[[Any], Awaitable[web.StreamResponse]]) -> Handler:
        """A /csc/v2 route over the dummy's v1 handler (v2 field names mapped to v1)."""

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.json() if await request.read() else {}
            mapped = {_V2_NAMES.get(k, k): v for k, v in body.items()}
            return await v1_handler(_V1Body(mapped))

        return handle

    async def stats_view(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats)

    async def reset_view(self, request: web.Request) -> web.Response:
        self.reset_stats()
        return web.json_response(self.stats)


async def _call(handler: Handler, request: web.Request) -> web.Response:
    """The dummy's answer, its plain-text refusals turned into CSC JSON errors."""
    try:
        resp = await handler(request)
    except web.HTTPException as e:
        if e.status >= 500:
            return csc_error(e.status, "server_error", e.reason)
        return csc_error(e.status, "invalid_request", e.reason)
    if not isinstance(resp, web.Response):
        raise TypeError(f"unexpected response {type(resp).__name__}")
    return resp


def _explicit_otp(info: dict[str, Any], version: str) -> dict[str, Any]:
    """credentials/info: this credential needs an OTP for every authorization."""
    info.pop("authMode", None)
    otp = {"format": "N", "label": "OTP", "description": _OTP_DESCRIPTION}
    if version == "v1":
        return {**info, "authMode": "explicit", "PIN": {"presence": "false"},
                "OTP": {"presence": "true", "type": "online", "ID": "dev-otp", **otp}}
    return {**info, "auth": {"mode": "explicit", "expression": "OTP",
                             "objects": [{"type": "OTP", "id": "dev-otp", **otp}]}}


def build_app(state: Path, responder_port: int) -> web.Application:
    from csc_dummy.csc_dummy_server import CSCWithCertomancer, DummyServiceParams

    otp_file = state / "csc-otp"
    try:
        otp = otp_file.read_text().strip()
    except OSError as e:
        raise SystemExit(f"{otp_file}: {e.strerror}; provision {state} first "
                         "(python -m certs.provision)") from e
    key_dir = state / "pki" / "keys"
    cfg = pki_config(responder_port, key_dir)
    credentials = frozenset(
        f"dev/{label}" for _school, _role, label in CSC_CREDENTIALS.values()
        if (key_dir / f"{label}.key.pem").exists()
    )
    if not credentials:
        raise SystemExit(f"{state} has no remote signing keys; re-provision it (--force)")
    with warnings.catch_warnings():
        # the dummy keeps its state under str application keys
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        dummy = CSCWithCertomancer(cfg, service_params=DummyServiceParams(
            hash_pinning_required=True, multisign=MULTISIGN,
            sad_secret=secrets.token_bytes(32),
        ))
    dummy.register_routes()
    dev = DevProvider(otp, credentials)
    app: web.Application = dummy.app
    app.middlewares.append(dev.middleware)
    for name, v1_handler in (
        ("info", dummy.info),
        ("credentials/list", dummy.credentials_list),
        ("credentials/info", dummy.credentials_info),
        ("credentials/authorize", dummy.credentials_authorize),
        ("signatures/signHash", dummy.signatures_sign_hash),
        ("signatures/timestamp", dummy.signatures_timestamp),
    ):
        app.router.add_post(f"/csc/v2/{name}", dev.v2(v1_handler))
    app.router.add_get("/_test/stats", dev.stats_view)
    app.router.add_post("/_test/reset", dev.reset_view)
    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="dev CSC remote signing server")
    ap.add_argument("--state", type=Path, default=Path("var/dev"))
    ap.add_argument("--port", type=int, default=DEFAULT_CSC_PORT)
    ap.add_argument("--responder-port", type=int, default=9780,
                    help="port of the TSA/OCSP/CRL responder the PKI was provisioned for")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    app = build_app(args.state.resolve(), args.responder_port)
    print(f"CSC server on http://127.0.0.1:{args.port}/csc/v1 (and /csc/v2)",
          file=sys.stderr, flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
