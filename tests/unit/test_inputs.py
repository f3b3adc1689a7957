import copy
import json
import random
import unicodedata
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from signer.errors import HocbaError, InvalidInput, PdfRejected, RequestError
from signer.inputs import PdfFacts, RecordMetadata, check_metadata, check_pdf
from tests.fixtures import make_bad_pdfs as pdfs

MAX = 10 * 1024 * 1024


# --- PDFs ------------------------------------------------------------------------------


def test_samples_are_there() -> None:
    # CI clones shared/ beside the repo; these must never be silently skipped
    assert pdfs.FPDF2_SAMPLE.is_file(), pdfs.FPDF2_SAMPLE
    assert pdfs.PDFA_SAMPLE.is_file(), pdfs.PDFA_SAMPLE


def test_fpdf2_sample_is_accepted() -> None:
    facts = check_pdf(pdfs.fpdf2_sample(), max_bytes=MAX)
    assert facts == PdfFacts(
        page_count=1,
        pdf_version="1.3",
        header_version="1.3",
        producer=None,
        has_acroform=False,
        existing_signature_fields=(),
        is_pdfa=False,
        pdfa_conformance=None,
        revisions=1,
    )


def test_pdfa_sample_is_accepted() -> None:
    facts = check_pdf(pdfs.pdfa_sample(), max_bytes=MAX)
    assert facts.page_count == 2
    assert facts.pdf_version == "1.6"
    assert facts.producer == "LibreOffice 7.4"
    assert facts.is_pdfa is True
    assert facts.pdfa_conformance == "2B"
    assert facts.existing_signature_fields == ()


def test_empty_signature_field_is_reported_not_refused() -> None:
    facts = check_pdf(pdfs.empty_signature_field_pdf(), max_bytes=MAX)
    assert facts.has_acroform is True
    assert facts.existing_signature_fields == ("Sig_GVCN",)
    assert facts.revisions == 2
    assert facts.header_version == "1.3"
    assert facts.pdf_version == "1.7"  # the update raised the catalog's /Version


ACCEPTED: list[Callable[[], bytes]] = [
    pdfs.minimal_pdf,
    pdfs.minimal_pdf_xref_stream,
    pdfs.raw_minimal_pdf,
    pdfs.open_action_destination_pdf,  # a plain destination is not an action
    pdfs.uri_link_pdf,
    pdfs.action_cycle_pdf,  # reference cycles terminate
    pdfs.dangling_reference_pdf,  # an undefined object is null
    pdfs.xmp_valid_pdf,
    pdfs.xmp_utf16_pdf,  # the packet header's BOM names the encoding
    pdfs.three_level_page_tree_pdf,
]


@pytest.fixture
def as_upload(tmp_path: Path) -> Iterator[Callable[[bytes, str], Any]]:
    """The upload as bytes, or as the seekable file a large HTTP upload arrives as."""
    opened: list[Any] = []

    def make(data: bytes, form: str) -> Any:
        if form == "bytes":
            return data
        path = tmp_path / f"upload-{len(opened)}.pdf"
        path.write_bytes(data)
        f = path.open("rb")
        opened.append(f)
        f.seek(3)  # wherever it stands
        return f

    yield make
    for f in opened:
        f.close()


@pytest.mark.parametrize("form", ["bytes", "file"])
@pytest.mark.parametrize("build", ACCEPTED, ids=lambda f: f.__name__)
def test_accepted(build: Callable[[], bytes], form: str, as_upload: Any) -> None:
    data = build()
    facts = check_pdf(as_upload(data, form), max_bytes=MAX)
    assert facts.page_count == 1
    assert facts == check_pdf(data, max_bytes=MAX)


# (builder, error class, status, code, fragment of the detail)
REFUSED: list[tuple[Callable[[], bytes], type[HocbaError], int, str, str]] = [
    (lambda: b"", PdfRejected, 400, "pdf_not_a_pdf", "%PDF-"),
    (pdfs.png_not_pdf, PdfRejected, 400, "pdf_not_a_pdf", "%PDF-"),
    (pdfs.junk_before_header_pdf, PdfRejected, 400, "pdf_not_a_pdf", "%PDF-"),
    (pdfs.encrypted_pdf, PdfRejected, 400, "pdf_encrypted", "encrypted"),
    (pdfs.truncated_sample_pdf, PdfRejected, 400, "pdf_malformed", "%%EOF"),
    (pdfs.no_eof_pdf, PdfRejected, 400, "pdf_malformed", "%%EOF"),
    (pdfs.hollowed_sample_pdf, PdfRejected, 400, "pdf_malformed", "cannot be read"),
    (pdfs.broken_xref_offset_pdf, PdfRejected, 400, "pdf_malformed", "cannot be read"),
    (pdfs.bad_startxref_pdf, PdfRejected, 400, "pdf_malformed", "cannot be read"),
    (pdfs.garbage_after_header_pdf, PdfRejected, 400, "pdf_malformed", "cannot be read"),
    (pdfs.deeply_nested_pdf, PdfRejected, 400, "pdf_malformed", "cannot be read"),
    (pdfs.zero_pages_pdf, PdfRejected, 400, "pdf_malformed", "no pages"),
    (pdfs.count_mismatch_pdf, PdfRejected, 400, "pdf_malformed", "/Count 7"),
    (pdfs.page_tree_cycle_pdf, PdfRejected, 400, "pdf_malformed", "twice"),
    (pdfs.signed_pdf, InvalidInput, 422, "pdf_already_signed", "'Sig_GVCN' is signed"),
    # what pyHanko cannot sign (issue 14), refused as pyHanko reads it
    (pdfs.xmp_invalid_xml_pdf, InvalidInput, 422, "pdf_xmp_invalid", "XmpXmlProcessingError"),
    (pdfs.xmp_not_utf8_pdf, InvalidInput, 422, "pdf_xmp_invalid", "UnicodeDecodeError"),
    (pdfs.xmp_duplicate_field_pdf, InvalidInput, 422, "pdf_xmp_invalid", "Duplicate field"),
    (pdfs.xmp_null_pdf, InvalidInput, 422, "pdf_xmp_invalid", "/Metadata is null"),
    (pdfs.direct_kid_pdf, PdfRejected, 400, "pdf_page_tree_invalid", "inside /Kids"),
    (pdfs.inner_count_mismatch_pdf, PdfRejected, 400, "pdf_page_tree_invalid", "/Count 5"),
    (pdfs.untyped_leaf_pdf, PdfRejected, 400, "pdf_page_tree_invalid", "not of /Type /Page"),
    (pdfs.dangling_annotation_pdf, PdfRejected, 400, "pdf_page_tree_invalid",
     "annotation that does not exist"),
    (pdfs.deep_page_tree_pdf, InvalidInput, 422, "pdf_too_complex", "32 levels deep"),
    (pdfs.declared_pages_pdf, InvalidInput, 422, "pdf_too_complex", "1000000 pages"),
    (pdfs.declared_objects_pdf, InvalidInput, 422, "pdf_too_complex", "10000000 objects"),
    (pdfs.nested_catalog_pdf, InvalidInput, 422, "pdf_too_complex", "64 levels deep"),
    (
        pdfs.open_action_js_pdf,
        InvalidInput,
        422,
        "pdf_active_content",
        "JavaScript action in /Root/OpenAction",
    ),
    (
        pdfs.open_action_goto_pdf,
        InvalidInput,
        422,
        "pdf_active_content",
        "action run on open (/S /GoTo) in /Root/OpenAction",
    ),
    (
        pdfs.js_name_tree_pdf,
        InvalidInput,
        422,
        "pdf_active_content",
        "JavaScript name tree (/JavaScript) in /Root/Names",
    ),
    (
        pdfs.launch_link_pdf,
        InvalidInput,
        422,
        "pdf_active_content",
        "Launch action in /Root/Pages/Kids[0]/Annots[0]/A",
    ),
    (pdfs.submit_form_link_pdf, InvalidInput, 422, "pdf_active_content", "SubmitForm action"),
    (pdfs.goto_remote_link_pdf, InvalidInput, 422, "pdf_active_content", "GoToR action"),
    (
        pdfs.js_link_chain_pdf,
        InvalidInput,
        422,
        "pdf_active_content",
        "JavaScript action in /Root/Pages/Kids[0]/Annots[0]/A/Next[0]",
    ),
    (
        pdfs.page_aa_pdf,
        InvalidInput,
        422,
        "pdf_active_content",
        "additional actions (/AA) in /Root/Pages/Kids[0]",
    ),
    (pdfs.catalog_aa_pdf, InvalidInput, 422, "pdf_active_content", "(/AA) in /Root"),
    (pdfs.embedded_file_pdf, InvalidInput, 422, "pdf_active_content", "embedded files"),
    (pdfs.xfa_pdf, InvalidInput, 422, "pdf_active_content", "XFA form (/XFA)"),
    (pdfs.needs_rendering_pdf, InvalidInput, 422, "pdf_active_content", "/NeedsRendering"),
    (pdfs.richmedia_annotation_pdf, InvalidInput, 422, "pdf_active_content", "RichMedia"),
    (
        pdfs.orphan_js_pdf,
        InvalidInput,
        422,
        "pdf_active_content",
        "(not reachable from the catalog)",
    ),
    (pdfs.js_in_object_stream_pdf, InvalidInput, 422, "pdf_active_content", "JavaScript"),
    (pdfs.indirect_js_name_pdf, InvalidInput, 422, "pdf_active_content", "JavaScript action"),
    (
        pdfs.incremental_js_on_sample_pdf,
        InvalidInput,
        422,
        "pdf_active_content",
        "JavaScript action in /Root/OpenAction",
    ),
]


@pytest.mark.parametrize(
    ("build", "cls", "status", "code", "fragment"),
    REFUSED,
    ids=[getattr(r[0], "__name__", "empty").removesuffix("_pdf") for r in REFUSED],
)
@pytest.mark.parametrize("form", ["bytes", "file"])
def test_refused(
    build: Callable[[], bytes], cls: type[HocbaError], status: int, code: str, fragment: str,
    form: str, as_upload: Any,
) -> None:
    with pytest.raises(cls) as caught:
        check_pdf(as_upload(build(), form), max_bytes=MAX)
    err = caught.value
    assert (err.status, err.code) == (status, code)
    assert fragment in err.detail
    assert err.problem()["code"] == code


@pytest.mark.parametrize("form", ["bytes", "file"])
def test_too_large(form: str, as_upload: Any) -> None:
    data = pdfs.minimal_pdf()
    with pytest.raises(RequestError) as caught:
        check_pdf(as_upload(data, form), max_bytes=len(data) - 1)
    assert (caught.value.status, caught.value.code) == (413, "pdf_too_large")
    assert check_pdf(as_upload(data, form), max_bytes=len(data)).page_count == 1


def test_limits_are_the_settings_defaults_and_apply() -> None:
    from signer.inputs import pdfscan
    from signer.settings import Settings

    settings = Settings()
    assert (settings.max_pdf_pages, settings.max_pdf_objects, settings.max_pdf_tree_depth,
            settings.max_pdf_nesting) == (pdfscan.DEFAULT_MAX_PAGES, pdfscan.DEFAULT_MAX_OBJECTS,
                                          pdfscan.DEFAULT_MAX_TREE_DEPTH,
                                          pdfscan.DEFAULT_MAX_NESTING)
    sample = pdfs.pdfa_sample()  # 2 pages, 288 objects
    assert check_pdf(sample, max_bytes=MAX, max_pages=2).page_count == 2
    for limits, fragment in [({"max_pages": 1}, "2 pages"),
                             ({"max_objects": 100}, "288 objects"),
                             ({"max_tree_depth": 0}, "0 levels deep")]:
        with pytest.raises(InvalidInput) as caught:
            check_pdf(sample, max_bytes=MAX, **limits)
        assert caught.value.code == "pdf_too_complex" and fragment in caught.value.detail
    assert check_pdf(pdfs.three_level_page_tree_pdf(), max_bytes=MAX,
                     max_tree_depth=3).page_count == 1
    with pytest.raises(InvalidInput, match="more than 2 levels deep"):
        check_pdf(pdfs.three_level_page_tree_pdf(), max_bytes=MAX, max_tree_depth=2)
    assert check_pdf(pdfs.nested_catalog_pdf(20), max_bytes=MAX).page_count == 1


def test_counts_are_read_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A document declaring too many objects never reaches the parser."""
    from signer.inputs import pdfscan

    def no_parser(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("parsed")

    monkeypatch.setattr(pdfscan, "PdfFileReader", no_parser)
    with pytest.raises(InvalidInput) as caught:
        check_pdf(pdfs.declared_objects_pdf(600_000), max_bytes=MAX)
    assert caught.value.code == "pdf_too_complex"


def test_parser_errors_are_chained() -> None:
    with pytest.raises(PdfRejected) as caught:
        check_pdf(pdfs.broken_xref_offset_pdf(), max_bytes=MAX)
    assert caught.value.__cause__ is not None
    assert not isinstance(caught.value.__cause__, HocbaError)


def test_detail_never_carries_document_bytes() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_pdf(pdfs.open_action_js_pdf(), max_bytes=MAX)
    assert "app.alert" not in caught.value.detail


def test_detail_lists_a_bounded_number_of_findings() -> None:
    with pytest.raises(InvalidInput) as caught:
        check_pdf(pdfs.embedded_file_pdf(), max_bytes=MAX)
    assert caught.value.detail.count(";") <= 5


def test_mutated_files_only_raise_our_errors() -> None:
    """Random byte edits of good files: every outcome is a PdfFacts or one of our errors."""
    rng = random.Random(20241123)
    seeds = [pdfs.fpdf2_sample(), pdfs.pdfa_sample(), pdfs.minimal_pdf_xref_stream()]
    outcomes: set[str] = set()
    for _ in range(300):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data))
            if rng.random() < 0.7:
                data[at] = rng.randrange(256)
            else:
                del data[at : at + rng.randint(1, 40)]
        try:
            check_pdf(bytes(data), max_bytes=MAX)
            outcomes.add("accepted")
        except HocbaError as e:
            assert e.status in (400, 422), e
            outcomes.add(e.code)
    assert "pdf_malformed" in outcomes


# --- metadata ---------------------------------------------------------------------------

TYPES = {"hoc_ba_tieu_hoc", "hoc_ba_thcs", "hoc_ba_thpt"}
TODAY = date(2025, 6, 1)


def good() -> dict[str, Any]:
    return {
        "record_type": "hoc_ba_tieu_hoc",
        "school": {"code": "DEMO-SCHOOL-1", "name": "Trường Tiểu học Mẫu"},
        "student": {
            "id_number": "001215012345",
            "full_name": "Nguyễn Văn An",
            "date_of_birth": "2015-09-02",
            "student_code": "HS-0042",
        },
        "school_year": "2024-2025",
        "grade": 4,
        "class_name": "4A",
        "supersedes": None,
    }


def check(raw: Any) -> RecordMetadata:
    return check_metadata(raw, known_record_types=TYPES, today=TODAY)


def with_(path: str, value: Any) -> dict[str, Any]:
    """good() with the dotted ``path`` set to ``value`` (or removed, for ``...``)."""
    doc = good()
    *parents, last = path.split(".")
    target = doc
    for p in parents:
        target = target[p]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return doc


@pytest.mark.parametrize("form", ["dict", "str", "bytes", "bytes-bom"])
def test_good_metadata(form: str) -> None:
    raw: Any = {
        "dict": good(),
        "str": json.dumps(good(), ensure_ascii=False),
        "bytes": json.dumps(good(), ensure_ascii=False).encode(),
        "bytes-bom": b"\xef\xbb\xbf" + json.dumps(good()).encode(),
    }[form]
    meta = check(raw)
    assert meta == RecordMetadata(
        record_type="hoc_ba_tieu_hoc",
        school_code="DEMO-SCHOOL-1",
        school_name="Trường Tiểu học Mẫu",
        student_id_number="001215012345",
        student_full_name="Nguyễn Văn An",
        student_date_of_birth=date(2015, 9, 2),
        student_code="HS-0042",
        school_year="2024-2025",
        grade=4,
        class_name="4A",
        supersedes=None,
        raw={},
    )
    assert meta.raw == good()


def test_optional_fields_may_be_absent() -> None:
    doc = with_("supersedes", ...)
    del doc["student"]["student_code"]
    meta = check(doc)
    assert meta.student_code is None and meta.supersedes is None
    assert meta.raw["supersedes"] is None and meta.raw["student"]["student_code"] is None


def test_supersedes() -> None:
    assert check(with_("supersedes", "rec_01HV")).supersedes == "rec_01HV"


def test_names_are_trimmed_and_nfc_normalized() -> None:
    decomposed = unicodedata.normalize("NFD", "  Nguyễn   Văn An\t")
    assert decomposed != unicodedata.normalize("NFC", decomposed)
    meta = check(with_("student.full_name", decomposed))
    assert meta.student_full_name == "Nguyễn Văn An"
    assert meta.student_full_name == unicodedata.normalize("NFC", "Nguyễn Văn An")
    assert meta.raw["student"]["full_name"] == "Nguyễn Văn An"


def test_name_length_limit() -> None:
    assert check(with_("student.full_name", "A" * 200)).student_full_name == "A" * 200
    # 200 characters after NFC even if longer decomposed
    nfd = unicodedata.normalize("NFD", "Ễ" * 200)
    assert len(nfd) > 200
    assert check(with_("student.full_name", nfd)).student_full_name == "Ễ" * 200


def test_samples_metadata_is_accepted() -> None:
    # the pupils printed in the shared sample PDFs
    tieu_hoc = with_("student.id_number", "001217000777")
    tieu_hoc["student"].update(full_name="Phạm Gia Huy", date_of_birth="2017-11-20")
    tieu_hoc.update(grade=2, class_name="2B")
    assert check(tieu_hoc).student_id_number == "001217000777"

    thcs = with_("record_type", "hoc_ba_thcs")
    thcs["student"].update(
        id_number="079211004321", full_name="Lê Hoàng Minh Khôi", date_of_birth="2011-03-14"
    )
    thcs.update(grade=8, class_name="8/3")
    assert check(thcs).grade == 8


@pytest.mark.parametrize(
    "raw",
    ["", "not json", "{", "[1, 2]", '"a string"', "null", "42", b"\xff\xfe{}", "{\"a\": NaN}",
     '{"grade": 1, "grade": 2}', "[" * 100_000 + "]" * 100_000],
    ids=["empty", "text", "unclosed", "array", "string", "null", "number", "not-utf8", "nan",
         "duplicate-key", "deep"],
)  # fmt: skip
def test_invalid_json(raw: str | bytes) -> None:
    with pytest.raises(RequestError) as caught:
        check(raw)
    assert (caught.value.status, caught.value.code) == (400, "metadata_invalid_json")
    assert not isinstance(caught.value, InvalidInput)


# (path, value or ... to remove, the field error's path, a fragment of its message)
FIELD_PROBLEMS: list[tuple[str, Any, str, str]] = [
    ("record_type", ..., "record_type", "required"),
    ("record_type", 5, "record_type", "string"),
    ("school", ..., "school", "required"),
    ("school", "DEMO", "school", "object"),
    ("school.code", None, "school.code", "required"),
    ("school.code", "  ", "school.code", "empty"),
    ("school.name", ["x"], "school.name", "string"),
    ("student", ..., "student", "required"),
    ("student.id_number", 1215012345, "student.id_number", "string"),
    ("student.full_name", "   ", "student.full_name", "empty"),
    ("student.full_name", "A" * 201, "student.full_name", "at most 200"),
    ("student.full_name", "An\x00", "student.full_name", "control"),
    ("student.full_name", "An\u200b", "student.full_name", "control"),
    ("student.date_of_birth", ..., "student.date_of_birth", "required"),
    ("student.date_of_birth", "02/09/2015", "student.date_of_birth", "YYYY-MM-DD"),
    ("student.date_of_birth", "20150902", "student.date_of_birth", "YYYY-MM-DD"),
    ("student.date_of_birth", "2015-02-30", "student.date_of_birth", "calendar"),
    ("student.date_of_birth", "2025-06-02", "student.date_of_birth", "future"),
    ("student.student_code", "", "student.student_code", "empty"),
    ("student.student_code", 42, "student.student_code", "string"),
    ("school_year", "2024/2025", "school_year", "2024-2025"),
    ("school_year", "2024-2026", "school_year", "follow"),
    ("school_year", "2025-2024", "school_year", "follow"),
    ("school_year", 2024, "school_year", "string"),
    ("grade", 0, "grade", "between 1 and 12"),
    ("grade", 13, "grade", "between 1 and 12"),
    ("grade", "4", "grade", "integer"),
    ("grade", 4.0, "grade", "integer"),
    ("grade", True, "grade", "integer"),
    ("class_name", ..., "class_name", "required"),
    ("supersedes", "", "supersedes", "empty"),
    ("supersedes", 7, "supersedes", "string"),
    ("extra", 1, "extra", "unknown field"),
    ("student.dob", "2015-09-02", "student.dob", "unknown field"),
    ("school.address", "Hà Nội", "school.address", "unknown field"),
]


@pytest.mark.parametrize(
    ("path", "value", "field", "fragment"),
    FIELD_PROBLEMS,
    ids=[f"{p[0]}={p[1]!r}"[:40] for p in FIELD_PROBLEMS],
)
def test_field_problem(path: str, value: Any, field: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check(with_(path, value))
    err = caught.value
    assert (err.status, err.code) == (422, "metadata_invalid")
    assert [e.field for e in err.errors] == [field]
    assert fragment in err.errors[0].message
    assert err.problem()["errors"][0]["field"] == field


def test_all_problems_are_listed_at_once() -> None:
    doc = good()
    doc["grade"] = 99
    doc["school_year"] = "2024"
    doc["typo"] = True
    doc["record_type"] = "hoc_ba_dai_hoc"  # unknown, reported too
    doc["student"]["full_name"] = ""
    doc["student"]["id_number"] = "003215012345"  # bad province, reported too
    with pytest.raises(InvalidInput) as caught:
        check(doc)
    assert caught.value.code == "metadata_invalid"
    assert sorted(e.field for e in caught.value.errors) == sorted(
        ["grade", "school_year", "typo", "record_type", "student.full_name", "student.id_number"]
    )


def test_unknown_record_type() -> None:
    with pytest.raises(InvalidInput) as caught:
        check(with_("record_type", "hoc_ba_dai_hoc"))
    err = caught.value
    assert (err.status, err.code) == (422, "record_type_unknown")
    assert [e.field for e in err.errors] == ["record_type"]
    assert "hoc_ba_thcs" in err.errors[0].message


@pytest.mark.parametrize(
    ("id_number", "dob"),
    [
        ("00121501234", "2015-09-02"),  # 11 digits
        ("003215012345", "2015-09-02"),  # no such province
        ("001015012345", "2015-09-02"),  # century digit says 1900s
        ("001216012345", "2015-09-02"),  # year digits say 2016
        ("", "2015-09-02"),
    ],
)
def test_invalid_student_id(id_number: str, dob: str) -> None:
    doc = with_("student.id_number", id_number)
    doc["student"]["date_of_birth"] = dob
    with pytest.raises(InvalidInput) as caught:
        check(doc)
    err = caught.value
    assert (err.status, err.code) == (422, "student_id_invalid")
    assert err.errors and {e.field for e in err.errors} == {"student.id_number"}


def test_default_today_refuses_a_future_birth() -> None:
    doc = with_("student.date_of_birth", "2999-01-01")
    with pytest.raises(InvalidInput) as caught:
        check_metadata(doc, known_record_types=TYPES)
    assert caught.value.code == "metadata_invalid"


def test_input_dict_is_not_modified() -> None:
    doc = with_("student.full_name", "  An  ")
    before = copy.deepcopy(doc)
    check(doc)
    assert doc == before
