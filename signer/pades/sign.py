"""Sign one role's PAdES signature; finish a record as PAdES-B-LTA.

Every signature carries a signature timestamp and the revocation data of the
signer's chain (DSS). The first signature certifies the document (DocMDP) after
creating every role's empty field, so later signatures only fill fields. The last
step adds revocation data for everything and a document timestamp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from io import BytesIO

from asn1crypto import x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.sign import fields
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner, PdfTimeStamper, Signer
from pyhanko.sign.signers.pdf_signer import TimestampDSSContentSettings
from pyhanko.stamp import TextStampStyle

from signer.pades.context import SigningServices
from signer.policy import FieldSpec, Policy, RolePolicy

DOCMDP = {
    "no_changes": fields.MDPPerm.NO_CHANGES,
    "fill_forms": fields.MDPPerm.FILL_FORMS,
    "annotate": fields.MDPPerm.ANNOTATE,
}


@dataclass(frozen=True)
class RoleSigning:
    policy: Policy
    role: RolePolicy
    school_name: str
    certify: bool


def _field_spec(spec: FieldSpec, page_count: int) -> fields.SigFieldSpec:
    page = spec.page if spec.page >= 0 else page_count + spec.page
    page = min(max(page, 0), page_count - 1)
    return fields.SigFieldSpec(sig_field_name=spec.name, on_page=page, box=spec.box)


def existing_fields(pdf: bytes) -> dict[str, bool]:
    """Signature field names in the PDF -> whether they are filled."""
    reader = PdfFileReader(BytesIO(pdf))
    return {name: value is not None
            for name, value, _ref in fields.enumerate_sig_fields(reader)}


def _stamp_style(services: SigningServices, text: str) -> TextStampStyle:
    return TextStampStyle(
        stamp_text=text,
        text_box_style=TextBoxStyle(font=services.font_factory(8), font_size=8),
        timestamp_format="%d/%m/%Y %H:%M:%S %Z",
        border_width=1,
    )


def appearance_params(job: RoleSigning) -> dict[str, str]:
    """The stamp's %(school)s and %(role)s values."""
    return {"school": job.school_name, "role": job.role.title}


def build_pdf_signer(pdf: bytes, signer: Signer, job: RoleSigning,
                     services: SigningServices) -> tuple[IncrementalPdfFileWriter, PdfSigner]:
    """The writer over `pdf` (with every role's field added when certifying) and the
    PdfSigner for the role: field, stamp, DocMDP, PAdES, metadata, validation info.
    Shared by one-step signing (`sign_role`) and two-step signing (`twostep`)."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    page_count = int(writer.root["/Pages"]["/Count"])
    if job.certify:
        present = existing_fields(pdf)
        for role in job.policy.roles:
            if role.field.name not in present:
                fields.append_signature_field(writer, _field_spec(role.field, page_count))
    meta = PdfSignatureMetadata(
        field_name=job.role.field.name,
        md_algorithm=job.policy.hash_algorithm,
        subfilter=fields.SigSeedSubFilter.PADES,
        certify=job.certify,
        docmdp_permissions=DOCMDP[job.policy.docmdp],
        embed_validation_info=True,
        validation_context=services.validation_context(cache_key(signer.signing_cert)),
        signer_key_usage=set(job.role.key_usage),
        reason=f"{job.role.title} ({job.policy.title})",
        location=job.school_name,
    )
    pdf_signer = PdfSigner(
        meta, signer=signer, timestamper=services.timestamper,
        stamp_style=_stamp_style(services, job.role.appearance),
        new_field_spec=_field_spec(job.role.field, page_count),
    )
    return writer, pdf_signer


async def sign_role(pdf: bytes, signer: Signer, job: RoleSigning,
                    services: SigningServices) -> bytes:
    key = cache_key(signer.signing_cert)
    reserved = services.reserved_size(key)
    writer, pdf_signer = build_pdf_signer(pdf, signer, job, services)
    out = BytesIO()
    try:
        # A known size skips pyHanko's dry-run signature (and its 1.5x placeholder).
        await pdf_signer.async_sign_pdf(
            writer, output=out, appearance_text_params=appearance_params(job),
            bytes_reserved=reserved,
        )
    except SigningError:
        if reserved is None:
            raise
        services.forget_reserved_size(key)  # it grew (a longer TSA token?): estimate again
        return await sign_role(pdf, signer, job, services)
    signed = out.getvalue()
    vc = pdf_signer.signature_meta.validation_context
    if vc is not None and key is not None:
        services.remember(key, vc)
        services.remember_reserved_size(key, signature_size(signed, len(pdf)))
    return signed


_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")


def signature_size(signed: bytes, start: int) -> int | None:
    """DER length of the CMS of the first signature appended after `start` (read from
    its /Contents header; the rest of the placeholder is zero padding)."""
    match = _BYTE_RANGE.search(signed, start)
    if match is None:
        return None
    hex_start = int(match.group(2)) + 1  # after '<'
    header = signed[hex_start:hex_start + 8]
    if header[:4].lower() != b"3082":
        return None
    return 4 + int(header[4:8], 16)


async def finish_lta(pdf: bytes, policy: Policy, services: SigningServices) -> bytes:
    """Revocation data for everything in the file, then a document timestamp."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    out = BytesIO()
    vc = services.validation_context(DOCUMENT_TIMESTAMP_KEY)
    await PdfTimeStamper(services.timestamper).async_timestamp_pdf(
        writer, policy.hash_algorithm,
        validation_context=vc,
        output=out,
        dss_settings=TimestampDSSContentSettings(update_before_ts=True, include_vri=False),
    )
    services.remember(DOCUMENT_TIMESTAMP_KEY, vc)
    return out.getvalue()


DOCUMENT_TIMESTAMP_KEY = "document-timestamp"


def cache_key(cert: x509.Certificate | None) -> str | None:
    """Revocation data is cached per signer certificate."""
    return cert.sha256.hex() if cert is not None else None

