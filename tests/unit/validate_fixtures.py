"""Signed PDFs for test_validate.py, made with the test PKI in var/test.

``lta_record`` signs the primary-school sample like the service does (teacher,
principal, school seal, then revocation data and a document timestamp) with the
test keys (the seal's is in the test SoftHSM2 token) and the test TSA/OCSP/CRL
responder on port 9781 (tests/conftest.py provisions and starts both). It runs in a
child process: SoftHSM2 reads its configuration once per process, and the test
session may already use another token.
Run as a script: ``python -m tests.unit.validate_fixtures SRC.pdf OUT.pdf``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

from asn1crypto import pem, x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner, SimpleSigner
from pyhanko.sign.timestamps import HTTPTimeStamper

REPO = Path(__file__).resolve().parents[2]
from tests.conftest import RESPONDER_PORT, TEST_STATE  # noqa: E402

DEV = TEST_STATE
PKI = DEV / "pki"
SAMPLE = REPO / "tests" / "fixtures" / "samples" / "hoc-ba-tieu-hoc-fpdf2.pdf"
POLICY = "hoc_ba_tieu_hoc"
SCHOOL = "DEMO-SCHOOL-1"
SCHOOL_NAME = "Trường Tiểu học Nguyễn Du"
ROLE_KEYS = (
    ("teacher", "school-1-teacher"),
    ("principal", "school-1-principal"),
    ("seal", "school-1-seal"),
)
RESPONDER_URL = f"http://127.0.0.1:{RESPONDER_PORT}"
TSA_URL = f"{RESPONDER_URL}/dev/tsa/tsa"


def dev_root() -> x509.Certificate:
    return load_cert(PKI / "root.pem")


def load_cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if pem.detect(data):
        _, _, data = pem.unarmor(data)
    return x509.Certificate.load(data)


def role_by_field() -> dict[str, str]:
    from signer.policy import load_policies

    policy = load_policies(REPO / "policies")[POLICY]
    return {role.field.name: role.name for role in policy.roles}


def lta_record(src: Path = SAMPLE, *, timeout: float = 180) -> bytes:
    """A three-signature PAdES-B-LTA record, signed in a child process."""
    with tempfile.TemporaryDirectory(prefix="hocba-validate-") as tmp:
        out = Path(tmp) / "record.pdf"
        env = {**os.environ, "SOFTHSM2_CONF": str(DEV / "softhsm2.conf")}
        env.pop("HOCBA_HSM_PIN", None)  # the token's PIN comes from var/test
        subprocess.run(
            [sys.executable, "-m", "tests.unit.validate_fixtures", str(src), str(out)],
            cwd=REPO,
            env=env,
            check=True,
            timeout=timeout,
            capture_output=True,
        )
        return out.read_bytes()


def _sign_lta_in_process(pdf: bytes) -> bytes:
    from signer.clients import load_clients
    from signer.keys import KeyRegistry
    from signer.pades.context import SigningServices
    from signer.pades.sign import RoleSigning, finish_lta, sign_role
    from signer.policy import load_policies
    from signer.settings import load_settings

    settings = load_settings(
        {
            "HOCBA_CLIENTS_FILE": str(DEV / "clients.json"),
            "HOCBA_TSA_URL": TSA_URL,
        }
    )
    clients = load_clients(DEV / "clients.json")
    registry = KeyRegistry(settings, clients)
    policy = load_policies(REPO / "policies")[POLICY]
    services = SigningServices(
        tsa_url=TSA_URL,
        trust_anchors=list(clients.trust_anchors),
        font_path=settings.stamp_font,
    )
    for i, (role, key) in enumerate(ROLE_KEYS):
        signer = registry.get(key, frozenset({SCHOOL})).signer()
        role_policy = policy.role(role)
        assert role_policy is not None, role
        job = RoleSigning(policy, role_policy, SCHOOL_NAME, i == 0)
        pdf = asyncio.run(sign_role(pdf, signer, job, services))
    return asyncio.run(finish_lta(pdf, policy, services))


def sign_with_software_key(
    pdf: bytes, name: str, *, chain: str, field: str, timestamp: bool = False
) -> bytes:
    """Sign with var/test/pki/keys/NAME.key.pem straight through pyHanko (no DSS)."""
    signer = SimpleSigner.load(
        str(PKI / "keys" / f"{name}.key.pem"),
        str(PKI / "certs" / f"{name}.pem"),
        ca_chain_files=(str(PKI / "certs" / f"{chain}.pem"),),
    )
    assert signer is not None
    meta = PdfSignatureMetadata(
        field_name=field, md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES
    )
    timestamper = HTTPTimeStamper(TSA_URL, timeout=20) if timestamp else None
    out = BytesIO()
    PdfSigner(meta, signer=signer, timestamper=timestamper).sign_pdf(
        IncrementalPdfFileWriter(BytesIO(pdf)), output=out
    )
    return out.getvalue()


def foreign_signed(pdf: bytes) -> bytes:
    """Signed with the foreign CA's signer key (not our PKI): no timestamp, no DSS."""
    return sign_with_software_key(pdf, "foreign-signer", chain="foreign-root", field="Sig_Foreign")


def signed_without_revocation_data(pdf: bytes) -> bytes:
    """Signed with the teacher's software key and a signature timestamp, but no
    revocation data in the file (PAdES-B-T): validating it needs the responder."""
    return sign_with_software_key(
        pdf, "teacher-1", chain="interm", field="Sig_GVCN", timestamp=True
    )


def signed_with_wrong_key_usage(pdf: bytes) -> bytes:
    """Our PKI, but a certificate for key encipherment only."""
    return sign_with_software_key(pdf, "bad-ku-1", chain="interm", field="Sig_GVCN", timestamp=True)


def first_signed_range(pdf: bytes) -> tuple[int, int]:
    """(start, end) of the first byte range of the first signature: the original file."""
    reader = PdfFileReader(BytesIO(pdf))
    sig = reader.embedded_regular_signatures[0]
    start, length = int(sig.byte_range[0]), int(sig.byte_range[1])
    return start, start + length


def flip_signed_byte(pdf: bytes) -> tuple[bytes, int]:
    """A copy with one byte of the first page content stream flipped (inside the first
    signature's first byte range, far from any /Contents); and its offset."""
    _, end = first_signed_range(pdf)
    reader = PdfFileReader(BytesIO(pdf))
    page = reader.root["/Pages"]["/Kids"][0]
    contents = page.raw_get("/Contents")
    ref = contents[0] if isinstance(contents, list) else contents
    marker = f"\n{ref.idnum} {ref.generation} obj".encode()
    obj_at = pdf.index(marker)
    data_at = pdf.index(b"stream", obj_at) + len(b"stream\n")
    offset = data_at + 8
    assert offset < end, "the page content must lie in the first signed range"
    tampered = bytearray(pdf)
    tampered[offset] ^= 0x01
    return bytes(tampered), offset


def with_text_added_after_signing(pdf: bytes) -> bytes:
    """An incremental update that draws on the first page: not form filling."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    ref = writer.add_object(
        generic.StreamObject(stream_data=b"BT /F1 24 Tf 100 100 Td (10 diem) Tj ET")
    )
    writer.add_stream_to_page(0, ref)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.write_bytes(_sign_lta_in_process(source.read_bytes()))


def offline_report(pdf: bytes) -> dict[str, Any]:
    """hocba's report on `pdf` from the file's own validation data, without the
    signing times (they differ between records)."""
    from signer.pades.validate import verify_pdf_sync

    d = verify_pdf_sync(pdf, trust_roots=[dev_root()], role_by_field=role_by_field(),
                        allow_fetching=False).as_dict()
    for s in d["signatures"]:
        s.pop("signing_time")
    return d
