"""School transfers: a pupil moves school, and the sending school lets the receiving
school read the pupil's archived records. An explicit act of the sending school,
audited; nothing about any pupil is revealed to a school without one."""

from __future__ import annotations

from typing import Any

from archive.index import Index
from archive.index.rows import TransferRow
from archive.times import rfc3339
from signer.clients import Clients
from signer.errors import FieldError, InvalidInput, NotFound
from signer.idnumber import parse_id_number
from signer.service.actors import Actor
from signer.service.views import chain_item_view


def transfer_view(row: TransferRow, schools: frozenset[str]) -> dict[str, Any]:
    direction = "outgoing" if row.from_school in schools else "incoming"
    return {"id": row.id, "direction": direction, "student_id": row.student_id_number,
            "from_school": row.from_school, "to_school": row.to_school,
            "created_at": rfc3339(row.created_at), "created_by": row.created_by,
            "note": row.note}


class Transfers:
    def __init__(self, index: Index, clients: Clients) -> None:
        self.index = index
        self.clients = clients

    def known_schools(self) -> frozenset[str]:
        schools: set[str] = set()
        for client in self.clients.by_key_hash.values():
            schools |= client.schools
        for covered in self.clients.tenants.values():
            schools |= covered
        return frozenset(schools)

    def create(self, actor: Actor, student_id: str, to_school: str,
               from_school: str | None = None, note: str | None = None) -> dict[str, Any]:
        client = actor.client
        if from_school is None:
            if len(client.schools) != 1:
                raise _invalid("from_school", "required: this key covers several schools")
            (from_school,) = client.schools
        if not client.covers(from_school):
            raise NotFound(f"school {from_school} is not covered by this API key",
                           code="school_not_found")
        if parse_id_number(student_id) is None:
            raise _invalid("student_id", "a 12-digit personal identification number",
                           code="student_id_invalid")
        if to_school == from_school:
            raise _invalid("to_school", "another school than from_school")
        if to_school not in self.known_schools():
            raise _invalid("to_school", "a school known to this service",
                           code="school_unknown")
        row = self.index.create_transfer(student_id_number=student_id,
                                         from_school=from_school, to_school=to_school,
                                         from_tenant=client.tenant, actor=actor.name,
                                         note=note)
        return self._detail(row, client.schools)

    def list(self, actor: Actor) -> dict[str, Any]:
        schools = actor.client.schools
        return {"items": [transfer_view(t, schools)
                          for t in self.index.list_transfers(schools)]}

    def get(self, actor: Actor, transfer_id: str) -> dict[str, Any]:
        row = self.index.get_transfer(transfer_id)
        schools = actor.client.schools
        if row is None or not (row.from_school in schools or row.to_school in schools):
            raise NotFound(f"no transfer {transfer_id}", code="transfer_not_found")
        return self._detail(row, schools)

    def _detail(self, row: TransferRow, schools: frozenset[str]) -> dict[str, Any]:
        records = [{**chain_item_view(r), "school_code": r.school_code,
                    "record_type": r.record_type, "school_year": r.school_year}
                   for r in self.index.transferred_records(row)]
        return {**transfer_view(row, schools), "records": records}


def _invalid(field: str, message: str, code: str = "body_invalid") -> InvalidInput:
    return InvalidInput(f"{field}: {message}", code=code, errors=[FieldError(field, message)])
