"""Retention is extended before it nears its end, against a real S3 server (SeaweedFS)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from archive.index import Index
from archive.retention import extend_due
from archive.store import Area, FilesystemStore
from archive.store.s3 import S3ObjectLockStore
from tests.seaweed import SeaweedServer, start_or_skip

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def seaweed() -> Iterator[SeaweedServer]:
    server = start_or_skip()
    yield server
    server.stop()


def _archive(index: Index, store: object, data: bytes) -> str:
    obj = store.put_archived(data)  # type: ignore[attr-defined]
    rec = index.create_record(
        tenant="T", school_code="S", school_name="S", record_type="hoc_ba_thcs",
        policy="p@1", student_id_number=f"0012110{len(data):05d}", school_year="2024-2025",
        metadata_json="{}", original=store.put(data[:10], Area.WORKING),  # type: ignore[attr-defined]
        actor="t", audit_detail={})
    index.mark_archived(rec.id, rec.current_sha256, obj, actor="t", audit_detail={})
    return str(obj.sha256)


def test_objects_near_their_end_are_extended(seaweed: SeaweedServer, tmp_path: Path) -> None:
    store = S3ObjectLockStore("retention-test", endpoint_url=seaweed.endpoint_url,
                              client=seaweed.client(), archive_retention_days=30)
    index = Index(f"sqlite:///{tmp_path / 'i.sqlite3'}")
    index.migrate()
    sha = _archive(index, store, b"%PDF-1.7 archived record one " * 10)
    before = store.lock_info(sha, Area.ARCHIVE)
    assert before.retain_until is not None
    now = datetime.now(UTC)

    quiet = extend_due(store, index, now=now, horizon=timedelta(days=10),
                       extend_by=timedelta(days=3650))
    assert quiet.checked == 1 and quiet.extended == []

    report = extend_due(store, index, now=now, horizon=timedelta(days=60),
                        extend_by=timedelta(days=3650))
    assert report.extended == [sha] and report.errors == []
    after = store.lock_info(sha, Area.ARCHIVE)
    assert after.retain_until is not None and after.retain_until > before.retain_until
    assert after.retain_until >= now + timedelta(days=3649)
    assert after.mode == "COMPLIANCE" and after.legal_hold
    assert any(a.action == "retention.extend" for a in index.list_audit())
    index.close()


def test_filesystem_store_has_no_dates_to_extend(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "store")
    index = Index(f"sqlite:///{tmp_path / 'i.sqlite3'}")
    index.migrate()
    _archive(index, store, b"%PDF-1.7 archived record two " * 10)
    report = extend_due(store, index, now=datetime.now(UTC), horizon=timedelta(days=60),
                        extend_by=timedelta(days=3650))
    assert report.checked == 1 and report.without_dates == 1 and report.extended == []
    index.close()


def test_cli_extends_on_s3(seaweed: SeaweedServer, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from signer.cli import main

    store = S3ObjectLockStore("retention-cli", endpoint_url=seaweed.endpoint_url,
                              client=seaweed.client(), archive_retention_days=30)
    index_url = f"sqlite:///{tmp_path / 'i.sqlite3'}"
    index = Index(index_url)
    index.migrate()
    sha = _archive(index, store, b"%PDF-1.7 archived record three " * 10)
    index.close()
    for k, v in {"HOCBA_STORE": "s3://retention-cli", "HOCBA_INDEX_URL": index_url,
                 "HOCBA_S3_ENDPOINT_URL": seaweed.endpoint_url,
                 "AWS_ACCESS_KEY_ID": seaweed.access_key,
                 "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    result = CliRunner().invoke(main, ["archive", "extend-retention", "--horizon-days", "60",
                                       "--extend-days", "3650"])
    assert result.exit_code == 0, result.output
    assert "1 archived objects checked, 1 extended" in result.output
    lock = store.lock_info(sha, Area.ARCHIVE)
    assert lock.retain_until is not None
    assert lock.retain_until > datetime.now(UTC) + timedelta(days=3000)
