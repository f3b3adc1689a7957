"""The S3 store's bucket: created with Object Lock, its lock configuration checked (versioning,
Object Lock, a COMPLIANCE default retention), and the lifecycle rule that expires released
working versions installed."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from archive.errors import ArchiveError
from archive.store.s3errors import NO_LOCK, error_code, http_status, translate

log = logging.getLogger("archive.store.s3")  # the store's logger

COMPLIANCE = "COMPLIANCE"
LIFECYCLE_RULE_ID = "hocba-working-released"
# Days a released (noncurrent) working version waits before lifecycle may expire it; it
# goes only once its COMPLIANCE retention has also ended.
RELEASED_NONCURRENT_DAYS = 1


def prepare_bucket(client: Any, bucket: str, *, working_retention_days: int,
                   lifecycle_prefix: str | None) -> None:
    """Create or check `bucket`; with `lifecycle_prefix`, install the lifecycle rule."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as e:
        if http_status(e) != 404 and error_code(e) not in ("404", "NoSuchBucket"):
            raise translate(e, f"reach bucket {bucket}") from e
        _create_bucket(client, bucket)
    except BotoCoreError as e:
        raise translate(e, f"reach bucket {bucket}") from e
    check_lock_configuration(client, bucket, default_days_if_missing=working_retention_days)
    if lifecycle_prefix is not None:
        _ensure_lifecycle_rule(client, bucket, lifecycle_prefix)


def _create_bucket(client: Any, bucket: str) -> None:
    kwargs: dict[str, Any] = {"Bucket": bucket, "ObjectLockEnabledForBucket": True}
    region = getattr(client.meta, "region_name", None)
    if region and region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(**kwargs)
        log.info("created S3 bucket %s with Object Lock", bucket)
    except ClientError as e:
        if error_code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise translate(e, f"create bucket {bucket}") from e
    except BotoCoreError as e:
        raise translate(e, f"create bucket {bucket}") from e


def _not_locked(bucket: str, reason: str) -> ArchiveError:
    return ArchiveError(
        f"S3 bucket {bucket} cannot hold the archive: {reason}. Use a bucket created "
        "with Object Lock enabled (versioning on, default retention COMPLIANCE).",
        code="store_not_locked",
    )


def check_lock_configuration(client: Any, bucket: str, *,
                             default_days_if_missing: int | None) -> None:
    """Raise `store_not_locked` unless the bucket is versioned with Object Lock and a
    COMPLIANCE default retention; a missing default is set when given its days."""
    try:
        versioning = client.get_bucket_versioning(Bucket=bucket).get("Status")
    except (ClientError, BotoCoreError) as e:
        raise translate(e, f"read versioning of {bucket}") from e
    if versioning != "Enabled":
        raise _not_locked(bucket, f"versioning is {versioning or 'off'}")
    try:
        config = client.get_object_lock_configuration(Bucket=bucket).get(
            "ObjectLockConfiguration", {}
        )
    except ClientError as e:
        if error_code(e) in NO_LOCK:
            raise _not_locked(bucket, "Object Lock is not enabled") from e
        raise translate(e, f"read the Object Lock configuration of {bucket}") from e
    except BotoCoreError as e:
        raise translate(e, f"read the Object Lock configuration of {bucket}") from e
    if config.get("ObjectLockEnabled") != "Enabled":
        raise _not_locked(bucket, "Object Lock is not enabled")
    default = config.get("Rule", {}).get("DefaultRetention")
    if default is None and default_days_if_missing is not None:
        _set_default_retention(client, bucket, default_days_if_missing)
        return
    if default is None:
        raise _not_locked(bucket, "no default retention (an object could be stored unlocked)")
    if default.get("Mode") != COMPLIANCE:
        raise _not_locked(bucket, f"default retention mode is {default.get('Mode')}")


def _set_default_retention(client: Any, bucket: str, days: int) -> None:
    """Default COMPLIANCE retention for anything written without explicit lock headers."""
    try:
        client.put_object_lock_configuration(
            Bucket=bucket,
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {
                    "DefaultRetention": {
                        "Mode": COMPLIANCE,
                        "Days": days,
                    }
                },
            },
        )
    except (ClientError, BotoCoreError) as e:
        raise translate(e, f"set default retention on {bucket}") from e


def _lifecycle_rule(working_prefix: str) -> dict[str, Any]:
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Filter": {"Prefix": working_prefix},
        "Status": "Enabled",
        # Only what release_working marked deleted: never a current working object.
        "NoncurrentVersionExpiration": {"NoncurrentDays": RELEASED_NONCURRENT_DAYS},
        "Expiration": {"ExpiredObjectDeleteMarker": True},
    }


def _ensure_lifecycle_rule(client: Any, bucket: str, working_prefix: str) -> None:
    """Add (or update) our rule, keeping every other rule of the bucket as it is.

    A failure here is logged, not raised: without the rule released working versions
    stay (a cost), nothing is lost."""
    ours = _lifecycle_rule(working_prefix)
    try:
        try:
            rules = client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", [])
        except ClientError as e:
            if error_code(e) != "NoSuchLifecycleConfiguration":
                raise
            rules = []
        current = [r for r in rules if r.get("ID") == LIFECYCLE_RULE_ID]
        if current and all(current[0].get(k) == v for k, v in ours.items()):
            return
        others = [r for r in rules if r.get("ID") != LIFECYCLE_RULE_ID]
        client.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": [*others, ours]}
        )
    except (ClientError, BotoCoreError) as e:
        log.warning(
            "S3 bucket %s: lifecycle rule %s not installed (%s); released working "
            "versions will not expire by themselves",
            bucket,
            LIFECYCLE_RULE_ID,
            translate(e, "set the lifecycle").detail,
        )
