"""The end of a record's signing: revocation data and a document timestamp
(PAdES-B-LTA), the final written locked, the record marked archived, its working
revisions released."""

from __future__ import annotations

import logging
from io import BytesIO
from typing import BinaryIO

from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

from archive.errors import ArchiveError
from archive.index import ARCHIVE_LOCK, Index
from archive.index.rows import RecordRow
from archive.store import Area, ObjectStore
from archive.times import rfc3339
from signer.aio import run
from signer.errors import DependencyError, from_archive
from signer.pades.context import SigningServices
from signer.pades.sign import finish_lta_to
from signer.pades.validate import timestamp_valid_until
from signer.policy import Policy
from signer.service.actors import Actor
from signer.service.documents import Documents, release_garbage, scratch_file

log = logging.getLogger("hocba.archiving")


class Archiving:
    def __init__(self, store: ObjectStore, index: Index, documents: Documents,
                 policies: dict[str, Policy], services: SigningServices) -> None:
        self.store = store
        self.index = index
        self.documents = documents
        self.policies = policies
        self.services = services

    @property
    def lock_failure(self) -> str | None:
        """Set once the store kept a weaker lock than asked: a flag in the index, so every
        worker and instance reports it, until an operator clears it (DELETE
        /v1/admin/flags/archive_lock). Never a record id: /readyz shows it to anyone."""
        flag = self.index.get_flag(ARCHIVE_LOCK)
        return f"lock_mismatch since {rfc3339(flag.raised_at)}" if flag else None

    def finish(self, actor: Actor, row: RecordRow, *, current: bytes | BinaryIO | None = None
               ) -> RecordRow:
        """All roles signed: revocation data + document timestamp, then archive.
        `current`: the record's current revision when the caller holds it already."""
        if current is None:
            with self.documents.open(row.current_sha256, Area.WORKING) as stored:
                return self.finish(actor, row, current=stored)
        if isinstance(current, bytes):
            current = BytesIO(current)
        with scratch_file() as final:
            self._finish_into(final, row, current)
            return self._archive(final, actor, row)

    def _finish_into(self, final: BinaryIO, row: RecordRow, current: BinaryIO) -> None:
        policy = self.policies[row.record_type]
        try:
            run(finish_lta_to(current, final, policy, self.services))
        except (SigningError, TimestampRequestError, OSError) as e:
            raise DependencyError(f"archiving failed (document timestamp): {e}",
                                  code="tsa_unavailable") from e
        release_garbage(row.current_size)

    def _archive(self, final: BinaryIO, actor: Actor, row: RecordRow) -> RecordRow:
        try:
            obj = self.store.put_archived_file(final)
        except ArchiveError as e:
            if e.code == "lock_mismatch":  # the store kept less than asked: never "archived"
                log.error("archive lock not as requested for record %s: %s", row.id, e)
                self._raise_lock_failure(actor, row, e)
            raise from_archive(e, f"store refused the final: {e}",
                               default_code="store_error") from e
        valid_until = timestamp_valid_until(final)
        try:
            row = self.index.mark_archived(row.id, row.current_sha256, obj, actor=actor.name,
                                           audit_detail={"sha256": obj.sha256,
                                                         "size": obj.size},
                                           timestamp_valid_until=valid_until)
        except ArchiveError as e:
            raise from_archive(e, "the record changed while archiving"
                               if e.code == "stale_revision" else None) from e
        self._release_working(row)
        return row

    def _raise_lock_failure(self, actor: Actor, row: RecordRow, e: ArchiveError) -> None:
        try:
            self.index.raise_flag(ARCHIVE_LOCK, f"record {row.id}: {e}", actor=actor.name,
                                  tenant=row.tenant, record_id=row.id)
        except ArchiveError as flag_error:  # the index is down: its own check fails too
            log.error("archive lock failure not recorded: %s", flag_error.code)

    def _release_working(self, row: RecordRow) -> None:
        shas = [row.original_sha256] + [s.revision_sha256
                                        for s in self.index.list_signatures(row.id)]
        in_use = self.index.working_objects_in_use(shas, other_than=row.id)
        # another record (same bytes) still being signed keeps its working objects
        free = [sha for sha in shas if sha not in in_use]
        refused = self.store.release_working_all(free, row.current_sha256)
        for sha, e in refused.items():  # kept, not lost: a later sweep retries
            log.warning("working object %s kept: %s", sha, e.code)
