"""Filesystem WORM store, the embedded default.

Layout: root/<area>/<sha[0:2]>/<sha[2:4]>/<sha>. Objects are written to a temp file in
the target directory, fsynced, made read-only (0o444), then hard-linked to their name:
`os.link` fails if the name exists, so an existing object is never replaced.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, BinaryIO

from archive.errors import (
    ArchiveError,
    ObjectConflict,
    ObjectCorrupt,
    ObjectMissing,
)
from archive.store.base import (
    CHUNK,
    Area,
    LockInfo,
    ObjectStore,
    StoredObject,
    check_name,
    is_name,
    sha256_hex,
    sha256_of_file,
)

READ_ONLY = 0o444


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prefix_sha256s(path: Path, lengths: set[int]) -> dict[int, str]:
    """SHA-256 of the first `length` bytes of the file for each of `lengths`, in one
    streamed read; a length beyond the file's end is left out."""
    digest = hashlib.sha256()
    found: dict[int, str] = {}
    done = 0
    with path.open("rb") as f:
        for length in sorted(lengths):
            while done < length:
                chunk = f.read(min(length - done, 1 << 20))
                if not chunk:
                    return found
                digest.update(chunk)
                done += len(chunk)
            found[length] = digest.copy().hexdigest()
    return found


def _unavailable(action: str, e: OSError) -> ArchiveError:
    return ArchiveError(f"store cannot {action}: {e}", code="store_unavailable")


class FilesystemStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_of(self, sha256: str, area: Area) -> Path:
        name = check_name(sha256)
        return self.root / area.value / name[0:2] / name[2:4] / name

    def put(self, data: bytes, area: Area) -> StoredObject:
        return self.put_file(io.BytesIO(data), area)

    def put_file(self, f: IO[bytes], area: Area) -> StoredObject:
        sha256 = sha256_of_file(f)
        size = f.tell()
        stored = StoredObject(sha256=sha256, size=size, area=area)
        target = self.path_of(sha256, area)
        if target.exists():
            self._same_file_or_conflict(target, sha256)
            return stored
        try:
            self._make_dirs(target.parent)
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out:
                    f.seek(0)
                    shutil.copyfileobj(f, out, CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
                if tmp.stat().st_size != size:
                    raise OSError(f"copied {tmp.stat().st_size} of {size} bytes")
                os.chmod(tmp, READ_ONLY)
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    # Someone stored this name meanwhile: fine only if the bytes are ours.
                    self._same_file_or_conflict(target, sha256)
            finally:
                tmp.unlink(missing_ok=True)
            _fsync_dir(target.parent)
        except OSError as e:
            raise _unavailable(f"write {area.value}/{sha256}", e) from e
        return stored

    def put_archived(self, data: bytes) -> StoredObject:
        return self.put_archived_file(io.BytesIO(data))

    def put_archived_file(self, f: IO[bytes]) -> StoredObject:
        stored = self.put_file(f, Area.ARCHIVE)
        with self.open_object(stored.sha256, Area.ARCHIVE):
            pass  # read back: the bytes hash to the name
        self._require_archive_lock(stored.sha256)
        return stored

    @contextmanager
    def open_object(self, sha256: str, area: Area) -> Iterator[BinaryIO]:
        path = self.path_of(sha256, area)
        try:
            f = path.open("rb")
        except FileNotFoundError as e:
            raise ObjectMissing(f"no {area.value} object {sha256}") from e
        except OSError as e:
            raise _unavailable(f"read {area.value}/{sha256}", e) from e
        with f:
            try:
                actual = sha256_of_file(f)
            except OSError as e:
                raise _unavailable(f"read {area.value}/{sha256}", e) from e
            if actual != sha256:
                raise ObjectCorrupt(f"{area.value} object {sha256} does not hash to its name")
            f.seek(0)
            yield f

    def get(self, sha256: str, area: Area) -> bytes:
        path = self.path_of(sha256, area)
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise ObjectMissing(f"no {area.value} object {sha256}") from e
        except OSError as e:
            raise _unavailable(f"read {area.value}/{sha256}", e) from e
        if sha256_hex(data) != sha256:
            raise ObjectCorrupt(f"{area.value} object {sha256} does not hash to its name")
        return data

    def exists(self, sha256: str, area: Area) -> bool:
        return self.path_of(sha256, area).is_file()

    def iter_names(self, area: Area) -> Iterator[str]:
        area_dir = self.root / area.value
        if not area_dir.is_dir():
            return
        for path in sorted(area_dir.glob("??/??/*")):
            if is_name(path.name) and path.parent.parent.name == path.name[0:2]:
                yield path.name

    def lock_info(self, sha256: str, area: Area) -> LockInfo:
        path = self.path_of(sha256, area)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError as e:
            raise ObjectMissing(f"no {area.value} object {sha256}") from e
        writable = bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        return LockInfo(
            mode="none" if writable else "read-only", retain_until=None, legal_hold=False
        )

    def lock_is_sufficient(self, lock: LockInfo) -> bool:
        return lock.mode == "read-only"

    def release_working(self, sha256: str, final_sha256: str) -> None:
        refused = self.release_working_all([sha256], final_sha256)
        if sha256 in refused:
            raise refused[sha256]

    def release_working_all(
        self, shas: Sequence[str], final_sha256: str
    ) -> dict[str, ArchiveError]:
        refused: dict[str, ArchiveError] = {}
        sizes: dict[str, int] = {}
        for sha in dict.fromkeys(shas):
            try:
                sizes[sha] = self.path_of(sha, Area.WORKING).stat().st_size
            except FileNotFoundError as e:
                refused[sha] = ObjectMissing(f"no object for release of {sha}: {e.filename}")
            except OSError as e:
                refused[sha] = _unavailable(f"read working/{sha}", e)
        if not sizes:
            return refused
        try:
            prefixes = _prefix_sha256s(self.path_of(final_sha256, Area.ARCHIVE),
                                       set(sizes.values()))
        except FileNotFoundError as e:
            missing = ObjectMissing(f"no object for release of {final_sha256}: {e.filename}")
            return refused | dict.fromkeys(sizes, missing)
        except OSError as e:
            unreadable = _unavailable(f"read archive/{final_sha256}", e)
            return refused | dict.fromkeys(sizes, unreadable)
        for sha, size in sizes.items():
            if prefixes.get(size) != sha:
                refused[sha] = ArchiveError(
                    f"archive object {final_sha256} does not begin with working object {sha}",
                    code="not_a_prefix",
                )
                continue
            path = self.path_of(sha, Area.WORKING)
            try:
                path.unlink()
                _fsync_dir(path.parent)
            except OSError as e:
                refused[sha] = _unavailable(f"release working/{sha}", e)
        return refused

    def check(self) -> None:
        try:
            for area in Area:
                self._make_dirs(self.root / area.value)
            with tempfile.TemporaryFile(dir=self.root, prefix=".probe-") as f:
                f.write(b"probe")
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise _unavailable(f"write under {self.root}", e) from e

    def _same_file_or_conflict(self, target: Path, sha256: str) -> None:
        try:
            with target.open("rb") as existing:
                same = sha256_of_file(existing) == sha256
        except OSError as e:
            raise _unavailable(f"read {target}", e) from e
        if not same:
            raise ObjectConflict(f"different bytes already stored as {target.name}")

    def _make_dirs(self, path: Path) -> None:
        """mkdir -p, fsyncing each parent whose entries changed."""
        missing: list[Path] = []
        while not path.is_dir():
            missing.append(path)
            path = path.parent
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:
                continue
            _fsync_dir(d.parent)
