"""The object store: immutable bytes named by their SHA-256, in two areas.

WORKING holds uploads and revisions of records still being signed (short retention);
ARCHIVE holds finals, kept permanently and locked. Nothing removes or changes an
archive object; `release_working` is the only removal and touches WORKING only.
"""

from __future__ import annotations

import abc
import enum
import hashlib
import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, BinaryIO

from archive.errors import ArchiveError, LockMismatch

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class Area(enum.Enum):
    WORKING = "working"
    ARCHIVE = "archive"


@dataclass(frozen=True)
class StoredObject:
    sha256: str
    size: int
    area: Area


@dataclass(frozen=True)
class LockInfo:
    mode: str  # "none", "read-only" (filesystem); S3 will report its retention mode
    retain_until: datetime | None
    legal_hold: bool


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


CHUNK = 1 << 20


def sha256_of_file(f: IO[bytes]) -> str:
    """SHA-256 of a file's whole contents, read in chunks from the start."""
    f.seek(0)
    digest = hashlib.sha256()
    while chunk := f.read(CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def check_name(sha256: str) -> str:
    """Refuse anything that is not a lowercase hex SHA-256 (names become paths/keys)."""
    if not _SHA256_HEX.fullmatch(sha256):
        raise ValueError(f"not a lowercase hex SHA-256: {sha256!r}")
    return sha256


def is_name(name: str) -> bool:
    return _SHA256_HEX.fullmatch(name) is not None


class ObjectStore(abc.ABC):
    @abc.abstractmethod
    def put(self, data: bytes, area: Area) -> StoredObject:
        """Store `data` under its SHA-256. Same bytes again: no-op. Never overwrites:
        different bytes under an existing name raise ObjectConflict."""

    @abc.abstractmethod
    def get(self, sha256: str, area: Area) -> bytes:
        """Return the bytes, verified against the name (ObjectCorrupt, ObjectMissing)."""

    @abc.abstractmethod
    def exists(self, sha256: str, area: Area) -> bool: ...

    @abc.abstractmethod
    def iter_names(self, area: Area) -> Iterator[str]: ...

    @abc.abstractmethod
    def lock_info(self, sha256: str, area: Area) -> LockInfo:
        """The lock as the store reports it now (read back, not remembered)."""

    @abc.abstractmethod
    def release_working(self, sha256: str, final_sha256: str) -> None:
        """Remove a WORKING object, only if the ARCHIVE object `final_sha256` exists and
        begins with its exact bytes. Otherwise raise ArchiveError and remove nothing."""

    def release_working_all(
        self, shas: Sequence[str], final_sha256: str
    ) -> dict[str, ArchiveError]:
        """`release_working` for each of `shas` (each removed only if `final_sha256` begins
        with it); the refusals by name, the others removed. Default: one at a time; a store
        that can proves every prefix in one read of the final."""
        refused: dict[str, ArchiveError] = {}
        for sha in shas:
            try:
                self.release_working(sha, final_sha256)
            except ArchiveError as e:
                refused[sha] = e
        return refused

    @abc.abstractmethod
    def check(self) -> None:
        """Readiness: raise ArchiveError if the store cannot be written."""

    @abc.abstractmethod
    def lock_is_sufficient(self, lock: LockInfo) -> bool:
        """Whether `lock` is the permanent lock this store gives archive objects."""

    @contextmanager
    def open_object(self, sha256: str, area: Area) -> Iterator[BinaryIO]:
        """A readable, seekable file with the object's bytes, verified against its name
        (ObjectCorrupt, ObjectMissing). Default: the bytes in memory; a store that can
        streams them."""
        yield io.BytesIO(self.get(sha256, area))

    def put_file(self, f: IO[bytes], area: Area) -> StoredObject:
        """`put` for the whole contents of a readable, seekable file. Default: in memory."""
        f.seek(0)
        return self.put(f.read(), area)

    def put_archived_file(self, f: IO[bytes]) -> StoredObject:
        """`put_archived` for the whole contents of a readable, seekable file."""
        f.seek(0)
        return self.put_archived(f.read())

    def put_archived(self, data: bytes) -> StoredObject:
        """Put a final into ARCHIVE, then read back its bytes and its lock."""
        stored = self.put(data, Area.ARCHIVE)
        self.get(stored.sha256, Area.ARCHIVE)
        self._require_archive_lock(stored.sha256)
        return stored

    def _require_archive_lock(self, sha256: str) -> None:
        """LockMismatch unless the store reports the archive object locked enough."""
        lock = self.lock_info(sha256, Area.ARCHIVE)
        if not self.lock_is_sufficient(lock):
            raise LockMismatch(f"archive object {sha256} is not locked: {lock}")
