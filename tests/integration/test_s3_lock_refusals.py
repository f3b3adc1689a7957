"""The S3 server itself refuses to lose an archived object (SeaweedFS, a real server).

The store never tries any of this; these tests try it *around* the store, with full
(Admin) credentials, to prove the lock holds against someone who does. Each attempt must
be refused and leave the object version in place with the same bytes. A server that
accepts one of them fails the test: it is not fit for the archive.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from archive.store import Area
from archive.store.s3 import S3ObjectLockStore
from tests.seaweed import SeaweedServer, start_or_skip

pytestmark = pytest.mark.integration

FINAL = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n3 0 obj\n<< /DocTimeStamp >>\nendobj\n%%EOF\n"


@pytest.fixture(scope="module")
def seaweed() -> Iterator[SeaweedServer]:
    server = start_or_skip()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def raw(seaweed: SeaweedServer) -> Any:
    return seaweed.client(retries=0)


@pytest.fixture
def archived(seaweed: SeaweedServer, raw: Any) -> dict[str, Any]:
    """An object archived by the store: COMPLIANCE ~100 years and a legal hold."""
    store = S3ObjectLockStore(f"hocba-{uuid.uuid4().hex[:20]}", client=raw)
    stored = store.put_archived(FINAL)
    key = store.key_of(stored.sha256, Area.ARCHIVE)
    head = raw.head_object(Bucket=store.bucket, Key=key)
    retention = raw.get_object_retention(Bucket=store.bucket, Key=key)["Retention"]
    return {
        "store": store,
        "sha256": stored.sha256,
        "Bucket": store.bucket,
        "Key": key,
        "VersionId": head["VersionId"],
        "until": retention["RetainUntilDate"],
    }


def assert_refused(attempt: Any, *args: Any, **kwargs: Any) -> ClientError:
    with pytest.raises(ClientError) as info:
        attempt(*args, **kwargs)
    return info.value


def assert_intact(raw: Any, obj: dict[str, Any], *, legal_hold: str = "ON") -> None:
    """The very version the store wrote is still there, same bytes, same lock."""
    where = {"Bucket": obj["Bucket"], "Key": obj["Key"], "VersionId": obj["VersionId"]}
    assert raw.get_object(**where)["Body"].read() == FINAL
    retention = raw.get_object_retention(**where)["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    assert retention["RetainUntilDate"] >= obj["until"]
    assert raw.get_object_legal_hold(**where)["LegalHold"]["Status"] == legal_hold
    versions = raw.list_object_versions(Bucket=obj["Bucket"], Prefix=obj["Key"])["Versions"]
    assert [v["VersionId"] for v in versions if v["Key"] == obj["Key"]] == [obj["VersionId"]]
    if legal_hold == "ON":
        assert obj["store"].get(obj["sha256"], Area.ARCHIVE) == FINAL


def test_deleting_the_locked_version_is_refused(raw: Any, archived: dict[str, Any]) -> None:
    error = assert_refused(
        raw.delete_object,
        Bucket=archived["Bucket"],
        Key=archived["Key"],
        VersionId=archived["VersionId"],
    )
    assert error.response["Error"]["Code"] == "AccessDenied"
    assert_intact(raw, archived)


def test_bulk_delete_of_the_locked_version_is_refused(raw: Any, archived: dict[str, Any]) -> None:
    # DeleteObjects answers 200 and lists per-object errors: the refusal is in there.
    answer = raw.delete_objects(
        Bucket=archived["Bucket"],
        Delete={"Objects": [{"Key": archived["Key"], "VersionId": archived["VersionId"]}]},
        BypassGovernanceRetention=True,
    )
    assert answer.get("Deleted", []) == []
    assert [e["Code"] for e in answer["Errors"]] == ["AccessDenied"]
    assert_intact(raw, archived)


def test_shortening_compliance_retention_is_refused(raw: Any, archived: dict[str, Any]) -> None:
    for until in (archived["until"] - timedelta(days=1), datetime.now(UTC) + timedelta(days=1)):
        for bypass in (False, True):
            assert_refused(
                raw.put_object_retention,
                Bucket=archived["Bucket"],
                Key=archived["Key"],
                VersionId=archived["VersionId"],
                Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
                BypassGovernanceRetention=bypass,
            )
            assert_intact(raw, archived)


def test_switching_to_governance_is_refused(raw: Any, archived: dict[str, Any]) -> None:
    for until in (archived["until"], archived["until"] + timedelta(days=365)):
        for bypass in (False, True):
            assert_refused(
                raw.put_object_retention,
                Bucket=archived["Bucket"],
                Key=archived["Key"],
                VersionId=archived["VersionId"],
                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until},
                BypassGovernanceRetention=bypass,
            )
            assert_intact(raw, archived)


def test_delete_with_bypass_governance_is_refused(raw: Any, archived: dict[str, Any]) -> None:
    error = assert_refused(
        raw.delete_object,
        Bucket=archived["Bucket"],
        Key=archived["Key"],
        VersionId=archived["VersionId"],
        BypassGovernanceRetention=True,
    )
    assert error.response["Error"]["Code"] == "AccessDenied"
    assert_intact(raw, archived)


def test_without_the_legal_hold_compliance_retention_still_refuses_delete(
    raw: Any, archived: dict[str, Any]
) -> None:
    where = {
        "Bucket": archived["Bucket"],
        "Key": archived["Key"],
        "VersionId": archived["VersionId"],
    }
    # Removing a legal hold is allowed (to whoever has the permission): S3 semantics.
    raw.put_object_legal_hold(**where, LegalHold={"Status": "OFF"})

    for bypass in (False, True):
        assert_refused(raw.delete_object, **where, BypassGovernanceRetention=bypass)
        assert_intact(raw, archived, legal_hold="OFF")

    # ...and the store no longer calls that object archived.
    store: S3ObjectLockStore = archived["store"]
    assert not store.lock_is_sufficient(store.lock_info(archived["sha256"], Area.ARCHIVE))


def test_overwriting_through_if_none_match_is_refused(raw: Any, archived: dict[str, Any]) -> None:
    error = assert_refused(
        raw.put_object,
        Bucket=archived["Bucket"],
        Key=archived["Key"],
        Body=b"%PDF-1.7 forged",
        IfNoneMatch="*",
    )
    assert error.response["Error"]["Code"] == "PreconditionFailed"
    assert_intact(raw, archived)


def test_suspending_versioning_or_deleting_the_bucket_is_refused(
    raw: Any, archived: dict[str, Any]
) -> None:
    assert_refused(
        raw.put_bucket_versioning,
        Bucket=archived["Bucket"],
        VersioningConfiguration={"Status": "Suspended"},
    )
    assert raw.get_bucket_versioning(Bucket=archived["Bucket"])["Status"] == "Enabled"
    assert_refused(raw.delete_bucket, Bucket=archived["Bucket"])
    assert_intact(raw, archived)


def test_working_objects_are_locked_too(raw: Any, archived: dict[str, Any]) -> None:
    """Short retention, but COMPLIANCE all the same: a working revision can't be removed
    while a record is being signed."""
    store: S3ObjectLockStore = archived["store"]
    stored = store.put(b"%PDF-1.7 working revision", Area.WORKING)
    key = store.key_of(stored.sha256, Area.WORKING)
    version = raw.head_object(Bucket=store.bucket, Key=key)["VersionId"]

    assert_refused(
        raw.delete_object,
        Bucket=store.bucket,
        Key=key,
        VersionId=version,
        BypassGovernanceRetention=True,
    )
    assert store.get(stored.sha256, Area.WORKING) == b"%PDF-1.7 working revision"
