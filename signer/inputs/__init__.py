"""Checks on what school systems upload: the rendered PDF and its JSON metadata.

Both checks are pure functions over bytes/data (no I/O) that either return typed
facts or raise one of our request errors with a stable ``code``:

``check_pdf``
    413 ``pdf_too_large``; 400 ``pdf_not_a_pdf``, ``pdf_encrypted``, ``pdf_malformed``,
    ``pdf_page_tree_invalid``; 422 ``pdf_already_signed``, ``pdf_active_content``,
    ``pdf_xmp_invalid``, ``pdf_too_complex`` (pages, objects, page tree depth over the
    limits). What it accepts, every signing path can sign.
``check_metadata``
    400 ``metadata_invalid_json``; 422 ``metadata_invalid``, ``record_type_unknown``,
    ``student_id_invalid`` (all field problems are listed at once in ``errors``).

`pdfscan` holds the PDF check, `metadata` the metadata check.
"""

from signer.inputs.metadata import RecordMetadata, check_metadata
from signer.inputs.pdfscan import PdfFacts, check_pdf

__all__ = [
    "PdfFacts",
    "RecordMetadata",
    "check_metadata",
    "check_pdf",
]
