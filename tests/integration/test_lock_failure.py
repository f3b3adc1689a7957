"""A store that keeps a weaker lock than asked: the record is never called archived, the
caller gets a retryable error, and /readyz reports it, in every worker and instance on
the same index, until an operator clears the flag (audited)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from archive.errors import LockMismatch
from tests.integration.helpers import auth, metadata, problem, sign, upload

pytestmark = pytest.mark.integration
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"
FLAG = "/v1/admin/flags/archive_lock"


@pytest.fixture
def other(app: Any, service_settings: Any) -> Iterator[Any]:
    """A second hocba instance on the same index and store (another worker or machine)."""
    from signer.http import create_app

    second = create_app(service_settings)
    second.testing = True
    yield second.test_client()
    second.extensions["hocba"].close()


def test_lock_mismatch_is_never_success(app: Any, http: Any, other: Any,
                                        api_keys: dict[str, str], samples: dict[str, bytes],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    service = app.extensions["hocba"]

    def lying_store(data: Any) -> Any:  # bytes or a file: the store lies either way
        raise LockMismatch("retain-until read back as 2026-12-01, asked 2126-11-23")

    key, admin = api_keys["school-1"], auth(api_keys["admin"])
    rid = upload(http, key, samples[SAMPLE], metadata(SAMPLE)).get_json()["id"]
    for role in ("teacher", "principal"):
        assert sign(http, key, rid, role, f"school-1-{role}").status_code == 200
    assert other.get("/readyz").status_code == 200
    monkeypatch.setattr(service.store, "put_archived", lying_store)
    monkeypatch.setattr(service.store, "put_archived_file", lying_store)
    r = sign(http, key, rid, "seal", "school-1-seal")
    assert r.status_code == 503 and r.get_json()["code"] == "store_error"
    rec = http.get(f"/v1/records/{rid}", headers=auth(key)).get_json()
    assert rec["status"] == "archiving" and rec["next_role"] is None and "archive" not in rec
    for instance in (http, other):  # the flag is in the index: both report it
        ready = instance.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["checks"]["archive_lock"].startswith("error: lock_mismatch")
        assert rid not in ready.get_data(as_text=True)  # /readyz is public
    flags = other.get("/v1/admin/flags", headers=admin).get_json()["flags"]
    assert [(f["name"], f["occurrences"]) for f in flags] == [("archive_lock", 1)]
    metrics = other.get("/metrics").get_data(as_text=True)
    assert 'hocba_service_flag{flag="archive_lock"} 1.0' in metrics

    monkeypatch.undo()
    again = sign(http, key, rid, "seal", "school-1-seal")  # the same request retries
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["status"] == "archived"
    assert [s["status"] for s in again.get_json()["signatures"]] == ["signed"] * 3
    # a good archive later does not clear it: an operator does, once the store is fixed
    assert http.get("/readyz").status_code == 503

    problem(other.delete(FLAG, headers=auth(key)), 403, "scope_missing")
    cleared = other.delete(FLAG, headers=admin)
    assert cleared.status_code == 200, cleared.get_json()
    assert cleared.get_json()["cleared"] is True
    assert cleared.get_json()["flag"]["occurrences"] == 1
    for instance in (http, other):
        ready = instance.get("/readyz")
        assert ready.status_code == 200, ready.get_json()
        assert ready.get_json()["checks"]["archive_lock"] == "ok"
    assert other.delete(FLAG, headers=admin).get_json()["cleared"] is False
    audit = [(a.action, a.actor, a.record_id) for a in service.index.list_audit(limit=500)
             if a.action.startswith("flag.")]
    assert audit == [("flag.raised", "client:school-1", rid),
                     ("flag.cleared", "client:admin", None)]


def test_clearing_an_unknown_flag_is_refused(http: Any, api_keys: dict[str, str]) -> None:
    problem(http.delete("/v1/admin/flags/anything", headers=auth(api_keys["admin"])),
            404, "flag_unknown")
    problem(http.delete(FLAG), 401, "unauthorized")
