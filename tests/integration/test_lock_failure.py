"""A store that keeps a weaker lock than asked: the record is never called archived, the
caller gets a retryable error, and /readyz reports it."""

from __future__ import annotations

from typing import Any

import pytest

from archive.errors import LockMismatch
from tests.integration.helpers import auth, metadata, sign, upload

pytestmark = pytest.mark.integration
SAMPLE = "hoc-ba-tieu-hoc-fpdf2.pdf"


def test_lock_mismatch_is_never_success(app: Any, http: Any, api_keys: dict[str, str],
                                        samples: dict[str, bytes],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    service = app.extensions["hocba"]

    def lying_store(data: Any) -> Any:  # bytes or a file: the store lies either way
        raise LockMismatch("retain-until read back as 2026-12-01, asked 2126-11-23")

    key = api_keys["school-1"]
    rid = upload(http, key, samples[SAMPLE], metadata(SAMPLE)).get_json()["id"]
    for role in ("teacher", "principal"):
        assert sign(http, key, rid, role, f"school-1-{role}").status_code == 200
    monkeypatch.setattr(service.store, "put_archived", lying_store)
    monkeypatch.setattr(service.store, "put_archived_file", lying_store)
    r = sign(http, key, rid, "seal", "school-1-seal")
    assert r.status_code == 503 and r.get_json()["code"] == "store_error"
    rec = http.get(f"/v1/records/{rid}", headers=auth(key)).get_json()
    assert rec["status"] == "awaiting_signatures" and "archive" not in rec
    ready = http.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["archive_lock"].startswith("error:")

    monkeypatch.undo()
    service.archiving.lock_failure = None
    again = sign(http, key, rid, "seal", "school-1-seal")  # the same request retries
    assert again.status_code == 200, again.get_json()
    assert again.get_json()["status"] == "archived"
    assert [s["status"] for s in again.get_json()["signatures"]] == ["signed"] * 3


def test_metrics_count_records_by_status(http: Any, api_keys: dict[str, str],
                                         samples: dict[str, bytes]) -> None:
    upload(http, api_keys["school-1"], samples[SAMPLE], metadata(SAMPLE))
    text = http.get("/metrics").get_data(as_text=True)
    assert 'hocba_records{status="awaiting_signatures"} 1' in text
    assert 'hocba_dependency_up{dependency="hsm"} 1' in text
    assert "# TYPE hocba_jobs gauge" in text
