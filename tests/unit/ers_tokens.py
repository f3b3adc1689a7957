"""A local RFC 3161 TSA for evidence-record tests: pyHanko's DummyTimeStamper over a
self-signed RSA-2048 certificate (EKU timeStamping, critical) made with `cryptography`.
Nothing goes over the network."""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass, field

from asn1crypto import cms, keys, x509
from cryptography import x509 as cx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import ocsp as cocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper


@dataclass
class LocalTsa:
    key: rsa.RSAPrivateKey
    cert: cx.Certificate
    stamper: DummyTimeStamper = field(init=False)

    def __post_init__(self) -> None:
        self.stamper = DummyTimeStamper(tsa_cert=self.asn1_cert, tsa_key=keys.PrivateKeyInfo.load(
            self.key.private_bytes(serialization.Encoding.DER,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())))

    @property
    def asn1_cert(self) -> x509.Certificate:
        return x509.Certificate.load(self.cert.public_bytes(serialization.Encoding.DER))

    def token(self, digest: bytes, algorithm: str = "sha256") -> cms.ContentInfo:
        """A timestamp token over `digest` (already hashed with `algorithm`)."""
        token: cms.ContentInfo = asyncio.run(self.stamper.async_timestamp(digest, algorithm))
        return token

    def crl(self) -> bytes:
        """A DER CRL signed by the TSA key, revoking nothing."""
        now = datetime.datetime.now(datetime.UTC)
        crl = (cx.CertificateRevocationListBuilder().issuer_name(self.cert.subject)
               .last_update(now - datetime.timedelta(hours=1))
               .next_update(now + datetime.timedelta(days=1))
               .sign(self.key, hashes.SHA256()))
        return crl.public_bytes(serialization.Encoding.DER)

    def ocsp(self) -> bytes:
        """A DER OCSP response saying the TSA certificate is good (self-issued)."""
        now = datetime.datetime.now(datetime.UTC)
        response = (cocsp.OCSPResponseBuilder()
                    .add_response(cert=self.cert, issuer=self.cert, algorithm=hashes.SHA256(),
                                  cert_status=cocsp.OCSPCertStatus.GOOD, this_update=now,
                                  next_update=now + datetime.timedelta(days=1),
                                  revocation_time=None, revocation_reason=None)
                    .responder_id(cocsp.OCSPResponderEncoding.HASH, self.cert)
                    .sign(self.key, hashes.SHA256()))
        return response.public_bytes(serialization.Encoding.DER)


def make_tsa(common_name: str = "test tsa") -> LocalTsa:
    key = rsa.generate_private_key(65537, 2048)
    name = cx.Name([cx.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (cx.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(cx.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=10))
            .add_extension(cx.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return LocalTsa(key, cert)
