"""A cheap RFC 3161 time-stamping authority over HTTP, for benchmarks and dev only.

    python -m bench.tsa --state var/bench --port 9841

pyHanko's DummyTimeStamper signs with the dev TSA key and certificate (the same ones
certomancer's Animator uses, so tokens chain to the dev root and the TSA certificate's
revocation data comes from the same OCSP/CRL responder). The key is parsed once; a
token costs a few milliseconds instead of the Animator's ~60 ms. Never in production.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Any

from asn1crypto import algos, keys, pem, tsp, x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from pyhanko.sign.general import get_pyca_cryptography_hash, simple_cms_attribute
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from werkzeug.wrappers import Request, Response

from certs.responder import serve_on_loopback


def _load_cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)


class FastDummyTimeStamper(DummyTimeStamper):
    """DummyTimeStamper with the private key parsed once (it re-parses per token), for
    the dev TSA's key of either type (the dev PKI's long-lived keys are EC P-256)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        key = serialization.load_der_private_key(self.tsa_key.dump(), password=None)
        assert isinstance(key, RSAPrivateKey | ec.EllipticCurvePrivateKey)
        self._key = key

    def _sign_tst_info(self, tst_info_data: bytes, md_algorithm: str,
                       dt: datetime) -> tuple[bytes, Any]:
        from asn1crypto import cms, core
        from cryptography.hazmat.primitives import hashes
        from pyhanko.sign import general

        md = hashes.Hash(get_pyca_cryptography_hash(md_algorithm))
        md.update(tst_info_data)
        signed_attrs = cms.CMSAttributes([
            simple_cms_attribute("content_type", "tst_info"),
            simple_cms_attribute("signing_time", cms.Time({"utc_time": core.UTCTime(dt)})),
            simple_cms_attribute("signing_certificate",
                                 general.as_signing_certificate(self.tsa_cert)),
            simple_cms_attribute("message_digest", md.finalize()),
        ])
        digest = get_pyca_cryptography_hash(md_algorithm.upper())
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(signed_attrs.dump(), ec.ECDSA(digest)), signed_attrs
        return self._key.sign(signed_attrs.dump(), PKCS1v15(), digest), signed_attrs

    def _build_signed_data(self, tst_info_data: bytes, md_algorithm: str,
                           signature: bytes, signed_attrs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super()._build_signed_data(
            tst_info_data, md_algorithm, signature, signed_attrs)
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            data["signer_infos"][0]["signature_algorithm"] = algos.SignedDigestAlgorithm(
                {"algorithm": f"{md_algorithm}_ecdsa"})
        return data


def build_app(state: Path) -> Any:
    pki = state / "pki"
    key_data = (pki / "keys" / "tsa.key.pem").read_bytes()
    _, _, der = pem.unarmor(key_data)
    tsa_cert = _load_cert(pki / "certs" / "tsa.pem")
    issuers = [c for c in (_load_cert(p) for p in sorted((pki / "certs").glob("*.pem")))
               if c.subject == tsa_cert.issuer and c.not_valid_before <= tsa_cert.not_valid_before]
    stamper = FastDummyTimeStamper(tsa_cert=tsa_cert, tsa_key=keys.PrivateKeyInfo.load(der),
                                   certs_to_embed=issuers[:1])

    @Request.application
    def app(request: Request) -> Response:
        if request.method != "POST":
            return Response("RFC 3161 TSA (bench/dev only): POST a TimeStampReq\n",
                            content_type="text/plain")
        try:
            req = tsp.TimeStampReq.load(request.get_data())
            req.native  # noqa: B018 - parse fully: garbage is a 400, not a 500
        except Exception:
            return Response("bad TimeStampReq\n", status=400)
        resp = stamper.request_tsa_response(req)
        return Response(resp.dump(), content_type="application/timestamp-reply")

    return app


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="cheap RFC 3161 TSA (bench/dev only)")
    ap.add_argument("--state", type=Path, default=Path("var/bench"))
    ap.add_argument("--port", type=int, default=9841)
    args = ap.parse_args(argv)
    serve_on_loopback(build_app(args.state.resolve()), args.port, "bench TSA")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
