"""Sign one role's PAdES signature; finish a record as PAdES-B-LTA.

Every signature carries a signature timestamp. The first signature certifies the
document (DocMDP) after creating every role's empty field, so later signatures only
fill fields. The last step adds, in one DSS update, the chains and revocation data of
every signer and timestamp authority in the file (checked when each key was allowed to
sign, and kept per certificate), then a document timestamp: PAdES-B-LTA.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from io import BytesIO
from typing import Any, BinaryIO

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.sign import fields
from pyhanko.sign.general import SigningError, extract_certificate_info
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner, PdfTimeStamper, Signer
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.generic_cms import extract_tst_data_iter
from pyhanko.stamp import TextStampStyle

from signer.pades.context import SigningServices, cache_key
from signer.policy import FieldSpec, Policy, RolePolicy
from signer.truststore import SIGNING, TIMESTAMPING

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
    return _fields_of(PdfFileReader(BytesIO(pdf)))


def _fields_of(reader: PdfFileReader) -> dict[str, bool]:
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


def build_pdf_signer(pdf: bytes | BinaryIO, signer: Signer, job: RoleSigning,
                     services: SigningServices, *, embed_validation_info: bool = True
                     ) -> tuple[IncrementalPdfFileWriter, PdfSigner]:
    """The writer over `pdf` (with every role's field added when certifying) and the
    PdfSigner for the role: field, stamp, DocMDP, PAdES, metadata, and with
    `embed_validation_info` a DSS update of the signer's revocation data right after
    the signature. Shared by one-step signing (`sign_role`, which leaves the DSS to
    `finish_lta`) and two-step signing (`twostep`)."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf) if isinstance(pdf, bytes) else pdf)
    page_count = int(writer.root["/Pages"]["/Count"])
    if job.certify:
        present = _fields_of(writer.prev)
        for role in job.policy.roles:
            if role.field.name not in present:
                fields.append_signature_field(writer, _field_spec(role.field, page_count))
    meta = PdfSignatureMetadata(
        field_name=job.role.field.name,
        md_algorithm=job.policy.hash_algorithm,
        subfilter=fields.SigSeedSubFilter.PADES,
        certify=job.certify,
        docmdp_permissions=DOCMDP[job.policy.docmdp],
        embed_validation_info=embed_validation_info,
        validation_context=(services.validation_context(cache_key(signer.signing_cert))
                            if embed_validation_info else None),
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
    """The role's signature with its timestamp; its validation data waits for
    `finish_lta`."""
    out = BytesIO()
    await sign_role_to(BytesIO(pdf), out, signer, job, services)
    return out.getvalue()


async def sign_role_to(pdf: BinaryIO, out: BinaryIO, signer: Signer, job: RoleSigning,
                       services: SigningServices) -> None:
    """`sign_role` from a seekable file to an empty, readable and seekable one (a large
    record need not be in memory)."""
    key = cache_key(signer.signing_cert)
    reserved = services.reserved_size(key)
    signer.embed_roots = False  # validators bring their own anchors; the DSS has it too
    size = pdf.seek(0, os.SEEK_END)
    pdf.seek(0)
    writer, pdf_signer = build_pdf_signer(pdf, signer, job, services,
                                          embed_validation_info=False)
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
        out.seek(0)
        out.truncate()
        return await sign_role_to(pdf, out, signer, job, services)
    out.seek(size)
    services.remember_reserved_size(key, signature_size(out.read(), size))


_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")


def signature_size(revision: bytes, offset: int) -> int | None:
    """DER length of the CMS of the first signature in `revision`, the bytes of the file
    from `offset` on (read from its /Contents header; the rest is zero padding)."""
    match = _BYTE_RANGE.search(revision)
    if match is None:
        return None
    hex_start = int(match.group(2)) + 1 - offset  # after '<'
    header = revision[hex_start:hex_start + 8] if hex_start >= 0 else b""
    if header[:4].lower() != b"3082":
        return None
    return 4 + int(header[4:8], 16)


async def finish_lta(pdf: bytes, policy: Policy, services: SigningServices) -> bytes:
    """One DSS update with the validation data of every signature and timestamp in the
    file and of the TSA, then a document timestamp, in one incremental update."""
    out = BytesIO()
    await finish_lta_to(BytesIO(pdf), out, policy, services)
    return out.getvalue()


async def finish_lta_to(pdf: BinaryIO, out: BinaryIO, policy: Policy,
                        services: SigningServices, *, tight: bool = True) -> None:
    """`finish_lta` from a seekable file to an empty, readable and seekable one."""
    await _timestamp_lta_to(pdf, out, policy.hash_algorithm, services, renewal=False,
                            tight=tight)


async def renew_lta_to(pdf: BinaryIO, out: BinaryIO, hash_algorithm: str,
                       services: SigningServices) -> None:
    """Renew an archived record (PAdES-B-LTA augmentation, ETSI EN 319 142-1 5.5): the
    chain and revocation data, fetched now, of its newest document timestamp's TSA and of
    the TSA about to time-stamp, in one DSS update, then a new document timestamp.
    Raises pyhanko_certvalidator's errors when the newest timestamp can no longer be
    validated (its TSA certificate expired or was revoked: too late to renew)."""
    await _timestamp_lta_to(pdf, out, hash_algorithm, services, renewal=True, tight=True)


async def _timestamp_lta_to(pdf: BinaryIO, out: BinaryIO, hash_algorithm: str,
                            services: SigningServices, *, renewal: bool, tight: bool) -> None:
    pdf.seek(0)
    writer = IncrementalPdfFileWriter(pdf)
    tsa_token = await services.timestamper.async_dummy_response(hash_algorithm)
    # (signed data, whether its signer is a TSA)
    signed_datas: list[tuple[Any, bool]] = [(tsa_token["content"], True)]
    if renewal:
        stamps = sorted(writer.prev.embedded_timestamp_signatures,
                        key=lambda ts: int(ts.signed_revision))
        if not stamps:
            raise SigningError("no document timestamp to renew")
        signed_datas.append((stamps[-1].signed_data, True))
    else:
        for sig in writer.prev.embedded_signatures:
            signed_datas.append((sig.signed_data, False))
            for signed in (False, True):
                signed_datas.extend((tst, True) for tst in
                                    extract_tst_data_iter(sig.signer_info, signed=signed))
    paths, keys = [], []
    for signed_data, by_tsa in signed_datas:
        info = extract_certificate_info(signed_data)
        key = cache_key(info.signer_cert)
        if key not in keys:
            paths.append(await services.validated_path(
                info.signer_cert, list(info.other_certs),
                purpose=TIMESTAMPING if by_tsa else SIGNING))
            keys.append(key)
    DocumentSecurityStore.supply_dss_in_writer(
        writer, sig_contents=None, paths=paths,
        validation_context=services.revinfo_context(keys))
    _compress_new_dss_streams(writer)
    # Room for a token the size of the TSA's last one plus a margin (pyHanko's own
    # estimate reserves 1.5x); should a token ever outgrow it, pyHanko's estimate.
    reserved = 2 * (len(tsa_token.dump()) + services.RESERVE_MARGIN) if tight else None
    try:
        await PdfTimeStamper(services.timestamper).async_timestamp_pdf(
            writer, hash_algorithm, output=out, bytes_reserved=reserved)
    except SigningError:
        if not tight:
            raise
        out.seek(0)
        out.truncate()
        await _timestamp_lta_to(pdf, out, hash_algorithm, services, renewal=renewal,
                                tight=False)


def _compress_new_dss_streams(writer: IncrementalPdfFileWriter) -> None:
    """Flate the certificates, OCSP responses and CRLs this update adds to the DSS
    (about a tenth of their size; earlier revisions are left as they are)."""
    dss = writer.root.get("/DSS")
    if dss is None:
        return
    dss = dss.get_object()
    for key in ("/Certs", "/OCSPs", "/CRLs"):
        for ref in dss.get(key, ()):
            if (ref.generation, ref.idnum) in writer.objects:
                ref.get_object().compress()
