"""Tenancy through the HTTP API: a client never sees, downloads, signs or creates a record
of a school its tenant does not cover (404, so records cannot be probed), nor uses another
school's keys; a department client works for each of its schools with that school's keys."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.helpers import (
    auth,
    get_record,
    make_app,
    metadata,
    problem,
    sign,
    state_of,
    upload,
)

pytestmark = pytest.mark.integration

FPDF2 = "hoc-ba-tieu-hoc-fpdf2.pdf"
PDFA = "hoc-ba-thcs-libreoffice-pdfa.pdf"
SCHOOL_1_KEYS = ("school-1-teacher", "school-1-principal", "school-1-seal")
SCHOOL_2_KEYS = ("school-2-teacher", "school-2-principal", "school-2-seal")
CREATE_KEY = {"Idempotency-Key": "tenancy-create-1"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, service_env: dict[str, str],
        responder: Any) -> Any:
    responder.start()
    return make_app(service_env, tmp_path_factory.mktemp("api-tenancy"))


@pytest.fixture
def http(app: Any, responder: Any) -> Any:
    responder.start()  # another module may have stopped it
    return app.test_client()


@pytest.fixture(scope="module")
def record_1(app: Any, api_keys: dict[str, str], samples: dict[str, bytes]) -> dict[str, Any]:
    """A DEMO-SCHOOL-1 record awaiting its teacher, created with an Idempotency-Key."""
    resp = upload(app.test_client(), api_keys["school-1"], samples[FPDF2], metadata(FPDF2),
                  CREATE_KEY)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body: dict[str, Any] = resp.get_json()
    assert body["school"]["code"] == "DEMO-SCHOOL-1"
    return body


@pytest.fixture(scope="module")
def record_2(app: Any, api_keys: dict[str, str], samples: dict[str, bytes]) -> dict[str, Any]:
    """school-2's own record (DEMO-SCHOOL-2), awaiting its teacher."""
    resp = upload(app.test_client(), api_keys["school-2"], samples[PDFA],
                  metadata(PDFA, school="DEMO-SCHOOL-2", school_year="2023-2024"))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body: dict[str, Any] = resp.get_json()
    assert body["school"]["code"] == "DEMO-SCHOOL-2"
    return body


def _unchanged(app: Any, http: Any, owner_key: str, record: dict[str, Any],
               before: dict[str, Any]) -> None:
    assert state_of(app) == before
    now = get_record(http, owner_key, record["id"])
    assert now["document"] == record["document"]
    assert now["signatures"] == record["signatures"]


def _same_problem(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two 404s that must not tell a foreign record from a missing one."""
    for k in ("type", "title", "status", "code"):
        assert a[k] == b[k], (a, b)


def test_school_2_cannot_see_or_download_a_school_1_record(
        app: Any, http: Any, api_keys: dict[str, str], record_1: dict[str, Any]) -> None:
    key2 = auth(api_keys["school-2"])
    rid = record_1["id"]
    before = state_of(app)
    foreign = problem(http.get(f"/v1/records/{rid}", headers=key2), 404, "record_not_found")
    missing = problem(http.get("/v1/records/no-such-record", headers=key2), 404,
                      "record_not_found")
    _same_problem(foreign, missing)
    assert "DEMO-SCHOOL-1" not in foreign["detail"]
    foreign_doc = http.get(f"/v1/records/{rid}/document", headers=key2)
    problem(foreign_doc, 404, "record_not_found")
    assert b"%PDF" not in foreign_doc.data
    assert "ETag" not in foreign_doc.headers
    # a conditional request with the right ETag reveals nothing either
    etag = f'"{record_1["document"]["sha256"]}"'
    problem(http.get(f"/v1/records/{rid}/document", headers={**key2, "If-None-Match": etag}),
            404, "record_not_found")
    _unchanged(app, http, api_keys["school-1"], record_1, before)


@pytest.mark.parametrize(("role", "signer_key"), [
    ("teacher", "school-1-teacher"),
    ("teacher", "school-2-teacher"),
    ("principal", "school-2-principal"),
    ("seal", "school-2-seal"),
    ("teacher", "no-such-key"),
])
def test_school_2_cannot_sign_a_school_1_record(app: Any, http: Any, api_keys: dict[str, str],
                                                record_1: dict[str, Any], role: str,
                                                signer_key: str) -> None:
    before = state_of(app)
    foreign = problem(sign(http, api_keys["school-2"], record_1["id"], role, signer_key), 404,
                      "record_not_found")
    missing = problem(sign(http, api_keys["school-2"], "no-such-record", role, signer_key),
                      404, "record_not_found")
    _same_problem(foreign, missing)
    _unchanged(app, http, api_keys["school-1"], record_1, before)


@pytest.mark.parametrize("signer_key", SCHOOL_1_KEYS)
def test_school_2_cannot_use_a_school_1_key(app: Any, http: Any, api_keys: dict[str, str],
                                            record_2: dict[str, Any], signer_key: str) -> None:
    """On its own record (teacher next, so the key is looked up): the other school's key is
    as unknown as a key that does not exist."""
    before = state_of(app)
    foreign = problem(sign(http, api_keys["school-2"], record_2["id"], "teacher", signer_key),
                      404, "key_not_found")
    missing = problem(sign(http, api_keys["school-2"], record_2["id"], "teacher",
                           "no-such-key"), 404, "key_not_found")
    _same_problem(foreign, missing)
    _unchanged(app, http, api_keys["school-2"], record_2, before)


def test_school_1_cannot_see_a_school_2_record(app: Any, http: Any, api_keys: dict[str, str],
                                              record_2: dict[str, Any]) -> None:
    before = state_of(app)
    key1 = api_keys["school-1"]
    problem(http.get(f"/v1/records/{record_2['id']}", headers=auth(key1)), 404,
            "record_not_found")
    problem(http.get(f"/v1/records/{record_2['id']}/document", headers=auth(key1)), 404,
            "record_not_found")
    problem(sign(http, key1, record_2["id"], "teacher", "school-1-teacher"), 404,
            "record_not_found")
    _unchanged(app, http, api_keys["school-2"], record_2, before)


def test_school_2_cannot_create_for_school_1(app: Any, http: Any, api_keys: dict[str, str],
                                            samples: dict[str, bytes],
                                            record_1: dict[str, Any]) -> None:
    before = state_of(app)
    key2 = api_keys["school-2"]
    # a new pupil for DEMO-SCHOOL-1
    problem(upload(http, key2, samples[PDFA], metadata(PDFA)), 404, "school_not_found")
    assert state_of(app) == before
    # school-1's very request, Idempotency-Key included: no replay of school-1's answer
    resp = upload(http, key2, samples[FPDF2], metadata(FPDF2), CREATE_KEY)
    body = problem(resp, 404, "school_not_found")
    assert record_1["id"] not in resp.get_data(as_text=True)
    assert "Idempotent-Replayed" not in resp.headers
    assert "DEMO-SCHOOL-1" in body["detail"]  # the caller's own input, echoed
    assert state_of(app) == before
    # while school-1 itself still gets its replay
    replay = upload(http, api_keys["school-1"], samples[FPDF2], metadata(FPDF2), CREATE_KEY)
    assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.get_json()["id"] == record_1["id"]


def test_platform_sees_records_of_both_schools(http: Any, api_keys: dict[str, str],
                                               record_1: dict[str, Any],
                                               record_2: dict[str, Any]) -> None:
    key = api_keys["platform"]
    for record in (record_1, record_2):
        assert get_record(http, key, record["id"])["id"] == record["id"]
        doc = http.get(f"/v1/records/{record['id']}/document", headers=auth(key))
        assert doc.status_code == 200
        assert doc.headers["ETag"].strip('"') == record["document"]["sha256"]


def test_platform_signs_a_school_2_record_with_school_2_keys_only(
        app: Any, http: Any, api_keys: dict[str, str], samples: dict[str, bytes]) -> None:
    key = api_keys["platform"]
    meta = metadata(PDFA, school="DEMO-SCHOOL-2")
    assert meta["school"] == {"code": "DEMO-SCHOOL-2", "name": "Trường THCS Chu Văn An"}
    created = upload(http, key, samples[PDFA], meta)
    assert created.status_code == 201, created.get_data(as_text=True)
    record = created.get_json()
    rid = record["id"]
    assert record["school"]["code"] == "DEMO-SCHOOL-2"

    # a DEMO-SCHOOL-1 teacher key on a DEMO-SCHOOL-2 record
    before = state_of(app)
    problem(sign(http, key, rid, "teacher", "school-1-teacher"), 422, "certificate_not_allowed")
    _unchanged(app, http, key, record, before)

    for role, signer_key in (("teacher", "school-2-teacher"),
                             ("principal", "school-2-principal")):
        resp = sign(http, key, rid, role, signer_key)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        record = resp.get_json()
    assert record["next_role"] == "seal"
    assert record["signatures"][1]["signer"]["key"] == "school-2-principal"

    # the seal of another school: its certificate names DEMO-SCHOOL-1, not the record's
    before = state_of(app)
    body = problem(sign(http, key, rid, "seal", "school-1-seal"), 422,
                   "certificate_not_allowed")
    assert "DEMO-SCHOOL-2" in body["detail"], body
    _unchanged(app, http, key, record, before)
    assert get_record(http, key, rid)["status"] == "awaiting_signatures"

    resp = sign(http, key, rid, "seal", "school-2-seal")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    final = resp.get_json()
    assert final["status"] == "archived"
    assert [s["signer"]["key"] for s in final["signatures"]] == list(SCHOOL_2_KEYS)
    assert final["archive"]["sha256"] == final["document"]["sha256"]

    # school-2 sees the record the platform made for it; school-1 does not
    assert get_record(http, api_keys["school-2"], rid) == final
    problem(http.get(f"/v1/records/{rid}", headers=auth(api_keys["school-1"])), 404,
            "record_not_found")
    code = app.extensions["hocba"].index.get_record(rid).verification_code
    page = http.get(f"/verify/{code}")
    assert page.status_code == 200
    assert "Trường THCS Chu Văn An" in page.get_data(as_text=True)
