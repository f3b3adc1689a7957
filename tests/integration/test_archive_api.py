"""The archive API with real parts: a correction chain of three archived versions,
version downloads, BagIt packages, share links (before and after expiry, every use
audited), listing with a cursor, statistics, and tenant isolation."""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import bagit
import pytest

from tests.integration.helpers import auth, make_app, metadata, problem, sign, upload

pytestmark = pytest.mark.integration

FPDF2 = "hoc-ba-tieu-hoc-fpdf2.pdf"
PDFA = "hoc-ba-thcs-libreoffice-pdfa.pdf"
ROLES = (("teacher", "school-1-teacher"), ("principal", "school-1-principal"),
         ("seal", "school-1-seal"))
YEAR = "2024-2025"
EXTRA_PUPILS = ("001217000101", "001217000102", "001217000103", "001217000104")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, service_env: dict[str, str],
        responder: Any) -> Any:
    responder.start()
    return make_app(service_env, tmp_path_factory.mktemp("archive-api"))


@pytest.fixture
def http(app: Any, responder: Any) -> Any:
    responder.start()  # another module may have stopped it
    return app.test_client()


def sign_all(http: Any, key: str, record_id: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for role, signer_key in ROLES:
        resp = sign(http, key, record_id, role, signer_key)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        body = resp.get_json()
    assert body["status"] == "archived"
    return body


@pytest.fixture(scope="module")
def chain(app: Any, responder: Any, api_keys: dict[str, str],
          samples: dict[str, bytes]) -> list[dict[str, Any]]:
    """v1 archived; v2 corrects v1; v3 corrects v2; each signed by teacher, principal and
    seal with DEMO-SCHOOL-1 keys and archived. Returns the three records (as archived),
    with `pdf`: the archived bytes."""
    responder.start()
    http = app.test_client()
    key = api_keys["school-1"]
    records: list[dict[str, Any]] = []
    supersedes = None
    for _ in range(3):
        resp = upload(http, key, samples[FPDF2], metadata(FPDF2, supersedes=supersedes))
        assert resp.status_code == 201, resp.get_data(as_text=True)
        record = sign_all(http, key, resp.get_json()["id"])
        doc = http.get(f"/v1/records/{record['id']}/document", headers=auth(key))
        assert doc.status_code == 200
        record["pdf"] = doc.data
        records.append(record)
        supersedes = record["id"]
    return records


@pytest.fixture(scope="module")
def extras(app: Any, api_keys: dict[str, str], samples: dict[str, bytes]) -> dict[str, Any]:
    """More records, awaiting signatures: four of other DEMO-SCHOOL-1 pupils in 2024-2025,
    one of DEMO-SCHOOL-1 in 2023-2024 and one of DEMO-SCHOOL-2 in 2024-2025."""
    http = app.test_client()
    school_1: list[str] = []
    for id_number in EXTRA_PUPILS:
        meta = metadata(FPDF2)
        meta["student"] = {**meta["student"], "id_number": id_number}
        resp = upload(http, api_keys["school-1"], samples[FPDF2], meta)
        assert resp.status_code == 201, resp.get_data(as_text=True)
        school_1.append(resp.get_json()["id"])
    older = upload(http, api_keys["school-1"], samples[FPDF2],
                   metadata(FPDF2, school_year="2023-2024"))
    assert older.status_code == 201, older.get_data(as_text=True)
    other = upload(http, api_keys["school-2"], samples[PDFA],
                   metadata(PDFA, school="DEMO-SCHOOL-2"))
    assert other.status_code == 201, other.get_data(as_text=True)
    return {"school_1": school_1, "older": older.get_json()["id"],
            "school_2": other.get_json()["id"]}


def audit(app: Any, record_id: str, action: str) -> list[Any]:
    rows = app.extensions["hocba"].index.list_audit(record_id, limit=1000)
    return [r for r in rows if r.action == action]


# -- the chain and its versions ---------------------------------------------------------


def test_correction_chain_is_linked_both_ways(http: Any, api_keys: dict[str, str],
                                              chain: list[dict[str, Any]]) -> None:
    ids = [r["id"] for r in chain]
    links = [(None, ids[1]), (ids[0], ids[2]), (ids[1], None)]
    for record, (older, newer) in zip(chain, links, strict=True):
        for who in ("archivist", "school-1", "platform"):
            resp = http.get(f"/v1/archive/records/{record['id']}", headers=auth(api_keys[who]))
            assert resp.status_code == 200, resp.get_data(as_text=True)
            body = resp.get_json()
            assert (body["supersedes"], body["superseded_by"]) == (older, newer)
            assert body["status"] == "archived"
            assert [c["id"] for c in body["chain"]] == ids
            assert [c["chain_version"] for c in body["chain"]] == [1, 2, 3]
            assert body["chain_version"] == ids.index(record["id"]) + 1
        # the plain record view says the same
        view = http.get(f"/v1/records/{record['id']}", headers=auth(api_keys["school-1"]))
        assert (view.get_json()["supersedes"], view.get_json()["superseded_by"]) == (older,
                                                                                   newer)


def test_each_version_downloads_the_archived_bytes(http: Any, api_keys: dict[str, str],
                                                   chain: list[dict[str, Any]]) -> None:
    key = auth(api_keys["archivist"])
    for record in chain:
        resp = http.get(f"/v1/archive/records/{record['id']}/versions", headers=key)
        assert resp.status_code == 200
        versions = resp.get_json()
        sha = hashlib.sha256(record["pdf"]).hexdigest()
        assert versions == [{"version": 1, "sha256": sha, "size": len(record["pdf"]),
                             "created_at": record["archive"]["archived_at"],
                             "reason": "archived",
                             "timestamp_valid_until": "2035-01-01T00:00:00Z"}]
        assert record["archive"]["sha256"] == sha and record["archive"]["version"] == 1
        doc = http.get(f"/v1/archive/records/{record['id']}/versions/1/document", headers=key)
        assert doc.status_code == 200 and doc.mimetype == "application/pdf"
        assert doc.data == record["pdf"]
        assert doc.headers["ETag"] == f'"{sha}"'
        again = http.get(f"/v1/archive/records/{record['id']}/versions/1/document",
                         headers={**key, "If-None-Match": f'"{sha}"'})
        assert again.status_code == 304
        problem(http.get(f"/v1/archive/records/{record['id']}/versions/2/document",
                         headers=key), 404, "version_not_found")
    # the three versions are three different archived files, each verifying as archived
    assert len({hashlib.sha256(r["pdf"]).hexdigest() for r in chain}) == 3


def test_a_record_awaiting_signatures_has_no_versions_yet(
        http: Any, api_keys: dict[str, str], extras: dict[str, Any]) -> None:
    key = auth(api_keys["archivist"])
    resp = http.get(f"/v1/archive/records/{extras['school_1'][0]}/versions", headers=key)
    assert resp.status_code == 200 and resp.get_json() == []
    problem(http.get(f"/v1/archive/records/{extras['school_1'][0]}/package", headers=key),
            409, "record_not_archived")


# -- the package ------------------------------------------------------------------------


def test_package_is_a_valid_bagit_bag(app: Any, http: Any, api_keys: dict[str, str],
                                      chain: list[dict[str, Any]], tmp_path: Path) -> None:
    middle = chain[1]
    resp = http.get(f"/v1/archive/records/{middle['id']}/package",
                    headers=auth(api_keys["archivist"]))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.mimetype == "application/zip"
    assert f'filename="{middle["id"]}.zip"' in resp.headers["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(resp.data)) as zf:
        zf.extractall(tmp_path)
    bag_dir = tmp_path / middle["id"]
    bag = bagit.Bag(str(bag_dir))
    bag.validate()
    assert (bag_dir / "manifest-sha256.txt").is_file()
    assert (bag_dir / "data" / "versions" / "v1.pdf").read_bytes() == middle["pdf"]
    assert bag.info["Source-Organization"] == "Trường Tiểu học Nguyễn Du"
    assert bag.info["External-Identifier"] == middle["id"]
    assert bag.info["Bagging-Date"]
    meta = json.loads((bag_dir / "data" / "metadata.json").read_text(encoding="utf-8"))
    assert meta["record"]["id"] == middle["id"]
    assert meta["metadata"]["student"]["full_name"] == "Phạm Gia Huy"
    assert [s["role"] for s in meta["signatures"]] == ["teacher", "principal", "seal"]
    assert [v["sha256"] for v in meta["versions"]] == [middle["archive"]["sha256"]]
    assert meta["chain"]["supersedes"] == chain[0]["id"]
    assert meta["chain"]["superseded_by"] == chain[2]["id"]
    assert [c["id"] for c in meta["chain"]["records"]] == [r["id"] for r in chain]
    assert meta["evidence_records"] == []
    assert (bag_dir / "data" / "evidence" / "README.txt").is_file()
    report = json.loads((bag_dir / "data" / "validation-report.json").read_text())
    assert report["indication"] == "TOTAL_PASSED"
    assert report["level"] == "PAdES-B-LTA"
    # the package is for a key that covers the record: full report, with the record id
    assert report["archived"] == {"record_id": middle["id"], "version": 1}
    assert any("UID=" in s["signer"]["subject"] for s in report["signatures"])
    exported = audit(app, middle["id"], "record.package_exported")
    assert exported and exported[-1].detail["sha256"] == hashlib.sha256(resp.data).hexdigest()
    # the school may export its own record too
    own = http.get(f"/v1/archive/records/{middle['id']}/package",
                   headers=auth(api_keys["school-1"]))
    assert own.status_code == 200


# -- share links ------------------------------------------------------------------------


def share(http: Any, key: str, record_id: str, **body: Any) -> Any:
    return http.post(f"/v1/archive/records/{record_id}/share", headers=auth(key), json=body)


def test_share_link_serves_the_archived_pdf_without_a_key_and_audits_each_use(
        app: Any, http: Any, api_keys: dict[str, str], chain: list[dict[str, Any]]) -> None:
    record = chain[2]
    resp = share(http, api_keys["school-1"], record["id"], expires_in=3600, purpose="guardian")
    assert resp.status_code == 201, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["purpose"] == "guardian" and body["record_id"] == record["id"]
    assert resp.headers["Cache-Control"] == "no-store"
    path = urlsplit(body["url"]).path
    token = path.rsplit("/", 1)[1]
    # only the token's hash is kept
    link = app.extensions["hocba"].index.get_share_link(hashlib.sha256(token.encode())
                                                        .hexdigest())
    assert link is not None and link.record_id == record["id"]
    assert link.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") == body["expires_at"]
    for n in (1, 2):
        got = http.get(path)  # no Authorization header
        assert got.status_code == 200 and got.mimetype == "application/pdf"
        assert got.data == record["pdf"]
        assert got.headers["Referrer-Policy"] == "no-referrer"
        assert "no-store" in got.headers["Cache-Control"]
        uses = audit(app, record["id"], "share_link.used")
        assert [u.detail["uses"] for u in uses] == list(range(1, n + 1))
        assert {u.actor for u in uses} == {"share-link"}
    created = audit(app, record["id"], "share_link.created")
    assert created[-1].actor == "client:school-1"
    assert created[-1].detail["token_sha256"] == link.token_sha256
    assert token not in json.dumps([r.detail for r in app.extensions["hocba"].index
                                    .list_audit(record["id"], limit=1000)])
    # the archivist may make one too, for a school transfer
    transfer = share(http, api_keys["archivist"], record["id"], expires_in=86400,
                     purpose="transfer")
    assert transfer.status_code == 201
    problem(http.get("/v1/shared/" + "A" * 43), 404, "share_link_not_found")
    problem(http.get("/v1/shared/short"), 404, "share_link_not_found")


def test_share_link_expires(app: Any, http: Any, api_keys: dict[str, str],
                            chain: list[dict[str, Any]]) -> None:
    record = chain[0]
    problem(share(http, api_keys["archivist"], record["id"], expires_in=30,
                  purpose="guardian"), 422, "body_invalid")
    shares = app.extensions["hocba"].shares
    shares.min_seconds = 1
    try:
        resp = share(http, api_keys["archivist"], record["id"], expires_in=2,
                     purpose="guardian")
    finally:
        shares.min_seconds = 60
    assert resp.status_code == 201, resp.get_data(as_text=True)
    path = urlsplit(resp.get_json()["url"]).path
    got = http.get(path)
    assert got.status_code == 200 and got.data == record["pdf"]
    time.sleep(2.2)
    problem(http.get(path), 410, "share_link_expired")
    problem(http.get(path), 410, "share_link_expired")
    assert len(audit(app, record["id"], "share_link.used")) == 1
    refused = audit(app, record["id"], "share_link.refused")
    assert len(refused) == 2 and refused[0].detail["reason"] == "expired"


def test_share_refusals(http: Any, api_keys: dict[str, str], chain: list[dict[str, Any]],
                        extras: dict[str, Any]) -> None:
    key = api_keys["school-1"]
    record_id = chain[0]["id"]
    body = problem(share(http, key, record_id, expires_in=10**9, purpose="press"), 422,
                   "body_invalid")
    assert {e["field"] for e in body["errors"]} == {"expires_in", "purpose"}
    problem(share(http, key, record_id, expires_in="3600", purpose="guardian"), 422,
            "body_invalid")
    problem(share(http, key, record_id, expires_in=True, purpose="guardian"), 422,
            "body_invalid")
    problem(http.post(f"/v1/archive/records/{record_id}/share", headers=auth(key),
                      data="nope", content_type="application/json"), 400, "body_invalid_json")
    problem(share(http, key, extras["school_1"][0], expires_in=3600, purpose="guardian"),
            409, "record_not_archived")
    problem(share(http, api_keys["admin"], record_id, expires_in=3600, purpose="guardian"),
            403, "scope_missing")
    problem(http.post(f"/v1/archive/records/{record_id}/share",
                      json={"expires_in": 3600, "purpose": "guardian"}), 401, "unauthorized")


# -- listing ----------------------------------------------------------------------------


def test_archivist_lists_by_school_and_year_page_by_page(
        http: Any, api_keys: dict[str, str], chain: list[dict[str, Any]],
        extras: dict[str, Any]) -> None:
    key = auth(api_keys["archivist"])
    expected = [r["id"] for r in chain] + extras["school_1"]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"school_code": "DEMO-SCHOOL-1", "school_year": YEAR, "limit": "2"}
        if cursor:
            query["cursor"] = cursor
        resp = http.get("/v1/archive/records", headers=key, query_string=query)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        body = resp.get_json()
        pages += 1
        assert len(body["items"]) <= 2
        seen.extend(item["id"] for item in body["items"])
        assert all(item["school"]["code"] == "DEMO-SCHOOL-1" and item["school_year"] == YEAR
                   for item in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == expected  # creation order, each once
    assert pages == 4  # 7 records, 2 a page, no empty last page

    def ids(**query: str) -> list[str]:
        resp = http.get("/v1/archive/records", headers=key, query_string=query)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return [item["id"] for item in resp.get_json()["items"]]

    assert ids(school_code="DEMO-SCHOOL-1", status="archived") == [r["id"] for r in chain]
    assert ids(student_id="001217000777") == [r["id"] for r in chain] + [extras["older"]]
    assert ids(school_year=YEAR, record_type="hoc_ba_thcs") == [extras["school_2"]]
    everything = ids(limit="500")
    assert set(everything) == {*expected, extras["older"], extras["school_2"]}
    # the view of an archived item says so
    first = http.get("/v1/archive/records", headers=key,
                     query_string={"status": "archived", "limit": "1"}).get_json()
    assert first["items"][0]["archive"]["version"] == 1 and first["next_cursor"]


def test_listing_refusals(http: Any, api_keys: dict[str, str], chain: list[dict[str, Any]]
                          ) -> None:
    key = auth(api_keys["archivist"])
    for cursor in ("garbage!", "bm90IGpzb24", "WyJ4IiwgInkiXQ", "x" * 300):
        problem(http.get("/v1/archive/records", headers=key, query_string={"cursor": cursor}),
                400, "cursor_invalid")
    for limit in ("0", "-3", "ten"):
        problem(http.get("/v1/archive/records", headers=key, query_string={"limit": limit}),
                400, "limit_invalid")
    problem(http.get("/v1/archive/records", headers=key, query_string={"status": "lost"}),
            400, "query_invalid")
    problem(http.get("/v1/archive/records", headers=key, query_string={"school_year": "2024"}),
            400, "query_invalid")
    problem(http.get("/v1/archive/records", headers=key,
                     query_string={"school_code": "DEMO-SCHOOL-9"}), 404, "school_not_found")
    problem(http.get("/v1/archive/records", headers=auth(api_keys["school-1"])), 403,
            "scope_missing")
    big = http.get("/v1/archive/records", headers=key, query_string={"limit": "5000"})
    assert big.status_code == 200  # capped at 500


# -- statistics -------------------------------------------------------------------------


def test_stats_for_a_school_and_for_the_department(http: Any, api_keys: dict[str, str],
                                                   chain: list[dict[str, Any]],
                                                   extras: dict[str, Any]) -> None:
    key = auth(api_keys["admin"])
    one = http.get("/v1/stats", headers=key,
                   query_string={"school_code": "DEMO-SCHOOL-1", "school_year": YEAR})
    assert one.status_code == 200, one.get_data(as_text=True)
    body = one.get_json()
    assert body["schools"] == ["DEMO-SCHOOL-1"] and body["school_year"] == YEAR
    assert body["total"] == 7 and body["superseded"] == 2
    assert body["by_status"] == {"archived": 3, "awaiting_signatures": 4}
    assert body["by_record_type"]["hoc_ba_tieu_hoc"] == {
        "total": 7, "archived": 3, "awaiting_signatures": 4}
    assert body["by_record_type"]["hoc_ba_thcs"]["total"] == 0

    dept = http.get("/v1/stats", headers=key).get_json()
    assert dept["tenant"] == "DEMO-DEPT"
    assert dept["schools"] == ["DEMO-SCHOOL-1", "DEMO-SCHOOL-2"]
    assert dept["total"] == 9
    assert dept["by_status"] == {"archived": 3, "awaiting_signatures": 6}
    assert dept["by_school"]["DEMO-SCHOOL-1"]["total"] == 8
    assert dept["by_school"]["DEMO-SCHOOL-2"]["by_record_type"]["hoc_ba_thcs"]["total"] == 1
    year = http.get("/v1/stats", headers=key, query_string={"school_year": "2023-2024"})
    assert year.get_json()["total"] == 1

    problem(http.get("/v1/stats", headers=key, query_string={"school_code": "DEMO-SCHOOL-9"}),
            404, "school_not_found")
    problem(http.get("/v1/stats", headers=auth(api_keys["archivist"])), 403, "scope_missing")


# -- tenancy ----------------------------------------------------------------------------


def test_another_school_gets_404_for_everything(http: Any, api_keys: dict[str, str],
                                                chain: list[dict[str, Any]]) -> None:
    key = auth(api_keys["school-2"])
    record_id = chain[1]["id"]
    answers: dict[str, list[dict[str, Any]]] = {}
    for rid in (record_id, "00000000-0000-0000-0000-000000000000"):
        answers[rid] = [problem(resp, 404, "record_not_found") for resp in (
            http.get(f"/v1/archive/records/{rid}", headers=key),
            http.get(f"/v1/archive/records/{rid}/versions", headers=key),
            http.get(f"/v1/archive/records/{rid}/versions/1/document", headers=key),
            http.get(f"/v1/archive/records/{rid}/package", headers=key),
            share(http, api_keys["school-2"], rid, expires_in=3600, purpose="transfer"),
        )]
    # a foreign record cannot be told from a missing one
    foreign, missing = answers.values()
    for a, b in zip(foreign, missing, strict=True):
        assert {k: a[k] for k in ("type", "title", "status", "code")} == {
            k: b[k] for k in ("type", "title", "status", "code")}
    assert audit(http.application, record_id, "share_link.created") == []
    # and school-2's listing scope does not exist; its stats neither
    problem(http.get("/v1/archive/records", headers=key), 403, "scope_missing")
    problem(http.get("/v1/stats", headers=key), 403, "scope_missing")
