"""S3ObjectLockStore against a real S3 server (SeaweedFS, started by tests/seaweed.py).

The same behaviours as the filesystem store's tests, plus what only S3 has: the retention
and legal hold read back on every archived object, short retention on working objects,
and client doubles that lie about the lock or the bytes (SeaweedFS itself does not lie).
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from archive.errors import (
    ArchiveError,
    LockMismatch,
    ObjectConflict,
    ObjectCorrupt,
    ObjectMissing,
)
from archive.store import Area, LockInfo, StoredObject, open_store
from archive.store.s3 import LIFECYCLE_RULE_ID, S3ObjectLockStore
from tests.seaweed import SeaweedServer, start_or_skip

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
REVISION = PDF + b"2 0 obj\n<< /Sig >>\nendobj\n%%EOF\n"
FINAL = REVISION + b"3 0 obj\n<< /DocTimeStamp >>\nendobj\n%%EOF\n"
DAY = timedelta(days=1)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def seaweed() -> Iterator[SeaweedServer]:
    server = start_or_skip()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def raw(seaweed: SeaweedServer) -> Any:
    """A plain boto3 client: to look behind the store's back, or to tamper."""
    return seaweed.client()


@pytest.fixture
def bucket() -> str:
    return f"hocba-{uuid.uuid4().hex[:20]}"


@pytest.fixture
def make_store(seaweed: SeaweedServer, raw: Any, bucket: str) -> Callable[..., S3ObjectLockStore]:
    def make(client: Any = None, **kwargs: Any) -> S3ObjectLockStore:
        kwargs.setdefault("prefix", "school-a/")
        return S3ObjectLockStore(
            bucket, endpoint_url=seaweed.endpoint_url, client=client or raw, **kwargs
        )

    return make


@pytest.fixture
def store(make_store: Callable[..., S3ObjectLockStore]) -> S3ObjectLockStore:
    return make_store()


class Double:
    """A boto3 client with some methods replaced: a store that lies."""

    def __init__(self, real: Any, **replaced: Callable[..., Any]) -> None:
        self._real = real
        self._replaced = replaced
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return self._replaced.get(name) or getattr(self._real, name)


def versions(raw: Any, bucket: str, key: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    listing = raw.list_object_versions(Bucket=bucket, Prefix=key)
    own = [v for v in listing.get("Versions", []) if v["Key"] == key]
    markers = [m for m in listing.get("DeleteMarkers", []) if m["Key"] == key]
    return own, markers


def raw_put(raw: Any, bucket: str, key: str, body: bytes, **kwargs: Any) -> str:
    """Write around the store (an intruder with write access to the bucket)."""
    version: str = raw.put_object(Bucket=bucket, Key=key, Body=body, **kwargs)["VersionId"]
    return version


# -- content addressing -----------------------------------------------------------------


def test_put_names_object_by_sha256_under_prefix_and_area(
    store: S3ObjectLockStore, raw: Any, bucket: str
) -> None:
    stored = store.put(PDF, Area.WORKING)

    name = sha(PDF)
    assert stored == StoredObject(sha256=name, size=len(PDF), area=Area.WORKING)
    key = f"school-a/working/{name[:2]}/{name}"
    assert store.key_of(name, Area.WORKING) == key
    obj = raw.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert obj["Body"].read() == PDF
    assert obj["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(PDF).digest()).decode()
    assert store.get(name, Area.WORKING) == PDF
    assert store.exists(name, Area.WORKING)
    assert not store.exists(name, Area.ARCHIVE)


def test_put_same_bytes_twice_is_a_no_op(store: S3ObjectLockStore, raw: Any, bucket: str) -> None:
    first = store.put(FINAL, Area.ARCHIVE)
    again = store.put(FINAL, Area.ARCHIVE)
    third = store.put_archived(FINAL)

    assert again == first == third
    own, _ = versions(raw, bucket, store.key_of(first.sha256, Area.ARCHIVE))
    assert len(own) == 1  # no second write
    assert list(store.iter_names(Area.ARCHIVE)) == [first.sha256]


def test_put_refuses_different_bytes_under_an_existing_name(
    store: S3ObjectLockStore, raw: Any, bucket: str
) -> None:
    store.check()  # the bucket exists
    key = store.key_of(sha(PDF), Area.ARCHIVE)
    raw_put(raw, bucket, key, b"something else")

    with pytest.raises(ObjectConflict) as info:
        store.put(PDF, Area.ARCHIVE)

    assert info.value.code == "object_conflict"
    assert raw.get_object(Bucket=bucket, Key=key)["Body"].read() == b"something else"
    assert len(versions(raw, bucket, key)[0]) == 1


def test_a_concurrent_writer_cannot_stack_a_version(
    store: S3ObjectLockStore, raw: Any, bucket: str, make_store: Callable[..., S3ObjectLockStore]
) -> None:
    """The existence check raced (it saw nothing): If-None-Match: * makes the server refuse
    the write, and the store then compares the bytes that won."""
    winner = store.put(FINAL, Area.ARCHIVE)
    key = store.key_of(winner.sha256, Area.ARCHIVE)

    def head_sees_nothing(**kwargs: Any) -> Any:
        if kwargs["Key"] == key and not seen:
            seen.append(True)
            raise ClientError({"Error": {"Code": "404"}, "ResponseMetadata": {}}, "HeadObject")
        return raw.head_object(**kwargs)

    seen: list[bool] = []
    racer = make_store(Double(raw, head_object=head_sees_nothing))
    assert racer.put(FINAL, Area.ARCHIVE) == winner
    assert seen == [True]
    assert len(versions(raw, bucket, key)[0]) == 1

    # Different bytes winning the race under our name: a conflict, not an overwrite.
    seen.clear()
    key = store.key_of(sha(PDF), Area.WORKING)
    raw_put(raw, bucket, key, b"not the pdf")
    with pytest.raises(ObjectConflict):
        racer.put(PDF, Area.WORKING)
    assert len(versions(raw, bucket, key)[0]) == 1


def test_the_server_verifies_the_sha256_it_is_sent(
    store: S3ObjectLockStore, raw: Any, bucket: str, make_store: Callable[..., S3ObjectLockStore]
) -> None:
    """Bytes damaged on the way (after the checksum was computed) are refused by S3."""

    def damaging_put(**kwargs: Any) -> Any:
        body = bytearray(kwargs["Body"])
        body[3] ^= 0x01
        return raw.put_object(**{**kwargs, "Body": bytes(body)})

    damaged = make_store(Double(raw, put_object=damaging_put))
    with pytest.raises(ArchiveError) as info:
        damaged.put(PDF, Area.WORKING)

    assert info.value.code == "store_unavailable"
    assert "SHA-256" in info.value.detail
    assert not store.exists(sha(PDF), Area.WORKING)


# -- locks read back ----------------------------------------------------------------------


def test_archive_objects_get_compliance_retention_and_legal_hold(
    store: S3ObjectLockStore, raw: Any, bucket: str
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    stored = store.put_archived(FINAL)
    after = datetime.now(UTC)

    lock = store.lock_info(stored.sha256, Area.ARCHIVE)
    assert lock.mode == "COMPLIANCE"
    assert lock.legal_hold is True
    assert lock.retain_until is not None
    assert before + 36500 * DAY <= lock.retain_until <= after + 36500 * DAY
    assert store.lock_is_sufficient(lock)

    # The same, as the server reports it to anyone.
    key = store.key_of(stored.sha256, Area.ARCHIVE)
    assert raw.get_object_retention(Bucket=bucket, Key=key)["Retention"]["Mode"] == "COMPLIANCE"
    assert raw.get_object_legal_hold(Bucket=bucket, Key=key)["LegalHold"]["Status"] == "ON"


def test_working_objects_get_short_retention_and_no_legal_hold(
    store: S3ObjectLockStore,
) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    stored = store.put(PDF, Area.WORKING)
    after = datetime.now(UTC)

    lock = store.lock_info(stored.sha256, Area.WORKING)
    assert lock.mode == "COMPLIANCE"
    assert lock.legal_hold is False
    assert lock.retain_until is not None
    assert before + 30 * DAY <= lock.retain_until <= after + 30 * DAY
    assert not store.lock_is_sufficient(lock)  # not the archive's lock


def test_retention_periods_are_settings(make_store: Callable[..., S3ObjectLockStore]) -> None:
    store = make_store(archive_retention_days=3650, working_retention_days=7)
    now = datetime.now(UTC)
    archived = store.lock_info(store.put_archived(FINAL).sha256, Area.ARCHIVE)
    working = store.lock_info(store.put(PDF, Area.WORKING).sha256, Area.WORKING)

    assert archived.retain_until is not None and working.retain_until is not None
    assert abs(archived.retain_until - (now + 3650 * DAY)) < timedelta(minutes=1)
    assert abs(working.retain_until - (now + 7 * DAY)) < timedelta(minutes=1)


def _earlier_retention(raw: Any) -> Callable[..., Any]:
    def lie(**kwargs: Any) -> Any:
        answer = raw.get_object_retention(**kwargs)
        answer["Retention"]["RetainUntilDate"] -= DAY
        return answer

    return lie


def _governance(raw: Any) -> Callable[..., Any]:
    def lie(**kwargs: Any) -> Any:
        answer = raw.get_object_retention(**kwargs)
        answer["Retention"]["Mode"] = "GOVERNANCE"
        return answer

    return lie


def _hold_off(raw: Any) -> Callable[..., Any]:
    def lie(**kwargs: Any) -> Any:
        return {"LegalHold": {"Status": "OFF"}}

    return lie


@pytest.mark.parametrize(
    ("method", "liar", "expected"),
    [
        ("get_object_retention", _earlier_retention, "earlier than"),
        ("get_object_retention", _governance, "GOVERNANCE"),
        ("get_object_legal_hold", _hold_off, "legal hold is not ON"),
    ],
)
def test_put_archived_refuses_a_lock_read_back_that_differs(
    make_store: Callable[..., S3ObjectLockStore],
    raw: Any,
    method: str,
    liar: Callable[[Any], Callable[..., Any]],
    expected: str,
) -> None:
    lying = make_store(Double(raw, **{method: liar(raw)}))

    with pytest.raises(LockMismatch) as info:
        lying.put_archived(FINAL)
    assert info.value.code == "lock_mismatch"
    assert expected in info.value.detail

    # `put` into ARCHIVE reads the lock back too (it is the same write).
    with pytest.raises(LockMismatch):
        lying.put(REVISION, Area.ARCHIVE)


def test_a_retain_until_rounded_to_the_second_is_accepted(
    make_store: Callable[..., S3ObjectLockStore],
) -> None:
    # The clock has microseconds; the store asks for whole seconds, so a server keeping
    # seconds only (all do) reads back exactly what was asked.
    store = make_store(clock=lambda: datetime.now(UTC).replace(microsecond=999_999))
    stored = store.put_archived(FINAL)
    lock = store.lock_info(stored.sha256, Area.ARCHIVE)
    assert lock.retain_until is not None and lock.retain_until.microsecond == 0


def test_put_archived_of_an_existing_object_checks_its_lock_is_still_in_force(
    make_store: Callable[..., S3ObjectLockStore], raw: Any
) -> None:
    make_store().put_archived(FINAL)
    # A century later (the clock says), the same final again: its retention has ended.
    later = make_store(clock=lambda: datetime.now(UTC) + 36501 * DAY)
    with pytest.raises(LockMismatch) as info:
        later.put_archived(FINAL)
    assert "retention ended" in info.value.detail


# -- reads verify the bytes -------------------------------------------------------------------


def test_get_detects_bytes_altered_on_the_way(
    store: S3ObjectLockStore, raw: Any, make_store: Callable[..., S3ObjectLockStore]
) -> None:
    stored = store.put_archived(FINAL)

    class Flipped:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def read(self) -> bytes:
            damaged = bytearray(self.data)
            damaged[10] ^= 0x01
            return bytes(damaged)

    def flipping_get(**kwargs: Any) -> Any:
        answer = raw.get_object(**kwargs)
        answer["Body"] = Flipped(answer["Body"].read())
        return answer

    with pytest.raises(ObjectCorrupt) as info:
        make_store(Double(raw, get_object=flipping_get)).get(stored.sha256, Area.ARCHIVE)
    assert info.value.code == "object_corrupt"


def test_get_detects_a_foreign_version_stacked_on_an_archived_object(
    store: S3ObjectLockStore, raw: Any, bucket: str
) -> None:
    """COMPLIANCE keeps each version, but anyone with write access can put a newer one on
    the key. Reads take the current version and verify it: the tampering shows."""
    stored = store.put_archived(FINAL)
    key = store.key_of(stored.sha256, Area.ARCHIVE)
    (original,) = versions(raw, bucket, key)[0]
    raw_put(raw, bucket, key, b"%PDF-1.7 forged")

    with pytest.raises(ObjectCorrupt):
        store.get(stored.sha256, Area.ARCHIVE)
    with pytest.raises(ObjectConflict):
        store.put_archived(FINAL)

    # The locked original is untouched underneath.
    body = raw.get_object(Bucket=bucket, Key=key, VersionId=original["VersionId"])["Body"]
    assert body.read() == FINAL


def test_a_foreign_delete_marker_makes_the_object_missing_not_gone(
    store: S3ObjectLockStore, raw: Any, bucket: str
) -> None:
    stored = store.put_archived(FINAL)
    key = store.key_of(stored.sha256, Area.ARCHIVE)
    raw.delete_object(Bucket=bucket, Key=key)  # allowed: it only adds a delete marker

    assert not store.exists(stored.sha256, Area.ARCHIVE)
    with pytest.raises(ObjectMissing):
        store.get(stored.sha256, Area.ARCHIVE)
    (original,) = versions(raw, bucket, key)[0]
    body = raw.get_object(Bucket=bucket, Key=key, VersionId=original["VersionId"])["Body"]
    assert body.read() == FINAL


@pytest.mark.slow  # SeaweedFS retries the damaged chunk for ~12 s before it answers 500
def test_damage_on_the_servers_disk_never_reads_as_the_object(
    seaweed: SeaweedServer, make_store: Callable[..., S3ObjectLockStore]
) -> None:
    store = make_store(seaweed.client(retries=0))
    data = b"%PDF-1.7\n" + os.urandom(4096)
    stored = store.put_archived(data)
    assert seaweed.dir is not None
    hits = []
    for path in (seaweed.dir / "data").rglob("*.dat"):
        content = path.read_bytes()
        at = content.find(data[:64])
        if at >= 0:
            hits.append((path, at))
    assert hits, "the object's bytes were not found in SeaweedFS's volume files"
    for path, at in hits:
        with open(path, "r+b") as f:
            f.seek(at + 100)
            byte = f.read(1)
            f.seek(at + 100)
            f.write(bytes([byte[0] ^ 0x01]))

    # SeaweedFS checks its needle CRC and answers 500 (a copy on another volume server would
    # be read instead); either way no wrong bytes come back.
    with pytest.raises(ArchiveError) as info:
        store.get(stored.sha256, Area.ARCHIVE)
    assert info.value.code in ("store_unavailable", "object_corrupt")


def test_get_missing_object(store: S3ObjectLockStore) -> None:
    with pytest.raises(ObjectMissing) as info:
        store.get(sha(b"never stored"), Area.WORKING)
    assert info.value.code == "object_missing"
    with pytest.raises(ObjectMissing):
        store.lock_info(sha(b"never stored"), Area.ARCHIVE)


def test_names_must_be_lowercase_hex_sha256(store: S3ObjectLockStore) -> None:
    for bad in ["../../etc/passwd", sha(PDF).upper(), sha(PDF)[:-1], ""]:
        with pytest.raises(ValueError):
            store.key_of(bad, Area.WORKING)


def test_iter_names_lists_each_area_apart(
    store: S3ObjectLockStore, make_store: Callable[..., S3ObjectLockStore], raw: Any, bucket: str
) -> None:
    a = store.put(PDF, Area.WORKING).sha256
    b = store.put(REVISION, Area.WORKING).sha256
    c = store.put_archived(FINAL).sha256
    make_store(prefix="school-b").put(b"%PDF-1.7 another school", Area.WORKING)
    raw_put(raw, bucket, "school-a/working/zz/not-a-name", b"x")

    assert sorted(store.iter_names(Area.WORKING)) == sorted([a, b])
    assert list(store.iter_names(Area.ARCHIVE)) == [c]


# -- release --------------------------------------------------------------------------------


def test_release_working_with_a_valid_prefix(
    store: S3ObjectLockStore, raw: Any, bucket: str
) -> None:
    original = store.put(PDF, Area.WORKING)
    revision = store.put(REVISION, Area.WORKING)
    final = store.put_archived(FINAL)

    store.release_working(original.sha256, final.sha256)
    store.release_working(revision.sha256, final.sha256)

    assert list(store.iter_names(Area.WORKING)) == []
    assert not store.exists(original.sha256, Area.WORKING)
    assert store.get(final.sha256, Area.ARCHIVE) == FINAL
    # Released = marked deleted; the locked version waits for its retention to end.
    own, markers = versions(raw, bucket, store.key_of(original.sha256, Area.WORKING))
    assert len(own) == 1 and len(markers) == 1
    assert versions(raw, bucket, store.key_of(final.sha256, Area.ARCHIVE))[1] == []


def test_release_working_refuses_when_final_does_not_begin_with_it(
    store: S3ObjectLockStore,
) -> None:
    other = store.put(b"%PDF-1.7 another pupil", Area.WORKING)
    final = store.put_archived(FINAL)

    with pytest.raises(ArchiveError) as info:
        store.release_working(other.sha256, final.sha256)

    assert info.value.code == "not_a_prefix"
    assert store.get(other.sha256, Area.WORKING) == b"%PDF-1.7 another pupil"


def test_release_working_refuses_a_final_shorter_than_it(store: S3ObjectLockStore) -> None:
    longer = store.put(FINAL + b"% more", Area.WORKING)
    final = store.put_archived(FINAL)

    with pytest.raises(ArchiveError) as info:
        store.release_working(longer.sha256, final.sha256)

    assert info.value.code == "not_a_prefix"
    assert store.exists(longer.sha256, Area.WORKING)


def test_release_working_refuses_without_the_archived_final(store: S3ObjectLockStore) -> None:
    original = store.put(PDF, Area.WORKING)
    final_in_working_only = store.put(FINAL, Area.WORKING)

    with pytest.raises(ObjectMissing):
        store.release_working(original.sha256, final_in_working_only.sha256)

    assert store.exists(original.sha256, Area.WORKING)


def test_release_working_never_touches_the_archive(
    store: S3ObjectLockStore, raw: Any, bucket: str
) -> None:
    final = store.put_archived(FINAL)

    with pytest.raises(ObjectMissing):
        store.release_working(final.sha256, final.sha256)

    assert store.get(final.sha256, Area.ARCHIVE) == FINAL
    assert versions(raw, bucket, store.key_of(final.sha256, Area.ARCHIVE))[1] == []


def test_no_public_method_removes_or_rewrites_objects() -> None:
    # A guard: a new public method (delete, overwrite, ...) must be reviewed here first.
    public = {name for name in dir(S3ObjectLockStore) if not name.startswith("_")}
    assert public == {
        "check",
        "client",
        "exists",
        "extend_retention",
        "get",
        "iter_names",
        "key_of",
        "lock_info",
        "lock_is_sufficient",
        "open_object",  # the base class's: get, in memory
        "put",
        "put_archived",
        "put_archived_file",  # the base class's: put_archived of the bytes
        "put_file",  # the base class's: put of the bytes
        "release_working",
        "release_working_all",  # the base class's: release_working for each
    }


# -- retention renewal ----------------------------------------------------------------------


def test_extend_retention_only_later_and_read_back(store: S3ObjectLockStore) -> None:
    stored = store.put_archived(FINAL)
    lock = store.lock_info(stored.sha256, Area.ARCHIVE)
    assert lock.retain_until is not None

    later = lock.retain_until + 365 * DAY
    extended = store.extend_retention(stored.sha256, Area.ARCHIVE, later)
    assert extended.retain_until == later
    assert extended.mode == "COMPLIANCE" and extended.legal_hold
    assert store.lock_info(stored.sha256, Area.ARCHIVE) == extended

    assert store.extend_retention(stored.sha256, Area.ARCHIVE, later) == extended  # no-op
    with pytest.raises(ArchiveError) as info:
        store.extend_retention(stored.sha256, Area.ARCHIVE, later - DAY)
    assert info.value.code == "retention_not_later"
    assert store.lock_info(stored.sha256, Area.ARCHIVE) == extended


def test_extend_retention_refuses_a_server_that_keeps_less(
    store: S3ObjectLockStore, raw: Any, make_store: Callable[..., S3ObjectLockStore]
) -> None:
    stored = store.put(PDF, Area.WORKING)
    lock = store.lock_info(stored.sha256, Area.WORKING)
    assert lock.retain_until is not None

    def ignored(**kwargs: Any) -> Any:
        return {}

    deaf = make_store(Double(raw, put_object_retention=ignored))
    with pytest.raises(LockMismatch):
        deaf.extend_retention(stored.sha256, Area.WORKING, lock.retain_until + DAY)


# -- the bucket -----------------------------------------------------------------------------


def test_first_use_creates_a_locked_bucket_with_a_default_rule(
    store: S3ObjectLockStore, raw: Any, bucket: str
) -> None:
    store.check()

    assert raw.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    config = raw.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert config == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 30}},
    }
    # Nothing lands unlocked, even written without lock headers.
    raw_put(raw, bucket, "stray", b"x")
    assert raw.get_object_retention(Bucket=bucket, Key="stray")["Retention"]["Mode"] == (
        "COMPLIANCE"
    )
    rules = raw.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    (rule,) = [r for r in rules if r["ID"] == LIFECYCLE_RULE_ID]
    assert rule["Filter"] == {"Prefix": "school-a/working/"}
    assert "Days" not in rule.get("Expiration", {})  # never expires a current object


def test_an_existing_bucket_keeps_its_other_lifecycle_rules(
    make_store: Callable[..., S3ObjectLockStore], raw: Any, bucket: str
) -> None:
    raw.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    theirs = {
        "ID": "ops-logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 90},
    }
    raw.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": [theirs]}
    )

    make_store().check()

    rules = raw.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert {r["ID"] for r in rules} == {"ops-logs", LIFECYCLE_RULE_ID}
    config = raw.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert config["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"


def test_a_bucket_without_object_lock_is_refused(
    make_store: Callable[..., S3ObjectLockStore], raw: Any, bucket: str
) -> None:
    raw.create_bucket(Bucket=bucket)
    store = make_store()

    for attempt in (store.check, lambda: store.put(PDF, Area.WORKING)):
        with pytest.raises(ArchiveError) as info:
            attempt()
        assert info.value.code == "store_not_locked"
        assert "Object Lock" in info.value.detail


def test_a_bucket_defaulting_to_governance_is_refused(
    make_store: Callable[..., S3ObjectLockStore], raw: Any, bucket: str
) -> None:
    raw.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    raw.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    with pytest.raises(ArchiveError) as info:
        make_store().check()
    assert info.value.code == "store_not_locked"
    assert "GOVERNANCE" in info.value.detail


def test_check_notices_a_lock_configuration_changed_later(
    store: S3ObjectLockStore, raw: Any, bucket: str
) -> None:
    store.check()
    raw.put_object_lock_configuration(  # the default rule removed behind our back
        Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
    )
    with pytest.raises(ArchiveError) as info:
        store.check()
    assert info.value.code == "store_not_locked"


def test_construction_does_no_io_and_an_unreachable_server_is_unavailable(
    raw: Any, bucket: str
) -> None:
    import boto3
    from botocore.config import Config

    from tests.seaweed import _free_ports

    (port,) = _free_ports(1)  # nothing listens there
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    counting = Double(client)
    store = S3ObjectLockStore(bucket, client=counting)
    assert counting.calls == []

    with pytest.raises(ArchiveError) as info:
        store.check()
    assert info.value.code == "store_unavailable"
    assert "y" not in info.value.detail.split()  # no secret in the message


def test_wrong_credentials_are_refused_without_echoing_them(
    seaweed: SeaweedServer, bucket: str
) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=seaweed.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="intruder",
        aws_secret_access_key="not-the-secret-123",
    )
    with pytest.raises(ArchiveError) as info:
        S3ObjectLockStore(bucket, client=client).check()
    assert info.value.code == "store_refused"
    assert "not-the-secret-123" not in str(info.value)


# -- open_store ------------------------------------------------------------------------------


def test_open_store_accepts_s3_urls() -> None:
    store = open_store("s3://hocba-archive/tenant%201/", s3_endpoint_url="http://127.0.0.1:1")
    assert isinstance(store, S3ObjectLockStore)
    assert store.bucket == "hocba-archive"
    assert store.prefix == "tenant 1/"
    assert store.endpoint_url == "http://127.0.0.1:1"
    assert store.key_of(sha(PDF), Area.ARCHIVE) == f"tenant 1/archive/{sha(PDF)[:2]}/{sha(PDF)}"

    bare = open_store("s3://hocba-archive")
    assert isinstance(bare, S3ObjectLockStore)
    assert bare.prefix == "" and bare.endpoint_url is None


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///prefix",
        "s3://Upper-Case",
        "s3://ab",
        "s3://bucket?versionId=1",
        "s3://key:secret@bucket",
        "s3://bucket:9000/x",
        "s3://bucket/../x",
    ],
)
def test_open_store_refuses_bad_s3_urls(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url)


def test_lock_info_of_the_filesystem_kind_is_not_sufficient_here(
    store: S3ObjectLockStore,
) -> None:
    assert not store.lock_is_sufficient(LockInfo("read-only", None, False))
    future = datetime.now(UTC) + DAY
    assert not store.lock_is_sufficient(LockInfo("GOVERNANCE", future, True))
    assert not store.lock_is_sufficient(LockInfo("COMPLIANCE", future, False))
    assert store.lock_is_sufficient(LockInfo("COMPLIANCE", future, True))
    assert not store.lock_is_sufficient(LockInfo("COMPLIANCE", future - 2 * DAY, True))


def test_no_weed_left_behind(seaweed: SeaweedServer) -> None:
    # The fixture's server is ours; a second one starts and stops cleanly beside it.
    with SeaweedServer() as other:
        assert other.proc is not None
        pid = other.proc.pid
        data_dir = other.dir
        assert other.startup_seconds < 15
    assert data_dir is not None and not Path(data_dir).exists()
    assert not Path(f"/proc/{pid}").exists() or "zombie" in _proc_state(pid)


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"
