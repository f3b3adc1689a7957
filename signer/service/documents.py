"""A record's bytes in the object store, as the service reads and writes them: store
errors become API problems here, large documents stay in files."""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import IO, Any, BinaryIO

from archive.errors import ArchiveError
from archive.store import Area, ObjectStore, StoredObject
from signer.errors import from_archive

LARGE_DOCUMENT = 8 * 1024 * 1024


def scratch_file() -> Any:
    """Where a new revision is written: memory up to LARGE_DOCUMENT, then a temporary
    file (deleted when closed)."""
    return tempfile.SpooledTemporaryFile(max_size=LARGE_DOCUMENT, prefix="hocba-")


def release_garbage(size: int) -> None:
    """pyHanko's readers and writers hold their documents in reference cycles, freed
    only when the cycle collector runs; with large documents, run it now rather than
    carry one more copy into the next step (bench (e))."""
    if size >= LARGE_DOCUMENT:
        gc.collect()


class Documents:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def get(self, sha256: str, area: Area) -> bytes:
        try:
            return self.store.get(sha256, area)
        except ArchiveError as e:
            raise from_archive(e, f"store: {e}", default_code="store_error") from e

    def put(self, data: bytes | IO[bytes], area: Area) -> StoredObject:
        try:
            if isinstance(data, bytes):
                return self.store.put(data, area)
            return self.store.put_file(data, area)
        except ArchiveError as e:
            raise from_archive(e, f"store refused the object: {e}",
                               default_code="store_error") from e

    @contextmanager
    def open(self, sha256: str, area: Area) -> Iterator[BinaryIO]:
        """The object as a file (streamed where the store can): large records are not
        held in memory whole."""
        with ExitStack() as stack:
            try:  # the store's errors on opening only: the caller's block keeps its own
                f = stack.enter_context(self.store.open_object(sha256, area))
            except ArchiveError as e:
                raise from_archive(e, f"store: {e}", default_code="store_error") from e
            yield f
