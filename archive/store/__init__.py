"""Object stores: content-addressed, write-once bytes. `open_store` picks a backend."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from archive.store.base import Area, LockInfo, ObjectStore, StoredObject
from archive.store.filesystem import FilesystemStore

if TYPE_CHECKING:
    from archive.store.s3 import S3ObjectLockStore

__all__ = ["Area", "FilesystemStore", "LockInfo", "ObjectStore", "StoredObject", "open_store"]


def open_store(url: str, *, s3_endpoint_url: str | None = None) -> ObjectStore:
    """`file:///abs/path` or a plain path → FilesystemStore; `s3://bucket[/prefix]` →
    S3ObjectLockStore (no I/O until first use; `s3_endpoint_url` for a non-AWS server,
    credentials from the AWS_* variables). Other schemes: ValueError."""
    if "://" not in url:
        if not url:
            raise ValueError("empty store URL")
        return FilesystemStore(Path(url))
    parts = urlsplit(url)
    if parts.scheme == "s3":
        return _open_s3(url, s3_endpoint_url)
    if parts.scheme != "file":
        raise ValueError(
            f"unsupported store URL scheme {parts.scheme!r} in {url!r}: "
            "use file:///absolute/path, a plain path or s3://bucket[/prefix]"
        )
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"file store URL must name a local path (file:///...), got {url!r}")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ValueError(f"file store URL needs an absolute path, got {url!r}")
    return FilesystemStore(Path(path))


def _open_s3(url: str, endpoint_url: str | None) -> S3ObjectLockStore:
    parts = urlsplit(url)
    if parts.query or parts.fragment or parts.username or parts.password or parts.port:
        raise ValueError(
            f"S3 store URL takes only s3://bucket[/prefix] (credentials come from AWS_*), "
            f"got {url!r}"
        )
    if not parts.hostname:
        raise ValueError(f"S3 store URL needs a bucket: {url!r}")
    from archive.store.s3 import S3ObjectLockStore  # here: botocore loads only for S3

    return S3ObjectLockStore(
        parts.netloc, prefix=unquote(parts.path), endpoint_url=endpoint_url or None
    )
