"""S3 store with Object Lock: the permanent archive on any S3 server that implements it.

Layout: `<prefix>archive/<sha[0:2]>/<sha>` and `<prefix>working/<sha[0:2]>/<sha>`.

Locks. The bucket has versioning and Object Lock, with a default COMPLIANCE retention of
`working_retention_days`, so no object version is ever stored unlocked. Every write also
names its lock explicitly:
- ARCHIVE: COMPLIANCE until now + `archive_retention_days` (default ~100 years) and a legal
  hold. After the write the retention and the legal hold are read back
  (GetObjectRetention, GetObjectLegalHold); a mode other than COMPLIANCE, a retain-until
  earlier than asked (compared to the second: the date is sent in whole seconds) or a hold
  that is not ON raises LockMismatch: an archive write never reports success otherwise.
- WORKING: COMPLIANCE until now + `working_retention_days`, no legal hold (permanent
  storage is paid for decades; uploads and unfinished revisions are not).

Which version is "the object". A locked version can't be deleted or changed, but anyone
with write access to the bucket can still stack a newer version or a delete marker on the
key. This store always reads the *current* version and verifies it against the name, so
such tampering is detected, not hidden: a foreign newer version makes `get` raise
ObjectCorrupt and `put` of the genuine bytes raise ObjectConflict; a foreign delete marker
makes the object ObjectMissing. The genuine version stays locked underneath; an operator
restores it by copying that version back on top (CopyObject with its VersionId). Writes
use `If-None-Match: *`, so a concurrent writer can't stack a second version through this
code (SeaweedFS and AWS honour it; where a server ignores it, the worst case is a second
identical version, since the bytes are named by their hash).

Releasing a working object (`release_working`): once the archived final is shown to begin
with its bytes, a delete marker is put on the working key; the working object is then gone
for `exists`, `get` and `iter_names`. Its locked version can't be removed before its short
retention ends; the lifecycle rule this store installs (`working_lifecycle=True`, rule id
`hocba-working-released`) expires noncurrent working versions and their delete markers
afterwards. No rule ever expires a *current* working object: a record awaiting signatures
for longer than the retention keeps its revisions. Nothing in this module deletes, marks
deleted or overwrites an ARCHIVE key; retention can only be extended (`extend_retention`).

Errors: botocore errors become ArchiveError (`store_unavailable` for the network, 5xx and
throttling, `store_refused` for other refusals, `store_not_locked` for a bucket without
versioning or Object Lock), chained with `from`. Messages carry the S3 error code and the
server's message, never credentials.

The bucket's setup and checks live in `s3bucket`, the error translation in `s3errors`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError

from archive.errors import (
    ArchiveError,
    LockMismatch,
    ObjectConflict,
    ObjectCorrupt,
    ObjectMissing,
)
from archive.store.base import (
    Area,
    LockInfo,
    ObjectStore,
    StoredObject,
    check_name,
    is_name,
    sha256_hex,
)
from archive.store.s3bucket import (
    COMPLIANCE,
    LIFECYCLE_RULE_ID,
    RELEASED_NONCURRENT_DAYS,
    check_lock_configuration,
    prepare_bucket,
)
from archive.store.s3errors import (
    NO_LOCK,
    PRECONDITION,
    error_code,
    http_status,
    is_not_found,
    translate,
)

__all__ = ["COMPLIANCE", "LIFECYCLE_RULE_ID", "RELEASED_NONCURRENT_DAYS", "S3ObjectLockStore"]

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _b64_sha256(sha256: str) -> str:
    return base64.b64encode(bytes.fromhex(sha256)).decode("ascii")


def _seconds(value: datetime) -> datetime:
    """Aware UTC, truncated to whole seconds (how S3 servers keep retain-until dates)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: retention dates must be timezone-aware")
    return value.astimezone(UTC).replace(microsecond=0)


def _ceil_seconds(value: datetime) -> datetime:
    floor = _seconds(value)
    return floor if floor == value.astimezone(UTC) else floor + timedelta(seconds=1)


@dataclass(frozen=True)
class _Head:
    version_id: str | None
    size: int
    checksum_sha256: str | None


class S3ObjectLockStore(ObjectStore):
    """Content-addressed, write-once objects in an S3 bucket with Object Lock.

    Construction does no I/O: the bucket is created (with Object Lock) or checked on first
    use, and again by `check()`. Credentials and region come from boto3's usual sources
    (AWS_* variables, config files); `endpoint_url` selects a non-AWS server.
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        archive_retention_days: int = 36500,
        working_retention_days: int = 30,
        working_lifecycle: bool = True,
        client: Any = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
            raise ValueError(f"not a valid S3 bucket name: {bucket!r}")
        segments = [s for s in prefix.split("/") if s]
        if any(s in (".", "..") for s in segments):
            raise ValueError(f"S3 key prefix must not contain '.' or '..' segments: {prefix!r}")
        if not 1 <= working_retention_days <= archive_retention_days:
            raise ValueError(
                "retention days must satisfy 1 <= working_retention_days <= "
                f"archive_retention_days, got {working_retention_days}, {archive_retention_days}"
            )
        self.bucket = bucket
        self.prefix = "".join(s + "/" for s in segments)
        self.endpoint_url = endpoint_url
        self.archive_retention_days = archive_retention_days
        self.working_retention_days = working_retention_days
        self.working_lifecycle = working_lifecycle
        self.clock = clock
        self._client = client
        self._ready = False
        self._ready_lock = threading.Lock()

    # -- names ----------------------------------------------------------------------------

    def key_of(self, sha256: str, area: Area) -> str:
        name = check_name(sha256)
        return f"{self.prefix}{area.value}/{name[0:2]}/{name}"

    def _area_prefix(self, area: Area) -> str:
        return f"{self.prefix}{area.value}/"

    # -- the client and the bucket ----------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # A session of its own: boto3's default session caches the credentials it
            # first found, so a later change of the AWS_* variables would go unseen.
            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                config=Config(
                    retries={"max_attempts": 4, "mode": "standard"},
                    connect_timeout=5,
                    read_timeout=60,
                    # Path-style for custom endpoints (SeaweedFS, MinIO, ...); AWS decides.
                    s3={"addressing_style": "path" if self.endpoint_url else "auto"},
                    # We send ChecksumSHA256 ourselves and ask for it back on reads.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
        return self._client

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if self._ready:
                return
            prepare_bucket(
                self.client,
                self.bucket,
                working_retention_days=self.working_retention_days,
                lifecycle_prefix=(
                    self._area_prefix(Area.WORKING) if self.working_lifecycle else None
                ),
            )
            self._ready = True

    # -- object I/O -----------------------------------------------------------------------

    def _head(self, key: str) -> _Head | None:
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as e:
            if is_not_found(e):
                return None
            raise translate(e, f"read {key}") from e
        except BotoCoreError as e:
            raise translate(e, f"read {key}") from e
        return _Head(
            version_id=r.get("VersionId"),
            size=int(r.get("ContentLength", -1)),
            checksum_sha256=r.get("ChecksumSHA256"),
        )

    def _same_or_conflict(self, key: str, head: _Head, sha256: str, data: bytes) -> None:
        if head.checksum_sha256 is not None:
            same = head.checksum_sha256 == _b64_sha256(sha256) and head.size == len(data)
        else:  # written by something else, without a stored checksum: compare the bytes
            same = self._read(key) == data
        if not same:
            raise ObjectConflict(f"different bytes already stored as {key}")

    def _until(self, area: Area) -> datetime:
        days = self.archive_retention_days if area is Area.ARCHIVE else self.working_retention_days
        return _seconds(self.clock() + timedelta(days=days))

    def _write(self, data: bytes, area: Area) -> tuple[StoredObject, datetime | None]:
        """Store `data`; return it and the retain-until asked for (None: it was there)."""
        self._ensure_ready()
        sha256 = sha256_hex(data)
        stored = StoredObject(sha256=sha256, size=len(data), area=area)
        key = self.key_of(sha256, area)
        head = self._head(key)
        if head is not None:
            self._same_or_conflict(key, head, sha256, data)
            return stored, None
        until = self._until(area)
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "ContentType": "application/octet-stream",
            "Metadata": {"sha256": sha256},
            "ChecksumAlgorithm": "SHA256",
            "ChecksumSHA256": _b64_sha256(sha256),
            "ObjectLockMode": COMPLIANCE,
            "ObjectLockRetainUntilDate": until,
            "IfNoneMatch": "*",
        }
        if area is Area.ARCHIVE:
            kwargs["ObjectLockLegalHoldStatus"] = "ON"
        try:
            self.client.put_object(**kwargs)
        except ClientError as e:
            if error_code(e) in PRECONDITION or http_status(e) == 412:
                # Stored meanwhile by someone else: fine only if the bytes are ours.
                head = self._head(key)
                if head is None:
                    raise translate(e, f"write {key}") from e
                self._same_or_conflict(key, head, sha256, data)
                return stored, None
            if error_code(e) in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
                raise ArchiveError(
                    f"S3 store refused {key}: the bytes it received do not match their "
                    f"SHA-256 ({error_code(e)}); nothing was stored",
                    code="store_unavailable",
                ) from e
            raise translate(e, f"write {key}") from e
        except BotoCoreError as e:
            raise translate(e, f"write {key}") from e
        return stored, until

    def put(self, data: bytes, area: Area) -> StoredObject:
        stored, asked = self._write(data, area)
        if area is Area.ARCHIVE:
            self._verify_archive_lock(stored.sha256, asked)
        return stored

    def put_archived(self, data: bytes) -> StoredObject:
        """Put a final into ARCHIVE, then read back its bytes and its lock (retention mode
        and date, legal hold): LockMismatch unless the lock is the one asked for."""
        stored, asked = self._write(data, Area.ARCHIVE)
        self.get(stored.sha256, Area.ARCHIVE)
        self._verify_archive_lock(stored.sha256, asked)
        return stored

    def _verify_archive_lock(self, sha256: str, asked: datetime | None) -> LockInfo:
        """`asked`: the retain-until this call wrote; None when the object was already
        there (then its lock must still be in force: COMPLIANCE, future date, hold ON)."""
        lock = self.lock_info(sha256, Area.ARCHIVE)
        problems = []
        if lock.mode != COMPLIANCE:
            problems.append(f"retention mode {lock.mode}, not {COMPLIANCE}")
        if not lock.legal_hold:
            problems.append("legal hold is not ON")
        if lock.retain_until is None:
            problems.append("no retain-until date")
        elif asked is not None and _seconds(lock.retain_until) < asked:
            problems.append(
                f"retained until {lock.retain_until.isoformat()}, "
                f"earlier than the {asked.isoformat()} asked for"
            )
        elif asked is None and lock.retain_until <= self.clock():
            problems.append(f"retention ended {lock.retain_until.isoformat()}")
        if problems:
            raise LockMismatch(
                f"archive object {sha256} is not locked as asked: " + "; ".join(problems)
            )
        return lock

    @contextmanager
    def _reading(self, key: str) -> Iterator[None]:
        """Read errors as the store's own: missing, corrupt, unavailable."""
        try:
            yield
        except FlexibleChecksumError as e:
            raise ObjectCorrupt(f"{key}: bytes do not match the stored checksum: {e}") from e
        except ClientError as e:
            if is_not_found(e):
                raise ObjectMissing(f"no object {key}") from e
            raise translate(e, f"read {key}") from e
        except BotoCoreError as e:
            raise translate(e, f"read {key}") from e

    def _read(self, key: str) -> bytes:
        with self._reading(key):
            r = self.client.get_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            data: bytes = r["Body"].read()
        return data

    def _prefix_sha256(self, key: str, length: int) -> str | None:
        """SHA-256 of the first `length` bytes of `key`, streamed (a ranged GET); None
        if the object is shorter."""
        if length <= 0:
            return None
        digest = hashlib.sha256()
        got = 0
        with self._reading(key):
            r = self.client.get_object(Bucket=self.bucket, Key=key,
                                       Range=f"bytes=0-{length - 1}")
            for chunk in r["Body"].iter_chunks(1 << 20):
                digest.update(chunk)
                got += len(chunk)
        return digest.hexdigest() if got == length else None

    def get(self, sha256: str, area: Area) -> bytes:
        self._ensure_ready()
        key = self.key_of(sha256, area)
        try:
            data = self._read(key)
        except ObjectMissing as e:
            raise ObjectMissing(f"no {area.value} object {sha256}") from e
        if sha256_hex(data) != sha256:
            raise ObjectCorrupt(f"{area.value} object {sha256} does not hash to its name")
        return data

    def exists(self, sha256: str, area: Area) -> bool:
        self._ensure_ready()
        return self._head(self.key_of(sha256, area)) is not None

    def iter_names(self, area: Area) -> Iterator[str]:
        self._ensure_ready()
        prefix = self._area_prefix(area)
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    rest = item["Key"][len(prefix) :]
                    shard, _, name = rest.partition("/")
                    if is_name(name) and shard == name[0:2]:
                        yield name
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"list {prefix}") from e

    # -- locks ----------------------------------------------------------------------------

    def lock_info(self, sha256: str, area: Area) -> LockInfo:
        """Retention and legal hold of the current version, as the server reports them."""
        self._ensure_ready()
        key = self.key_of(sha256, area)
        head = self._head(key)
        if head is None:
            raise ObjectMissing(f"no {area.value} object {sha256}")
        version: dict[str, Any] = {"VersionId": head.version_id} if head.version_id else {}
        c = self.client
        try:
            try:
                retention = c.get_object_retention(Bucket=self.bucket, Key=key, **version).get(
                    "Retention", {}
                )
            except ClientError as e:
                if error_code(e) not in NO_LOCK:
                    raise
                retention = {}
            try:
                hold = c.get_object_legal_hold(Bucket=self.bucket, Key=key, **version).get(
                    "LegalHold", {}
                )
            except ClientError as e:
                if error_code(e) not in NO_LOCK:
                    raise
                hold = {}
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"read the lock of {key}") from e
        until = retention.get("RetainUntilDate")
        return LockInfo(
            mode=str(retention.get("Mode") or "none"),
            retain_until=until.astimezone(UTC) if isinstance(until, datetime) else None,
            legal_hold=hold.get("Status") == "ON",
        )

    def lock_is_sufficient(self, lock: LockInfo) -> bool:
        return (
            lock.mode == COMPLIANCE
            and lock.legal_hold
            and lock.retain_until is not None
            and lock.retain_until > self.clock()
        )

    def extend_retention(self, sha256: str, area: Area, until: datetime) -> LockInfo:
        """Move the COMPLIANCE retain-until date of an object later (a renewal job).

        Never shorter: an earlier date raises ArchiveError(`retention_not_later`) and sends
        nothing (the server would refuse it too). The same date is a no-op. The new date is
        read back: LockMismatch if the server kept less."""
        self._ensure_ready()
        asked = _ceil_seconds(until)
        current = self.lock_info(sha256, area)
        if current.retain_until is not None and asked <= _seconds(current.retain_until):
            if asked == _seconds(current.retain_until) and current.mode == COMPLIANCE:
                return current
            raise ArchiveError(
                f"{area.value} object {sha256} is retained until "
                f"{current.retain_until.isoformat()}; {asked.isoformat()} is not later",
                code="retention_not_later",
            )
        key = self.key_of(sha256, area)
        head = self._head(key)
        if head is None:
            raise ObjectMissing(f"no {area.value} object {sha256}")
        version: dict[str, Any] = {"VersionId": head.version_id} if head.version_id else {}
        try:
            self.client.put_object_retention(
                Bucket=self.bucket,
                Key=key,
                Retention={"Mode": COMPLIANCE, "RetainUntilDate": asked},
                **version,
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"extend the retention of {key}") from e
        lock = self.lock_info(sha256, area)
        if (
            lock.mode != COMPLIANCE
            or lock.retain_until is None
            or _seconds(lock.retain_until) < asked
        ):
            raise LockMismatch(
                f"{area.value} object {sha256}: asked COMPLIANCE until {asked.isoformat()}, "
                f"the store reports {lock}"
            )
        return lock

    # -- release and readiness ------------------------------------------------------------

    def release_working(self, sha256: str, final_sha256: str) -> None:
        """Mark a WORKING object deleted once the ARCHIVE final is shown to begin with it.

        The locked version itself stays until its short retention ends (S3 refuses earlier
        removal); then lifecycle expires it. ARCHIVE keys are never touched."""
        self._ensure_ready()
        key = self.key_of(sha256, Area.WORKING)
        head = self._head(key)
        if head is None:
            raise ObjectMissing(f"no {Area.WORKING.value} object {sha256}")
        if self._prefix_sha256(self.key_of(final_sha256, Area.ARCHIVE), head.size) != sha256:
            raise ArchiveError(
                f"archive object {final_sha256} does not begin with working object {sha256}",
                code="not_a_prefix",
            )
        if not key.startswith(self._area_prefix(Area.WORKING)):  # pragma: no cover - guard
            raise AssertionError(f"refusing to mark a non-working key deleted: {key}")
        try:
            # No VersionId: a delete marker, not a removal of the (locked) version.
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"release {key}") from e

    def check(self) -> None:
        """Readiness: the bucket answers, is versioned, has Object Lock with a COMPLIANCE
        default retention. Writes nothing (a probe object would stay locked)."""
        if not self._ready:
            self._ensure_ready()  # creates or checks the bucket, all of the above
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"reach bucket {self.bucket}") from e
        check_lock_configuration(self.client, self.bucket, default_days_if_missing=None)
