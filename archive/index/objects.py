"""Object rows: which stored bytes exist, in which area, for which record."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from archive.index import base
from archive.index import schema as t
from archive.index.base import IndexBase
from archive.index.rows import ARCHIVED, ObjectRow
from archive.store.base import Area, StoredObject


def _object(row: sa.Row[Any]) -> ObjectRow:
    values = dict(row._mapping)
    values["area"] = Area(values["area"])
    return ObjectRow(**values)


class ObjectsMixin(IndexBase):
    def list_objects(self, area: Area | None = None) -> Iterator[ObjectRow]:
        """All object rows, in pages, holding no connection while the caller works."""
        key = sa.tuple_(t.objects.c.sha256, t.objects.c.area)
        after: tuple[str, str] | None = None
        while True:
            query = sa.select(t.objects).order_by(t.objects.c.sha256, t.objects.c.area)
            if area is not None:
                query = query.where(t.objects.c.area == area.value)
            if after is not None:
                query = query.where(key > sa.tuple_(*after))
            with self._read() as conn:
                page = [_object(row) for row in conn.execute(query.limit(base.PAGE_SIZE))]
            yield from page
            if len(page) < base.PAGE_SIZE:
                return
            after = (page[-1].sha256, page[-1].area.value)

    def working_objects_in_use(self, sha256s: Collection[str], *, other_than: str
                               ) -> set[str]:
        """Those of `sha256s` that a record other than `other_than`, not archived yet,
        still needs as working objects (byte-identical uploads share one
        content-addressed name)."""
        wanted = set(sha256s)
        if not wanted:
            return set()
        names = sorted(wanted)
        r, sig = t.records.c, t.signatures.c
        others = sa.and_(r.id != other_than, r.status != ARCHIVED)
        with self._read() as conn:
            used = set(conn.execute(
                sa.select(r.original_sha256, r.current_sha256).where(
                    others, sa.or_(r.original_sha256.in_(names),
                                   r.current_sha256.in_(names)))).all())
            used_by_signatures = conn.execute(
                sa.select(sig.revision_sha256).distinct()
                .join(t.records, r.id == sig.record_id)
                .where(others, sig.revision_sha256.in_(names))).scalars().all()
        found = {sha for pair in used for sha in pair} | set(used_by_signatures)
        return found & wanted

    def _insert_object(
        self, conn: Connection, stored: StoredObject, record_id: str, kind: str, now: datetime
    ) -> None:
        # The same bytes may already be known (e.g. a correction re-uploading a PDF).
        self._insert_ignoring_duplicate(
            conn,
            t.objects,
            {
                "sha256": stored.sha256,
                "area": stored.area.value,
                "size": stored.size,
                "record_id": record_id,
                "kind": kind,
                "created_at": now,
            },
        )
