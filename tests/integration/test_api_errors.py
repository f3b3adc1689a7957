"""Errors through the HTTP API: each bad request gets its status and stable problem+json
`code`, and changes nothing (index rows and store files compared before and after).
Also auth, idempotency, verification of a foreign signature, the public page and ops."""

from __future__ import annotations

import copy
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from tests.fixtures import make_bad_pdfs as bad
from tests.integration.helpers import (
    PROBLEM_JSON,
    auth,
    get_record,
    make_app,
    metadata,
    problem,
    sign,
    state_of,
    upload,
    verify,
)

pytestmark = pytest.mark.integration

FPDF2 = "hoc-ba-tieu-hoc-fpdf2.pdf"
PDFA = "hoc-ba-thcs-libreoffice-pdfa.pdf"
SCHOOL_1_ROLES = (("teacher", "school-1-teacher"), ("principal", "school-1-principal"),
                  ("seal", "school-1-seal"))


# --- fixtures: one app and a few records per module -----------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, service_env: dict[str, str],
        responder: Any) -> Any:
    responder.start()
    return make_app(service_env, tmp_path_factory.mktemp("api-errors"))


@pytest.fixture
def http(app: Any, responder: Any) -> Any:
    responder.start()  # another module may have stopped it
    return app.test_client()


@pytest.fixture(scope="module")
def key1(api_keys: dict[str, str]) -> str:
    return api_keys["school-1"]


def _create(app: Any, key: str, pdf: bytes, meta: dict[str, Any]) -> dict[str, Any]:
    resp = upload(app.test_client(), key, pdf, meta)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body: dict[str, Any] = resp.get_json()
    return body


def _sign_ok(app: Any, key: str, record_id: str, role: str, signer_key: str) -> dict[str, Any]:
    resp = sign(app.test_client(), key, record_id, role, signer_key)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body: dict[str, Any] = resp.get_json()
    return body


@pytest.fixture(scope="module")
def awaiting(app: Any, key1: str, samples: dict[str, bytes]) -> dict[str, Any]:
    """A record with no signature yet: the FPDF2 pupil, 2024-2025."""
    return _create(app, key1, samples[FPDF2], metadata(FPDF2))


@pytest.fixture(scope="module")
def teacher_signed(app: Any, key1: str, samples: dict[str, bytes]) -> dict[str, Any]:
    record = _create(app, key1, samples[FPDF2], metadata(FPDF2, school_year="2023-2024"))
    return _sign_ok(app, key1, record["id"], "teacher", "school-1-teacher")


@pytest.fixture(scope="module")
def archived(app: Any, key1: str, samples: dict[str, bytes]) -> dict[str, Any]:
    record = _create(app, key1, samples[PDFA], metadata(PDFA, school_year="2023-2024"))
    for role, signer_key in SCHOOL_1_ROLES:
        record = _sign_ok(app, key1, record["id"], role, signer_key)
    assert record["status"] == "archived"
    doc = app.test_client().get(f"/v1/records/{record['id']}/document", headers=auth(key1))
    assert doc.status_code == 200
    return {"record": record, "pdf": doc.data}


# --- A. bad input on POST /v1/records -------------------------------------------------


def _without(meta: dict[str, Any], *paths: str) -> dict[str, Any]:
    out = copy.deepcopy(meta)
    for path in paths:
        *parents, last = path.split(".")
        node = out
        for p in parents:
            node = node[p]
        del node[last]
    return out


def _student(meta: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(meta)
    out["student"].update(changes)
    return out


# A pupil with no record in this module's index: every case below would be accepted but
# for the one thing it gets wrong.
GOOD_META = metadata(PDFA)


@dataclass(frozen=True)
class UploadCase:
    name: str
    pdf: Callable[[], bytes]
    meta: dict[str, Any] | str
    status: int
    code: str
    fields: frozenset[str] = field(default_factory=frozenset)


UPLOAD_CASES = [
    UploadCase("png_not_a_pdf", bad.png_not_pdf, GOOD_META, 400, "pdf_not_a_pdf"),
    UploadCase("junk_before_header", bad.junk_before_header_pdf, GOOD_META, 400,
               "pdf_not_a_pdf"),
    UploadCase("encrypted", bad.encrypted_pdf, GOOD_META, 400, "pdf_encrypted"),
    UploadCase("truncated", bad.truncated_sample_pdf, GOOD_META, 400, "pdf_malformed"),
    UploadCase("no_eof", bad.no_eof_pdf, GOOD_META, 400, "pdf_malformed"),
    UploadCase("hollowed", bad.hollowed_sample_pdf, GOOD_META, 400, "pdf_malformed"),
    UploadCase("garbage_body", bad.garbage_after_header_pdf, GOOD_META, 400, "pdf_malformed"),
    UploadCase("deeply_nested", bad.deeply_nested_pdf, GOOD_META, 400, "pdf_malformed"),
    UploadCase("javascript_open_action", bad.open_action_js_pdf, GOOD_META, 422,
               "pdf_active_content"),
    UploadCase("javascript_name_tree", bad.js_name_tree_pdf, GOOD_META, 422,
               "pdf_active_content"),
    UploadCase("launch_action", bad.launch_link_pdf, GOOD_META, 422, "pdf_active_content"),
    UploadCase("open_action_added_incrementally", bad.incremental_js_on_sample_pdf,
               GOOD_META, 422, "pdf_active_content"),
    UploadCase("already_signed", bad.signed_pdf, GOOD_META, 422, "pdf_already_signed"),
    UploadCase("metadata_missing_fields", bad.pdfa_sample,
               _without(GOOD_META, "student.full_name", "school_year", "grade"), 422,
               "metadata_invalid", frozenset({"student.full_name", "school_year", "grade"})),
    UploadCase("metadata_missing_school", bad.pdfa_sample, _without(GOOD_META, "school"), 422,
               "metadata_invalid", frozenset({"school"})),
    UploadCase("id_number_unknown_province", bad.pdfa_sample,
               _student(GOOD_META, id_number="003211004321"), 422, "student_id_invalid",
               frozenset({"student.id_number"})),
    UploadCase("id_number_eleven_digits", bad.pdfa_sample,
               _student(GOOD_META, id_number="07921100432"), 422, "student_id_invalid",
               frozenset({"student.id_number"})),
    UploadCase("id_number_wrong_birth_year", bad.pdfa_sample,
               _student(GOOD_META, id_number="079215004321"), 422, "student_id_invalid",
               frozenset({"student.id_number"})),
    UploadCase("record_type_unknown", bad.pdfa_sample,
               {**GOOD_META, "record_type": "hoc_ba_dai_hoc"}, 422, "record_type_unknown",
               frozenset({"record_type"})),
    UploadCase("metadata_not_json", bad.pdfa_sample, "{record_type: hoc_ba_thcs", 400,
               "metadata_invalid_json"),
    UploadCase("metadata_json_array", bad.pdfa_sample, json.dumps([GOOD_META]), 400,
               "metadata_invalid_json"),
    UploadCase("metadata_empty", bad.pdfa_sample, "", 400, "metadata_invalid_json"),
]


@pytest.mark.parametrize("case", UPLOAD_CASES, ids=lambda c: c.name)
def test_bad_upload_is_refused_and_changes_nothing(app: Any, http: Any, key1: str,
                                                   awaiting: dict[str, Any],
                                                   case: UploadCase) -> None:
    before = state_of(app)
    body = problem(upload(http, key1, case.pdf(), case.meta), case.status, case.code)
    if case.fields:
        assert case.fields <= {e["field"] for e in body.get("errors", [])}, body
    assert state_of(app) == before


def _multipart(parts: dict[str, Any]) -> dict[str, Any]:
    return {"data": parts, "content_type": "multipart/form-data"}


MULTIPART_CASES: list[tuple[str, Callable[[bytes, str], dict[str, Any]], int, str]] = [
    ("no_document_part", lambda pdf, meta: _multipart({"metadata": meta}), 422,
     "multipart_missing_part"),
    ("no_metadata_part",
     lambda pdf, meta: _multipart({"document": (io.BytesIO(pdf), "r.pdf")}), 422,
     "multipart_missing_part"),
    ("no_parts", lambda pdf, meta: _multipart({"note": "hello"}), 422,
     "multipart_missing_part"),
    ("json_body", lambda pdf, meta: {"json": json.loads(meta)}, 415, "multipart_required"),
    ("raw_pdf_body", lambda pdf, meta: {"data": pdf, "content_type": "application/pdf"}, 415,
     "multipart_required"),
    ("form_urlencoded", lambda pdf, meta: {"data": {"metadata": meta}}, 415,
     "multipart_required"),
    ("no_body", lambda pdf, meta: {}, 415, "multipart_required"),
]


@pytest.mark.parametrize(("build", "status", "code"), [c[1:] for c in MULTIPART_CASES],
                         ids=[c[0] for c in MULTIPART_CASES])
def test_bad_request_shape_is_refused_and_changes_nothing(
        app: Any, http: Any, key1: str, samples: dict[str, bytes], awaiting: dict[str, Any],
        build: Callable[[bytes, str], dict[str, Any]], status: int, code: str) -> None:
    before = state_of(app)
    kwargs = build(samples[PDFA], json.dumps(GOOD_META, ensure_ascii=False))
    body = problem(http.post("/v1/records", headers=auth(key1), **kwargs), status, code)
    if code == "multipart_missing_part":
        assert "document" in body["detail"] or "metadata" in body["detail"], body
    assert state_of(app) == before


def test_duplicate_record_is_refused_and_changes_nothing(
        app: Any, http: Any, api_keys: dict[str, str], samples: dict[str, bytes],
        awaiting: dict[str, Any]) -> None:
    """Same pupil, school year and record type: the first upload stands; a second one,
    from the school or its department, with other metadata, is 409 and changes nothing."""
    before = state_of(app)
    record_before = get_record(http, api_keys["school-1"], awaiting["id"])
    attempts = [("school-1", metadata(FPDF2)),
                ("school-1", metadata(FPDF2, class_name="2C")),
                ("platform", metadata(FPDF2))]
    for client, meta in attempts:
        problem(upload(http, api_keys[client], samples[FPDF2], meta), 409, "record_exists")
        assert state_of(app) == before, client
    assert get_record(http, api_keys["school-1"], awaiting["id"]) == record_before


def test_duplicate_with_another_file_leaves_no_object(
        app: Any, http: Any, api_keys: dict[str, str], awaiting: dict[str, Any]) -> None:
    before = state_of(app)
    problem(upload(http, api_keys["school-1"], bad.minimal_pdf(), metadata(FPDF2)), 409,
            "record_exists")
    after = state_of(app)
    assert after["rows"] == before["rows"]  # the index is unchanged either way
    assert after["files"] == before["files"]


def test_over_the_size_limit(service_env: dict[str, str], tmp_path: Path,
                             api_keys: dict[str, str], samples: dict[str, bytes]) -> None:
    limit = 30_000
    assert len(samples[FPDF2]) < limit < len(samples[PDFA])
    small = make_app(service_env, tmp_path, max_pdf_bytes=limit)
    http = small.test_client()
    key = api_keys["school-1"]
    before = state_of(small)
    # over the service's limit (within what werkzeug lets through)
    body = problem(upload(http, key, samples[PDFA], metadata(PDFA)), 413, "pdf_too_large")
    assert str(limit) in body["detail"]
    assert state_of(small) == before
    # over MAX_CONTENT_LENGTH: werkzeug stops reading; still problem+json
    max_body = small.config["MAX_CONTENT_LENGTH"]
    huge = samples[PDFA] + b"%" * max_body + b"\n%%EOF\n"
    # encoded here, in memory: the test client would spool it to a file it never closes
    boundary, body = encode_multipart({
        "document": FileStorage(io.BytesIO(huge), "r.pdf", content_type="application/pdf"),
        "metadata": json.dumps(metadata(PDFA), ensure_ascii=False)})
    assert len(body) > max_body
    resp = http.post("/v1/records", headers=auth(key), data=body,
                     content_type=f'multipart/form-data; boundary="{boundary}"')
    body = problem(resp, 413, "pdf_too_large")
    assert body["detail"].startswith("the request exceeds"), body  # werkzeug's refusal
    assert state_of(small) == before
    # control: a file under the limit is accepted by the same app
    assert upload(http, key, samples[FPDF2], metadata(FPDF2)).status_code == 201


# --- B. signing errors --------------------------------------------------------------------

# (name, role, key, status, code) against a record that awaits its first signature
SIGN_ERRORS_AWAITING = [
    ("principal_first", "principal", "school-1-principal", 409, "role_out_of_order"),
    ("seal_first", "seal", "school-1-seal", 409, "role_out_of_order"),
    ("unknown_role", "janitor", "school-1-teacher", 422, "role_unknown"),
    ("unknown_key", "teacher", "no-such-key", 404, "key_not_found"),
    ("key_encipherment_only", "teacher", "school-1-teacher-badku", 422,
     "certificate_not_allowed"),
    ("foreign_ca", "teacher", "school-1-teacher-foreign", 422, "certificate_not_allowed"),
    ("key_of_another_role", "teacher", "school-1-principal", 422, "certificate_not_allowed"),
    ("client_held_key", "teacher", "school-1-client-teacher", 404, "key_not_server_held"),
]
# against a record the teacher has signed
SIGN_ERRORS_TEACHER_SIGNED = [
    ("teacher_again", "teacher", "school-1-teacher", 409, "already_signed"),
    ("teacher_again_other_key", "teacher", "school-1-teacher-badku", 409, "already_signed"),
    ("seal_before_principal", "seal", "school-1-seal", 409, "role_out_of_order"),
    ("unknown_key", "principal", "no-such-key", 404, "key_not_found"),
    ("teacher_key_as_principal", "principal", "school-1-teacher", 422,
     "certificate_not_allowed"),
]


def _assert_sign_refused(app: Any, http: Any, key: str, record_id: str, role: str,
                         signer_key: str, status: int, code: str) -> dict[str, Any]:
    before = state_of(app)
    record_before = get_record(http, key, record_id)
    body = problem(sign(http, key, record_id, role, signer_key), status, code)
    record_after = get_record(http, key, record_id)
    assert record_after["document"] == record_before["document"]
    assert record_after["signatures"] == record_before["signatures"]
    assert record_after == record_before
    assert state_of(app) == before
    return body


@pytest.mark.parametrize(("role", "signer_key", "status", "code"),
                         [c[1:] for c in SIGN_ERRORS_AWAITING],
                         ids=[c[0] for c in SIGN_ERRORS_AWAITING])
def test_sign_error_on_a_fresh_record_changes_nothing(
        app: Any, http: Any, key1: str, awaiting: dict[str, Any], role: str, signer_key: str,
        status: int, code: str) -> None:
    _assert_sign_refused(app, http, key1, awaiting["id"], role, signer_key, status, code)


@pytest.mark.parametrize(("role", "signer_key", "status", "code"),
                         [c[1:] for c in SIGN_ERRORS_TEACHER_SIGNED],
                         ids=[c[0] for c in SIGN_ERRORS_TEACHER_SIGNED])
def test_sign_error_after_the_teacher_changes_nothing(
        app: Any, http: Any, key1: str, teacher_signed: dict[str, Any], role: str,
        signer_key: str, status: int, code: str) -> None:
    assert [s["status"] for s in teacher_signed["signatures"]] == ["signed", "pending",
                                                                   "pending"]
    _assert_sign_refused(app, http, key1, teacher_signed["id"], role, signer_key, status,
                         code)


@pytest.mark.parametrize(("role", "signer_key"), SCHOOL_1_ROLES)
def test_archived_record_is_closed(app: Any, http: Any, key1: str, archived: dict[str, Any],
                                   role: str, signer_key: str) -> None:
    _assert_sign_refused(app, http, key1, archived["record"]["id"], role, signer_key, 409,
                         "record_closed")


@pytest.mark.parametrize(("body", "status", "code"), [
    ({}, 422, "body_invalid"),
    ({"role": "teacher"}, 422, "body_invalid"),
    ({"role": "", "key": "school-1-teacher"}, 422, "body_invalid"),
    ({"role": ["teacher"], "key": "school-1-teacher"}, 422, "body_invalid"),
    ("not json", 400, "body_invalid_json"),
    ([1, 2], 400, "body_invalid_json"),
], ids=["empty", "no_key", "empty_role", "role_not_string", "not_json", "array"])
def test_bad_sign_body_changes_nothing(app: Any, http: Any, key1: str,
                                       awaiting: dict[str, Any], body: Any, status: int,
                                       code: str) -> None:
    before = state_of(app)
    data = body if isinstance(body, str) else json.dumps(body)
    resp = http.post(f"/v1/records/{awaiting['id']}/signatures", headers=auth(key1),
                     data=data, content_type="application/json")
    problem(resp, status, code)
    assert state_of(app) == before


def test_unknown_record_is_404(http: Any, key1: str) -> None:
    problem(http.get("/v1/records/no-such-record", headers=auth(key1)), 404,
            "record_not_found")
    problem(http.get("/v1/records/no-such-record/document", headers=auth(key1)), 404,
            "record_not_found")
    problem(sign(http, key1, "no-such-record", "teacher", "school-1-teacher"), 404,
            "record_not_found")


# --- D. auth --------------------------------------------------------------------------------


def _auth_requests(record_id: str, pdf: bytes) -> list[tuple[str, str, dict[str, Any]]]:
    meta = json.dumps(GOOD_META, ensure_ascii=False)
    return [
        ("POST", "/v1/records", {"data": {"document": (io.BytesIO(pdf), "r.pdf"),
                                          "metadata": meta},
                                 "content_type": "multipart/form-data"}),
        ("GET", f"/v1/records/{record_id}", {}),
        ("GET", f"/v1/records/{record_id}/document", {}),
        ("POST", f"/v1/records/{record_id}/signatures",
         {"json": {"role": "teacher", "key": "school-1-teacher"}}),
    ]


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Bearer not-a-key", "Basic c2Nob29sLTE6eA==", "not-a-key",
], ids=["none", "empty", "bearer_no_token", "bearer_blank", "unknown_key", "basic",
        "no_scheme"])
def test_unauthenticated_is_401_and_changes_nothing(app: Any, http: Any, samples: dict[str, bytes],
                                                    awaiting: dict[str, Any],
                                                    header: str | None) -> None:
    before = state_of(app)
    headers = {} if header is None else {"Authorization": header}
    for method, path, kwargs in _auth_requests(awaiting["id"], samples[PDFA]):
        resp = http.open(path, method=method, headers=headers, **kwargs)
        problem(resp, 401, "unauthorized")
    assert state_of(app) == before


def test_school_key_with_a_typo_is_401(http: Any, key1: str, awaiting: dict[str, Any]) -> None:
    for wrong in (key1[:-1], key1 + "x", key1.upper() if key1 != key1.upper() else key1[1:]):
        problem(http.get(f"/v1/records/{awaiting['id']}", headers=auth(wrong)), 401,
                "unauthorized")


@pytest.mark.parametrize("client", ["archivist", "admin"])
def test_missing_scope_is_403_and_changes_nothing(app: Any, http: Any,
                                                  api_keys: dict[str, str],
                                                  samples: dict[str, bytes],
                                                  awaiting: dict[str, Any],
                                                  client: str) -> None:
    before = state_of(app)
    headers = auth(api_keys[client])
    for method, path, kwargs in _auth_requests(awaiting["id"], samples[PDFA]):
        resp = http.open(path, method=method, headers=headers, **kwargs)
        body = problem(resp, 403, "scope_missing")
        assert "records:" in body["detail"]
    assert state_of(app) == before


def test_verify_needs_no_key(http: Any, archived: dict[str, Any]) -> None:
    resp = verify(http, archived["pdf"])
    assert resp.status_code == 200, resp.get_data(as_text=True)
    report = resp.get_json()
    assert report["indication"] == "TOTAL_PASSED", report
    # which version of an archived record, and its public page; never the record's id
    assert report["archived"]["version"] == 1
    assert report["archived"]["verify_url"] == archived["record"]["archive"]["verify_url"]
    assert "record_id" not in report["archived"]
    text = resp.get_data(as_text=True)
    assert archived["record"]["id"] not in text
    # signers by name and public attributes only: no UID (CCCD number), no 12-digit number
    assert all(s["signer"]["name"] and "UID=" not in s["signer"]["subject"]
               for s in report["signatures"]), report["signatures"]
    assert not re.search(r"\d{12}", text), text


# --- E. idempotency ---------------------------------------------------------------------------


def _records_of(app: Any, student_id: str, school_year: str) -> int:
    import sqlalchemy as sa

    from archive.index import schema

    engine = sa.create_engine(app.extensions["hocba"].settings.index_url)
    try:
        with engine.connect() as conn:
            r = schema.records.c
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(schema.records)
                .where(r.student_id_number == student_id, r.school_year == school_year)
            ).scalar_one())
    finally:
        engine.dispose()


def test_idempotent_create(app: Any, http: Any, key1: str, samples: dict[str, bytes]) -> None:
    meta = metadata(FPDF2, school_year="2022-2023")
    idem = {"Idempotency-Key": "create-7d1c0b2e"}
    before = state_of(app)
    first = upload(http, key1, samples[FPDF2], meta, idem)
    assert first.status_code == 201, first.get_data(as_text=True)
    assert "Idempotent-Replayed" not in first.headers
    after_first = state_of(app)
    assert after_first["rows"]["records"] == before["rows"]["records"] + 1

    again = upload(http, key1, samples[FPDF2], meta, idem)
    assert again.status_code == 201, again.get_data(as_text=True)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json() == first.get_json()
    assert again.get_json()["id"] == first.get_json()["id"]
    assert state_of(app) == after_first
    assert _records_of(app, meta["student"]["id_number"], "2022-2023") == 1

    # the same key with another body: other metadata, or another file
    for pdf, other in ((samples[FPDF2], {**meta, "class_name": "2C"}),
                       (bad.minimal_pdf(), meta),
                       (samples[PDFA], metadata(PDFA, school_year="2022-2023"))):
        problem(upload(http, key1, pdf, other, idem), 409, "idempotency_conflict")
        assert state_of(app) == after_first
    # still replays the first answer afterwards
    third = upload(http, key1, samples[FPDF2], meta, idem)
    assert third.status_code == 201 and third.get_json() == first.get_json()
    # without the key, the same body is a second record: refused as a duplicate
    problem(upload(http, key1, samples[FPDF2], meta), 409, "record_exists")
    assert state_of(app) == after_first


def test_idempotent_sign(app: Any, http: Any, key1: str, samples: dict[str, bytes]) -> None:
    record = _create(app, key1, samples[FPDF2], metadata(FPDF2, school_year="2025-2026"))
    idem = {"Idempotency-Key": "sign-teacher-5f0e"}
    first = sign(http, key1, record["id"], "teacher", "school-1-teacher", idem)
    assert first.status_code == 200, first.get_data(as_text=True)
    assert "Idempotent-Replayed" not in first.headers
    signed = first.get_json()
    assert signed["document"]["sha256"] != record["document"]["sha256"]
    after_first = state_of(app)

    again = sign(http, key1, record["id"], "teacher", "school-1-teacher", idem)
    assert again.status_code == 200, again.get_data(as_text=True)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.get_json() == signed
    assert state_of(app) == after_first  # not signed twice
    now = get_record(http, key1, record["id"])
    assert now["document"] == signed["document"]
    assert [s["status"] for s in now["signatures"]] == ["signed", "pending", "pending"]

    # same key, different body
    problem(sign(http, key1, record["id"], "principal", "school-1-principal", idem), 409,
            "idempotency_conflict")
    problem(sign(http, key1, record["id"], "teacher", "school-1-teacher-badku", idem), 409,
            "idempotency_conflict")
    assert state_of(app) == after_first
    assert get_record(http, key1, record["id"]) == now
    # a failed request with a fresh key stores no answer: the same key works once fixed
    retry = {"Idempotency-Key": "sign-principal-2a9b"}
    problem(sign(http, key1, record["id"], "seal", "school-1-seal", retry), 409,
            "role_out_of_order")
    assert state_of(app) == after_first
    ok = sign(http, key1, record["id"], "principal", "school-1-principal", retry)
    assert ok.status_code == 200, ok.get_data(as_text=True)
    assert [s["status"] for s in ok.get_json()["signatures"]] == ["signed", "signed",
                                                                  "pending"]


def test_idempotency_key_too_long(app: Any, http: Any, key1: str,
                                  samples: dict[str, bytes]) -> None:
    before = state_of(app)
    problem(upload(http, key1, samples[PDFA], GOOD_META, {"Idempotency-Key": "k" * 201}),
            422, "idempotency_key_invalid")
    assert state_of(app) == before


# --- F. verification -------------------------------------------------------------------------


def test_pdf_signed_under_another_ca_is_not_trusted(app: Any, http: Any, test_state: Path,
                                                    samples: dict[str, bytes]) -> None:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers

    pki = test_state / "pki"
    signer = signers.SimpleSigner.load(
        str(pki / "keys" / "foreign-signer.key.pem"), str(pki / "certs" / "foreign-signer.pem"),
        ca_chain_files=(str(pki / "certs" / "foreign-root.pem"),))
    assert signer is not None
    writer = IncrementalPdfFileWriter(io.BytesIO(samples[FPDF2]))
    pdf = signers.sign_pdf(writer, signers.PdfSignatureMetadata(field_name="Sig_GVCN"),
                           signer=signer).getvalue()
    before = state_of(app)
    resp = verify(http, pdf)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    report = resp.get_json()
    assert report["indication"] != "TOTAL_PASSED", report
    assert report["archived"] is None
    assert len(report["signatures"]) == 1, report
    sig = report["signatures"][0]
    assert sig["trusted"] is False, sig
    assert sig["intact"] is True, sig
    assert sig["indication"] != "TOTAL_PASSED", sig
    assert sig["role"] == "teacher"
    assert state_of(app) == before


@pytest.mark.parametrize(("pdf", "code"), [
    (bad.png_not_pdf, "pdf_not_a_pdf"),
    (bad.encrypted_pdf, "pdf_encrypted"),
    (bad.truncated_sample_pdf, "pdf_malformed"),
    (bad.garbage_after_header_pdf, "pdf_malformed"),
], ids=["png", "encrypted", "truncated", "garbage"])
def test_verify_bad_input_is_400(app: Any, http: Any, pdf: Callable[[], bytes],
                                 code: str) -> None:
    before = state_of(app)
    problem(verify(http, pdf()), 400, code)
    assert state_of(app) == before


def test_verify_without_document_part(http: Any) -> None:
    resp = http.post("/v1/verify", data={"file": (io.BytesIO(b"%PDF-1.7"), "x.pdf")},
                     content_type="multipart/form-data")
    problem(resp, 422, "multipart_missing_part")


def test_unsigned_pdf_verifies_with_no_signatures(http: Any, samples: dict[str, bytes]) -> None:
    resp = verify(http, samples[PDFA])
    assert resp.status_code == 200, resp.get_data(as_text=True)
    report = resp.get_json()
    assert report["signatures"] == []
    assert report["indication"] != "TOTAL_PASSED", report
    assert report["archived"] is None


# --- G. the public page and operations ------------------------------------------------------


def _code(app: Any, record_id: str) -> str:
    row = app.extensions["hocba"].index.get_record(record_id)
    assert row is not None and row.verification_code
    return str(row.verification_code)


def test_verify_page_of_an_archived_record(app: Any, http: Any,
                                           archived: dict[str, Any]) -> None:
    """The page a QR code points at (GET /verify/<code>; tests/integration/
    test_verify_pages.py has the rest): the verdict, never the document."""
    record = archived["record"]
    code = _code(app, record["id"])
    resp = http.get(f"/verify/{code}")
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    html = resp.get_data(as_text=True)
    assert "Xác thực học bạ số" in html
    assert "Học bạ hợp lệ" in html
    assert record["id"] not in html and "/document" not in html
    for path in (f"/verify/{code}/document", f"/verify/{record['id']}/document"):
        assert http.get(path).status_code == 404


def test_verify_page_of_unknown_or_unfinished_record(app: Any, http: Any,
                                                     awaiting: dict[str, Any]) -> None:
    for unknown in ("no-such-record", awaiting["id"], "0" * 16):
        resp = http.get(f"/verify/{unknown}")
        assert resp.status_code == 404
        assert resp.mimetype == "text/html"
        assert "Không tìm thấy mã xác thực" in resp.get_data(as_text=True)
    resp = http.get(f"/verify/{_code(app, awaiting['id'])}")
    assert resp.status_code == 200 and "Học bạ đang được ký" in resp.get_data(as_text=True)


def test_healthz(http: Any) -> None:
    resp = http.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}


def test_readyz(http: Any) -> None:
    resp = http.get("/readyz")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["status"] == "ok"
    assert set(body["checks"]) >= {"hsm", "store", "index", "tsa"}
    assert all(v == "ok" for v in body["checks"].values()), body


def test_openapi(http: Any) -> None:
    resp = http.get("/openapi.yaml")
    assert resp.status_code == 200
    doc = yaml.safe_load(resp.get_data(as_text=True))
    assert str(doc["openapi"]).startswith("3.1")
    assert "/v1/records" in doc["paths"]


def test_unknown_route_is_problem_json(http: Any) -> None:
    problem(http.get("/v1/no-such-thing"), 404, "not_found")
    resp = http.put("/v1/records")
    assert resp.status_code == 405
    assert resp.mimetype == PROBLEM_JSON


# --- H. bounded bodies (issue 14): JSON depth and size, multipart text parts -----------

# every route that reads a JSON body, with a client that may call it
JSON_ROUTES = [
    ("school-1", "/v1/records/{id}/signatures"),
    ("school-1", "/v1/records/{id}/signing-sessions"),
    ("school-1", "/v1/signing-sessions/x0/complete"),
    ("school-1", "/v1/batch-signing-sessions"),
    ("school-1", "/v1/batch-signing-sessions/x0/complete"),
    ("school-1", "/v1/batches"),
    ("school-1", "/v1/archive/records/{id}/share"),
    ("school-1", "/v1/transfers"),
    ("admin", "/v1/admin/evidence"),
]


def _nested(depth: int) -> bytes:
    return b'{"role": ' + b"[" * depth + b"]" * depth + b"}"


def test_every_json_route_is_in_the_depth_test(app: Any) -> None:
    """JSON_ROUTES lists every route with a documented JSON body (a new one is added)."""
    from signer.http.schemas import json_schema

    rules = {r.rule for r in app.url_map.iter_rules()
             if "POST" in r.methods and json_schema(r.rule, "POST") is not None}
    listed = {re.sub(r"\{id\}|x0", "", url) for _, url in JSON_ROUTES}
    assert {re.sub(r"<[^>]+>", "", r) for r in rules} == listed


@pytest.mark.parametrize("depth", [40, 1_000, 100_000])
@pytest.mark.parametrize(("client", "url"), JSON_ROUTES, ids=[u for _, u in JSON_ROUTES])
def test_deeply_nested_json_is_400_and_changes_nothing(
        app: Any, http: Any, api_keys: dict[str, str], awaiting: dict[str, Any],
        client: str, url: str, depth: int) -> None:
    before = state_of(app)
    resp = http.post(url.format(id=awaiting["id"]), data=_nested(depth),
                     headers=auth(api_keys[client]), content_type="application/json")
    body = problem(resp, 400, "body_too_deep")
    assert "32" in body["detail"], body
    assert state_of(app) == before


@pytest.mark.parametrize(("client", "url"), JSON_ROUTES, ids=[u for _, u in JSON_ROUTES])
def test_json_over_its_size_limit_is_413_and_changes_nothing(
        app: Any, http: Any, api_keys: dict[str, str], awaiting: dict[str, Any],
        client: str, url: str) -> None:
    from signer.http.common import JSON_MAX_BYTES

    before = state_of(app)
    big = json.dumps({"role": "teacher", "key": "x" * JSON_MAX_BYTES}).encode()
    resp = http.post(url.format(id=awaiting["id"]), data=big,
                     headers=auth(api_keys[client]), content_type="application/json")
    body = problem(resp, 413, "body_too_large")
    assert str(JSON_MAX_BYTES) in body["detail"], body
    assert state_of(app) == before


def test_json_just_under_the_limits_is_read(http: Any, key1: str,
                                            awaiting: dict[str, Any]) -> None:
    """Within both limits the body reaches the schema check (422, not 400/413)."""
    nested: Any = "teacher"
    for _ in range(30):
        nested = [nested]
    body = {"role": nested, "key": "k" * 500_000}
    problem(http.post(f"/v1/records/{awaiting['id']}/signatures", json=body,
                      headers=auth(key1)), 422, "body_invalid")


def test_json_size_limit_is_exact(http: Any, key1: str, awaiting: dict[str, Any]) -> None:
    from signer.http.common import JSON_MAX_BYTES

    body = b'{"role": "teacher"}'
    url = f"/v1/records/{awaiting['id']}/signatures"
    at_limit = body + b" " * (JSON_MAX_BYTES - len(body))
    problem(http.post(url, data=at_limit, headers=auth(key1),
                      content_type="application/json"), 422, "body_invalid")
    problem(http.post(url, data=at_limit + b" ", headers=auth(key1),
                      content_type="application/json"), 413, "body_too_large")


def test_json_nan_is_not_json(http: Any, key1: str, awaiting: dict[str, Any]) -> None:
    problem(http.post(f"/v1/records/{awaiting['id']}/signatures",
                      data=b'{"role": "teacher", "key": NaN}', headers=auth(key1),
                      content_type="application/json"), 400, "body_invalid_json")


def _raw_multipart(parts: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """(body, content type) with each part's bytes exactly as given: (name, bytes, filename)."""
    boundary = "hocbaboundary7f3a"
    out = b""
    for name, data, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        out += (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                + ("Content-Type: application/octet-stream\r\n" if filename else "")
                + "\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _not_utf8_metadata() -> bytes:
    """The sample's metadata with the pupil's name in Latin-1 bytes, not UTF-8 (what
    Werkzeug used to turn into U+FFFD)."""
    meta = metadata(FPDF2, school_year="2026-2027")
    text = json.dumps(meta, ensure_ascii=False).encode()
    name = meta["student"]["full_name"].encode()
    assert name in text
    return text.replace(name, "Trân Văn An".encode("latin-1", "replace"))


@pytest.mark.parametrize("filename", [None, "metadata.json"], ids=["text_part", "file_part"])
def test_metadata_not_utf8_is_refused_not_repaired(
        app: Any, http: Any, key1: str, samples: dict[str, bytes], awaiting: dict[str, Any],
        filename: str | None) -> None:
    before = state_of(app)
    data, ctype = _raw_multipart([("document", samples[FPDF2], "r.pdf"),
                                  ("metadata", _not_utf8_metadata(), filename)])
    body = problem(http.post("/v1/records", data=data, content_type=ctype,
                             headers=auth(key1)), 400, "metadata_invalid_json")
    assert "UTF-8" in body["detail"], body
    assert state_of(app) == before


def test_metadata_utf8_bytes_are_kept_exactly(app: Any, http: Any, key1: str,
                                              samples: dict[str, bytes]) -> None:
    """The control: UTF-8 metadata sent as raw bytes (no charset named) is stored as sent,
    Vietnamese diacritics and all."""
    meta = metadata(FPDF2)
    meta["student"].update(id_number="001217099187", full_name="Nguyễn Thị Ánh Tuyết")
    data, ctype = _raw_multipart([
        ("document", samples[FPDF2], "r.pdf"),
        ("metadata", json.dumps(meta, ensure_ascii=False).encode(), None)])
    resp = http.post("/v1/records", data=data, content_type=ctype, headers=auth(key1))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    row = app.extensions["hocba"].index.get_record(resp.get_json()["id"])
    assert json.loads(row.metadata_json)["student"]["full_name"] == "Nguyễn Thị Ánh Tuyết"


@pytest.mark.parametrize("size", [100_000, 1_000_000])
@pytest.mark.parametrize("filename", [None, "metadata.json"], ids=["text_part", "file_part"])
def test_metadata_over_its_limit_is_413_metadata_too_large(
        app: Any, http: Any, key1: str, samples: dict[str, bytes], size: int,
        filename: str | None) -> None:
    from signer.http.common import FORM_TEXT_MAX_BYTES

    before = state_of(app)
    meta = metadata(FPDF2, school_year="2017-2018", class_name="x" * size)
    data, ctype = _raw_multipart([("document", samples[FPDF2], "r.pdf"),
                                  ("metadata", json.dumps(meta).encode(), filename)])
    body = problem(http.post("/v1/records", data=data, content_type=ctype,
                             headers=auth(key1)), 413, "metadata_too_large")
    assert str(FORM_TEXT_MAX_BYTES) in body["detail"], body
    assert "52428800" not in body["detail"]
    assert state_of(app) == before


def test_a_large_text_part_on_verify_is_not_a_pdf_problem(http: Any,
                                                          samples: dict[str, bytes]) -> None:
    data, ctype = _raw_multipart([("document", samples[FPDF2], "r.pdf"),
                                  ("note", b"x" * 1_000_000, None)])
    problem(http.post("/v1/verify", data=data, content_type=ctype), 413,
            "metadata_too_large")


# --- I. answers the router gives (issue 14) ---------------------------------------------


@pytest.mark.parametrize(("method", "url", "allowed"), [
    ("PUT", "/v1/records", {"POST"}),
    ("DELETE", "/v1/records/x0", {"GET", "HEAD"}),
    ("GET", "/v1/batches", {"POST"}),
    ("PATCH", "/verify", {"GET", "HEAD", "POST"}),
    ("POST", "/healthz", {"GET", "HEAD"}),
])
def test_405_is_problem_json_with_allow(http: Any, key1: str, method: str, url: str,
                                        allowed: set[str]) -> None:
    resp = http.open(url, method=method, headers=auth(key1))
    problem(resp, 405, "method_not_allowed")
    assert {m.strip() for m in resp.headers["Allow"].split(",")} - {"OPTIONS"} == allowed


@pytest.mark.parametrize("url", ["/verify/ABCD-EFGH-JKMN-PQRS/document",
                                 "/verify/x/y/z", "/v1/records/x0/nothing", "/nothing"])
def test_unknown_path_is_404_problem_json(http: Any, url: str) -> None:
    problem(http.get(url), 404, "not_found")


# --- J. gunicorn's own refusals (issue 14) ----------------------------------------------


@pytest.mark.slow
def test_gunicorn_refusals_are_problem_json(service_env: dict[str, str], live_responder: Any,
                                            tmp_path: Path, key1: str) -> None:
    """414 (request line over gunicorn's limit), 431 (a header over its limit, too many
    headers) and 400 (a malformed request line) come from gunicorn itself, before the
    app: problem+json too."""
    import socket

    from tests.integration.gunicorn_service import Service, free_port

    env = {**service_env, "HOCBA_STORE": str(tmp_path / "store"),
           "HOCBA_INDEX_URL": f"sqlite:///{tmp_path / 'index.sqlite3'}"}
    svc = Service(env, free_port(), workers=1, threads=2, log=tmp_path / "gunicorn.log")
    svc.start()

    def raw(request: bytes) -> tuple[int, dict[str, str], bytes]:
        with socket.create_connection(("127.0.0.1", svc.port), timeout=30) as s:
            s.sendall(request)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
        return int(status_line.split()[1]), headers, body

    try:
        cases = [
            (b"GET /v1/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414,
             "request_line_too_large"),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431,
             "request_headers_too_large"),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
             + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431,
             "request_headers_too_large"),
            (b"GET\x00 / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        ]
        for request, status, code in cases:
            got, headers, body = raw(request)
            assert got == status, (code, got, body[:300])
            assert headers["content-type"] == PROBLEM_JSON, (code, headers)
            doc = json.loads(body)
            assert (doc["status"], doc["code"]) == (status, code), doc
            assert int(headers["content-length"]) == len(body)
        # the app's own refusals, through the same server
        got, headers, body = raw(b"GET /verify/ABCD-EFGH-JKMN-PQRS/document HTTP/1.1\r\n"
                                 b"Host: x\r\nConnection: close\r\n\r\n")
        assert (got, headers["content-type"], json.loads(body)["code"]) == \
            (404, PROBLEM_JSON, "not_found")
        got, headers, body = raw(b"PUT /v1/records HTTP/1.1\r\nHost: x\r\n"
                                 b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        assert (got, headers["content-type"], json.loads(body)["code"]) == \
            (405, PROBLEM_JSON, "method_not_allowed")
        assert "POST" in headers["allow"]
        # a chunked JSON body (no Content-Length) is read only up to its limit
        chunk = b"[" * 100 + b" " * (64 * 1024 - 100)
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20))
        got, headers, body = raw(b"POST /v1/batches HTTP/1.1\r\nHost: x\r\n"
                                 b"Authorization: Bearer " + key1.encode() + b"\r\n"
                                 b"Content-Type: application/json\r\n"
                                 b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                                 + chunked + b"0\r\n\r\n")
        assert (got, json.loads(body)["code"]) == (413, "body_too_large"), body
        # the control: a normal request on the same service
        got, headers, body = raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert got == 200 and json.loads(body) == {"status": "ok"}
    finally:
        svc.stop()
