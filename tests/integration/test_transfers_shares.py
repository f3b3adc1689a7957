"""Schools and guardians with real parts: uniqueness per school (no answer tells a school
whether another school holds a record for a pupil), school transfers, share links that
can be listed and revoked, and an audit row for every read of a document."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.integration.helpers import (
    auth,
    create_archived,
    make_app,
    metadata,
    problem,
    sign,
    upload,
)

pytestmark = pytest.mark.integration

FPDF2 = "hoc-ba-tieu-hoc-fpdf2.pdf"
MOVED_PUPIL = "001217000555"      # archived at DEMO-SCHOOL-1, moves to DEMO-SCHOOL-2
UNKNOWN_PUPIL = "001217000556"    # hocba holds nothing for this pupil
READ = "record.document_read"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, service_env: dict[str, str],
        responder: Any) -> Any:
    responder.start()
    return make_app(service_env, tmp_path_factory.mktemp("transfers"))


@pytest.fixture
def http(app: Any, responder: Any) -> Any:
    responder.start()
    return app.test_client()


def pupil(id_number: str, school: str = "DEMO-SCHOOL-1", **changes: Any) -> dict[str, Any]:
    meta = metadata(FPDF2, school=school, **changes)
    meta["student"] = {**meta["student"], "id_number": id_number,
                       "student_code": f"HS-{id_number[-6:]}"}
    return meta


@pytest.fixture(scope="module")
def archived(app: Any, responder: Any, api_keys: dict[str, str],
             samples: dict[str, bytes]) -> dict[str, Any]:
    """MOVED_PUPIL's record at DEMO-SCHOOL-1, signed by all three roles and archived."""
    responder.start()
    http = app.test_client()
    return create_archived(http, api_keys["school-1"], samples[FPDF2], pupil(MOVED_PUPIL))


def audit(app: Any, record_id: str | None, action: str) -> list[Any]:
    rows = app.extensions["hocba"].index.list_audit(record_id, limit=1000)
    return [r for r in rows if r.action == action]


def shape(body: dict[str, Any]) -> dict[str, Any]:
    """An answer with what must differ between two records (ids, hashes, times, the
    pupil's own data) taken out."""
    varying = {"id", "created_at", "updated_at", "document", "verify_url",
               "verification_code"}
    return {k: v for k, v in body.items() if k not in varying}


# -- uniqueness per school -----------------------------------------------------------------


def test_another_school_creates_a_record_as_for_an_unknown_pupil(
        http: Any, archived: dict[str, Any], api_keys: dict[str, str],
        samples: dict[str, bytes]) -> None:
    key = api_keys["school-2"]
    moved = upload(http, key, samples[FPDF2], pupil(MOVED_PUPIL, "DEMO-SCHOOL-2"))
    unknown = upload(http, key, samples[FPDF2], pupil(UNKNOWN_PUPIL, "DEMO-SCHOOL-2"))
    assert moved.status_code == unknown.status_code == 201, moved.get_data(as_text=True)
    assert sorted(moved.headers.keys()) == sorted(unknown.headers.keys())
    assert shape(moved.get_json()) == shape(unknown.get_json())
    assert moved.get_json()["id"] != archived["id"]
    # within one school the rule stays: a second record is refused, corrections supersede
    again = upload(http, key, samples[FPDF2], pupil(MOVED_PUPIL, "DEMO-SCHOOL-2"))
    problem(again, 409, "record_exists")
    # a school cannot correct another school's record (as if it did not exist)
    cross = upload(http, key, samples[FPDF2],
                   pupil(MOVED_PUPIL, "DEMO-SCHOOL-2", supersedes=archived["id"]))
    problem(cross, 404, "supersedes_not_found")


# -- transfers -----------------------------------------------------------------------------


def test_a_transfer_lets_the_receiving_school_read_never_change(
        app: Any, http: Any, archived: dict[str, Any], api_keys: dict[str, str]) -> None:
    sender, receiver = api_keys["school-1"], api_keys["school-2"]
    rid = archived["id"]
    before = http.get(f"/v1/archive/records/{rid}", headers=auth(receiver))
    problem(before, 404, "record_not_found")

    resp = http.post("/v1/transfers", headers=auth(sender),
                     json={"student_id": MOVED_PUPIL, "to_school": "DEMO-SCHOOL-2",
                           "note": "chuyển trường"})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    transfer = resp.get_json()
    assert transfer["direction"] == "outgoing"
    assert (transfer["from_school"], transfer["to_school"]) == ("DEMO-SCHOOL-1",
                                                                "DEMO-SCHOOL-2")
    assert [r["id"] for r in transfer["records"]] == [rid]
    created = [r for r in audit(app, None, "transfer.created")
               if r.detail["transfer_id"] == transfer["id"]]
    assert created and created[0].tenant == "DEMO-SCHOOL-1"

    incoming = http.get("/v1/transfers", headers=auth(receiver)).get_json()["items"]
    assert [(t["id"], t["direction"]) for t in incoming] == [(transfer["id"], "incoming")]
    seen = http.get(f"/v1/transfers/{transfer['id']}", headers=auth(receiver))
    assert seen.status_code == 200 and [r["id"] for r in seen.get_json()["records"]] == [rid]

    record = http.get(f"/v1/archive/records/{rid}", headers=auth(receiver))
    assert record.status_code == 200, record.get_data(as_text=True)
    assert record.get_json()["school"]["code"] == "DEMO-SCHOOL-1"
    doc = http.get(f"/v1/archive/records/{rid}/versions/1/document?purpose=transfer",
                   headers=auth(receiver))
    assert doc.status_code == 200 and doc.data.startswith(b"%PDF")
    reads = audit(app, rid, READ)
    assert reads[-1].detail["purpose"] == "transfer"
    assert reads[-1].detail["reader_tenant"] == "DEMO-SCHOOL-2"
    assert reads[-1].tenant == "DEMO-SCHOOL-1"  # the holding school sees who read it
    package = http.get(f"/v1/archive/records/{rid}/package", headers=auth(receiver))
    assert package.status_code == 200

    # reading only: no signing, no share link, no correction, not the working API
    problem(sign(http, receiver, rid, "seal", "school-2-seal"), 404, "record_not_found")
    share = http.post(f"/v1/archive/records/{rid}/share", headers=auth(receiver),
                      json={"expires_in": 3600, "purpose": "guardian"})
    problem(share, 404, "record_not_found")
    problem(http.get(f"/v1/records/{rid}/document", headers=auth(receiver)), 404,
            "record_not_found")


def test_transfer_refusals(http: Any, api_keys: dict[str, str]) -> None:
    key = api_keys["school-1"]
    cases = [
        ({"student_id": MOVED_PUPIL, "to_school": "NO-SUCH-SCHOOL"}, 422, "school_unknown"),
        ({"student_id": MOVED_PUPIL, "to_school": "DEMO-SCHOOL-1"}, 422, "body_invalid"),
        ({"student_id": "123", "to_school": "DEMO-SCHOOL-2"}, 422, "student_id_invalid"),
        ({"student_id": "999217000555", "to_school": "DEMO-SCHOOL-2"}, 422,
         "student_id_invalid"),
        ({"student_id": MOVED_PUPIL, "to_school": "DEMO-SCHOOL-2",
          "from_school": "DEMO-SCHOOL-2"}, 404, "school_not_found"),
        ({"student_id": MOVED_PUPIL}, 422, "body_invalid"),
    ]
    for body, status, code in cases:
        problem(http.post("/v1/transfers", headers=auth(key), json=body), status, code)
    problem(http.get("/v1/transfers/no-such-transfer", headers=auth(key)), 404,
            "transfer_not_found")


# -- share links: listed, revoked ----------------------------------------------------------


def test_share_link_can_be_listed_and_revoked(app: Any, http: Any, archived: dict[str, Any],
                                              api_keys: dict[str, str]) -> None:
    key = api_keys["school-1"]
    rid = archived["id"]
    resp = http.post(f"/v1/archive/records/{rid}/share", headers=auth(key),
                     json={"expires_in": 3600, "purpose": "guardian"})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    link = resp.get_json()
    token_path = urlsplit(link["url"]).path
    assert urlsplit(link["page_url"]).path == token_path.removeprefix("/v1")
    assert http.get(token_path).status_code == 200

    listed = http.get(f"/v1/archive/records/{rid}/shares", headers=auth(key)).get_json()
    mine = [item for item in listed["items"] if item["id"] == link["id"]]
    assert mine and mine[0]["state"] == "live" and mine[0]["uses"] == 1
    assert token_path.rsplit("/", 1)[1] not in str(listed)  # the token is never shown again
    problem(http.get(f"/v1/archive/records/{rid}/shares", headers=auth(api_keys["school-2"])),
            404, "record_not_found")
    problem(http.post(f"/v1/archive/records/{rid}/shares/{link['id']}/revoke",
                      headers=auth(api_keys["school-2"])), 404, "record_not_found")

    revoked = http.post(f"/v1/archive/records/{rid}/shares/{link['id']}/revoke",
                        headers=auth(key))
    assert revoked.status_code == 200, revoked.get_data(as_text=True)
    assert revoked.get_json()["state"] == "revoked" and revoked.get_json()["revoked_at"]
    again = http.post(f"/v1/archive/records/{rid}/shares/{link['id']}/revoke",
                      headers=auth(key))
    assert again.get_json()["revoked_at"] == revoked.get_json()["revoked_at"]
    assert len([r for r in audit(app, rid, "share_link.revoked")
                if r.detail["link_id"] == link["id"]]) == 1
    problem(http.get(token_path), 410, "share_link_revoked")
    problem(http.post(f"/v1/archive/records/{rid}/shares/not-a-link/revoke",
                      headers=auth(key)), 404, "share_link_not_found")


# -- every read of a document is audited ---------------------------------------------------


def test_each_document_read_leaves_an_audit_row(app: Any, http: Any, archived: dict[str, Any],
                                               api_keys: dict[str, str]) -> None:
    key = api_keys["school-1"]
    rid = archived["id"]
    before = len(audit(app, rid, READ))
    assert http.get(f"/v1/records/{rid}/document", headers=auth(key)).status_code == 200
    doc = http.get(f"/v1/records/{rid}/document?purpose=transcript_check",
                   headers=auth(key))
    assert doc.status_code == 200
    rows = audit(app, rid, READ)
    assert len(rows) == before + 2
    assert [r.detail["purpose"] for r in rows[-2:]] == ["school_system", "transcript_check"]
    assert all(r.actor == "client:school-1" for r in rows[-2:])
    problem(http.get(f"/v1/records/{rid}/document?purpose=Bad%20Purpose", headers=auth(key)),
            400, "query_invalid")
    # a conditional GET that sends nothing reads nothing
    etag = doc.headers["ETag"]
    cached = http.get(f"/v1/records/{rid}/document",
                      headers={**auth(key), "If-None-Match": etag})
    assert cached.status_code == 304
    assert len(audit(app, rid, READ)) == before + 2
    # a share link's use is audited with the link's purpose
    link = http.post(f"/v1/archive/records/{rid}/share", headers=auth(key),
                     json={"expires_in": 3600, "purpose": "transfer"}).get_json()
    assert http.get(urlsplit(link["url"]).path).status_code == 200
    used = audit(app, rid, "share_link.used")
    assert used and used[-1].detail["purpose"] == "transfer"


# -- nothing personal without a key ----------------------------------------------------------


def test_no_keyless_get_reveals_a_pupil_an_id_number_or_a_uid(
        app: Any, http: Any, archived: dict[str, Any]) -> None:
    """Every GET route of the app, asked without a key with this archived record's id,
    verification code or a made-up token in its path: no answer holds the pupil's name, a
    12-digit number, a certificate UID or the document."""
    import re

    from archive.verification import display

    row = app.extensions["hocba"].index.get_record(archived["id"])
    values = {"record_id": row.id, "code": display(row.verification_code),
              "token": "A" * 43, "version": "1", "job_id": "x", "transfer_id": "x",
              "link_id": "x", "session_id": "x", "filename": "x"}
    pupil_name = metadata(FPDF2)["student"]["full_name"]
    asked = 0
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()):
            continue
        path = rule.rule
        for name in rule.arguments:
            path = re.sub(rf"<(?:[a-z]+:)?{name}>", values.get(name, "x"), path)
        for url in (path, path + "/document", path + "?lang=en"):
            resp = http.get(url)
            text = resp.get_data(as_text=True) if resp.mimetype != "application/pdf" else ""
            assert resp.mimetype != "application/pdf", url
            assert pupil_name not in text, url
            if url.startswith("/metrics"):  # sample values are measurements: check the rest
                text = re.sub(r" [0-9.e+-]+$", "", text, flags=re.MULTILINE)
            assert not re.search(r"\d{12}", text), (url, text[:300])
            assert "UID=" not in text and "CCCD" not in text, url
            asked += 1
    assert asked > 30
    assert http.get(f"/verify/{values['code']}/document").status_code == 404
    assert http.get(f"/verify/{row.id}/document").status_code == 404
    assert "Học bạ hợp lệ" in http.get(f"/verify/{values['code']}").get_data(as_text=True)
