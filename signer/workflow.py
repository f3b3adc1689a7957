"""A record's life: created -> signed by each role in policy order -> archived.

Each step follows RECORDS.md: read the record and its current object; check tenant,
order, policy and certificate; produce the new revision; put the object; then move
`current` in one compare-and-set transaction. A crash anywhere leaves the record at
its last good revision.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import IO, Any, BinaryIO

from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

from archive.errors import ArchiveError, DuplicateRecord, StaleRevision
from archive.index import Index
from archive.index.rows import ARCHIVED, RecordRow
from archive.store import Area, ObjectStore, StoredObject, open_store
from signer.aio import run
from signer.certrules import check_certificate
from signer.clients import Client, Clients, load_clients
from signer.errors import (
    CertificateNotAllowed,
    ConfigError,
    Conflict,
    DependencyError,
    HocbaError,
    InvalidInput,
    NotFound,
)
from signer.inputs import check_metadata, check_pdf
from signer.keys import KeyBackend
from signer.keys.csc import CscKey
from signer.keys.registry import KeyRegistry
from signer.pades.context import SigningServices
from signer.pades.sign import RoleSigning, finish_lta_to, sign_role_to
from signer.pades.validate import verify_pdf
from signer.policy import Policy, load_policies
from signer.settings import Settings

log = logging.getLogger("hocba.workflow")


def iso(dt: datetime | None) -> str | None:
    """RFC 3339 UTC, as every time in the API."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else None


@dataclass(frozen=True)
class Actor:
    """Who asks: an API client (or the CLI), for audit rows."""

    name: str
    client: Client

    @classmethod
    def of(cls, client: Client) -> Actor:
        return cls(f"client:{client.name}", client)


class Hocba:
    """The service without HTTP: every operation the API offers."""

    def __init__(self, settings: Settings, *, clients: Clients | None = None) -> None:
        self.settings = settings
        if settings.production:
            _refuse_dev_parts(settings)
        self.clients = clients or load_clients(settings.clients_file)
        self.policies: dict[str, Policy] = load_policies(settings.policy_dir)
        self.keys = KeyRegistry(settings, self.clients)
        try:
            self.store: ObjectStore = open_store(
                settings.store, s3_endpoint_url=settings.s3_endpoint_url or None)
        except ValueError as e:
            raise ConfigError(f"HOCBA_STORE: {e}") from e
        self.index = Index(settings.index_url)
        self.index.create_schema()
        self.services = SigningServices(
            tsa_url=settings.tsa_url, trust_anchors=list(self.clients.trust_anchors),
            font_path=settings.stamp_font,
            revocation_cache_seconds=settings.revocation_cache_seconds,
            timeout=settings.network_timeout_seconds,
        )
        self.role_by_field = {r.field.name: r.name for p in self.policies.values()
                              for r in p.roles}
        self.lock_failure: str | None = None

    def close(self) -> None:
        self.index.close()

    # -- reading ----------------------------------------------------------------------

    def record_row(self, client: Client, record_id: str) -> RecordRow:
        row = self.index.get_record(record_id)
        if row is None or not client.covers(row.school_code):
            raise NotFound(f"no record {record_id}", code="record_not_found")
        return row

    def view(self, row: RecordRow) -> dict[str, Any]:
        policy = self.policies.get(row.record_type)
        signed = {s.role: s for s in self.index.list_signatures(row.id)}
        roles = policy.role_names if policy else tuple(signed)
        sigs: list[dict[str, Any]] = []
        for role in roles:
            s = signed.get(role)
            item: dict[str, Any] = {"role": role, "status": "signed" if s else "pending"}
            if s:
                item["signer"] = {"subject": s.signer_subject, "issuer": s.signer_issuer,
                                  "serial": s.signer_serial, "key": s.signer_key}
                item["signed_at"] = iso(s.signed_at)
            sigs.append(item)
        nxt = policy.next_role(set(signed)) if policy else None
        meta = json.loads(row.metadata_json)
        body: dict[str, Any] = {
            "id": row.id, "status": row.status, "record_type": row.record_type,
            "policy": row.policy, "school": meta.get("school"),
            "school_year": row.school_year, "signatures": sigs,
            "next_role": nxt.name if nxt and row.status != ARCHIVED else None,
            "document": {"sha256": row.current_sha256, "size": row.current_size},
            "supersedes": row.supersedes, "superseded_by": row.superseded_by,
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
        }
        if row.status == ARCHIVED:
            versions = self.index.list_versions(row.id)
            body["archive"] = {
                "sha256": row.current_sha256, "size": row.current_size,
                "archived_at": iso(row.archived_at),
                "version": versions[-1].version if versions else None,
                "verify_url": f"{self.settings.public_base_url}/verify/{row.id}",
            }
        return body

    def document(self, row: RecordRow) -> bytes:
        area = Area.ARCHIVE if row.status == ARCHIVED else Area.WORKING
        return self._get(row.current_sha256, area)

    def _get(self, sha256: str, area: Area) -> bytes:
        try:
            return self.store.get(sha256, area)
        except ArchiveError as e:
            raise DependencyError(f"store: {e}", code="store_error") from e

    # -- create -----------------------------------------------------------------------

    def create_record(self, actor: Actor, pdf: bytes | IO[bytes], metadata_raw: str | bytes
                      ) -> RecordRow:
        """A new record from its rendered PDF (bytes, or a seekable file: a large upload
        is streamed to the store) and its metadata."""
        meta = check_metadata(metadata_raw, known_record_types=set(self.policies))
        if not actor.client.covers(meta.school_code):
            raise NotFound(f"school {meta.school_code} is not covered by this API key",
                           code="school_not_found")
        check_pdf(pdf, max_bytes=self.settings.max_pdf_bytes)
        policy = self.policies[meta.record_type]
        current = self.index.find_current_record(meta.student_id_number, meta.school_year,
                                                 meta.record_type)
        if meta.supersedes is None and current is not None:
            raise Conflict(
                "a record for this pupil, school year and record type exists; "
                "send a correction with `supersedes`", code="record_exists")
        if meta.supersedes is not None:
            old = self.index.get_record(meta.supersedes)
            if old is None or not actor.client.covers(old.school_code):
                raise NotFound(f"superseded record {meta.supersedes} not found",
                               code="supersedes_not_found")
            if (old.student_id_number, old.school_year, old.record_type) != (
                    meta.student_id_number, meta.school_year, meta.record_type):
                raise InvalidInput(f"record {old.id} is for another pupil, year or record type",
                                   code="supersedes_mismatch")
            if current is None or current.id != old.id:
                raise Conflict(f"record {old.id} is not the newest version of this pupil's "
                               "record; correct the newest one", code="supersedes_not_current")
        obj = self._put(pdf, Area.WORKING)
        try:
            return self.index.create_record(
                tenant=actor.client.tenant, school_code=meta.school_code,
                school_name=meta.school_name, record_type=meta.record_type,
                policy=policy.ref, student_id_number=meta.student_id_number,
                school_year=meta.school_year,
                metadata_json=json.dumps(meta.raw, ensure_ascii=False, sort_keys=True),
                original=obj, actor=actor.name,
                audit_detail={"sha256": obj.sha256, "size": obj.size},
                supersedes=meta.supersedes,
            )
        except DuplicateRecord as e:
            raise Conflict(
                "a record for this pupil, school year and record type exists; "
                "send a correction with `supersedes`", code="record_exists") from e
        except ArchiveError as e:
            if e.code in ("supersedes_mismatch", "supersedes_not_found"):
                raise InvalidInput(e.detail, code=e.code) from e
            raise DependencyError(f"index: {e}", code="index_error") from e

    def _put(self, data: bytes | IO[bytes], area: Area) -> StoredObject:
        try:
            if isinstance(data, bytes):
                return self.store.put(data, area)
            return self.store.put_file(data, area)
        except ArchiveError as e:
            raise DependencyError(f"store refused the object: {e}", code="store_error") from e

    @contextmanager
    def _open(self, sha256: str, area: Area) -> Iterator[BinaryIO]:
        """The object as a file (streamed where the store can): large records are not
        held in memory whole."""
        with ExitStack() as stack:
            try:  # the store's errors on opening only: the caller's block keeps its own
                f = stack.enter_context(self.store.open_object(sha256, area))
            except ArchiveError as e:
                raise DependencyError(f"store: {e}", code="store_error") from e
            yield f

    # -- sign -------------------------------------------------------------------------

    def sign_with_key(self, actor: Actor, record_id: str, role_name: str, key_name: str,
                      authorization: Any = None) -> RecordRow:
        """Sign with a server-held key (HSM, dev software key) or a remote signing
        credential (CSC; `authorization` carries the one-time OTP/PIN, used once)."""
        row = self.record_row(actor.client, record_id)
        signed_roles = self.signed_roles(row)
        last_role = self.policies[row.record_type].roles[-1].name
        if self.awaits_archiving(row, signed_roles) and role_name == last_role:
            return self.finish(actor, row)  # the last signature landed; archiving failed
        policy, role = self.next_role_check(row, role_name, signed_roles)
        key = self.keys.get(key_name, actor.client.schools)
        self.check_key_for(key, role, row)
        job = RoleSigning(policy, role, row.school_name, role.name == policy.roles[0].name)
        with self._open(row.current_sha256, Area.WORKING) as current, scratch_file() as signed:
            run(self._sign_one(current, signed, key, job, authorization))
            release_garbage(row.current_size)
            return self.commit_signature(actor, row, policy, role, signed, key.certificate,
                                         key_name, signed_before=signed_roles)

    def check_key_for(self, key: KeyBackend, role: Any, row: RecordRow) -> None:
        self.check_certificate(key.certificate, key.chain, role, row.school_code)
        if key.entry.role != role.name:
            raise CertificateNotAllowed(
                f"key {key.entry.key} is registered for role {key.entry.role}, not {role.name}")
        if key.entry.tenant != row.school_code:
            raise CertificateNotAllowed(
                f"key {key.entry.key} belongs to {key.entry.tenant}, not {row.school_code}")

    async def _sign_one(self, pdf: BinaryIO, out: BinaryIO, key: KeyBackend,
                        job: RoleSigning, authorization: Any) -> None:
        try:
            if isinstance(key, CscKey):
                csc = key.signer_for(authorization, batch_size=1)
                try:
                    await sign_role_to(pdf, out, csc, job, self.services)
                finally:
                    await csc.aclose()
                return
            await sign_role_to(pdf, out, key.signer(), job, self.services)
        except (SigningError, TimestampRequestError, OSError) as e:
            raise DependencyError(f"signing failed: {e}", code="signing_failed") from e

    def commit_signature(self, actor: Actor, row: RecordRow, policy: Policy, role: Any,
                         signed: bytes | BinaryIO, cert: Any, key_name: str | None, *,
                         signed_before: set[str] | None = None) -> RecordRow:
        """Store the new revision and move `current` to it (compare-and-set); archive
        the record when this was the last role. `signed_before`: the roles signed when
        `row` was read, if the caller has them (the compare-and-set proves they still
        are)."""
        obj = self._put(signed, Area.WORKING)
        try:
            row = self.index.add_signature(
                row.id, row.current_sha256, obj, role=role.name,
                position=policy.role_names.index(role.name),
                signer_subject=cert.subject.human_friendly,
                signer_issuer=cert.issuer.human_friendly,
                signer_serial=format(cert.serial_number, "x"),
                field_name=role.field.name, signed_at=datetime.now(UTC), signer_key=key_name,
                actor=actor.name, audit_detail={"role": role.name, "key": key_name,
                                                "sha256": obj.sha256},
            )
        except StaleRevision as e:
            raise Conflict("the record changed while signing; fetch it and retry",
                           code="stale_revision") from e
        signed_now = (self.signed_roles(row) if signed_before is None
                      else signed_before | {role.name})
        if policy.next_role(signed_now) is None:
            row = self.finish(actor, row, current=signed)
        return row

    def check_certificate(self, cert: Any, chain: list[Any], role: Any,
                          school_code: str) -> None:
        run(check_certificate(cert, chain, role, school_code, self.services))

    def signed_roles(self, row: RecordRow) -> set[str]:
        return {s.role for s in self.index.list_signatures(row.id)}

    def next_role_check(self, row: RecordRow, role_name: str,
                        signed: set[str] | None = None) -> tuple[Policy, Any]:
        """The policy and role if `role_name` signs next (`signed`: the roles signed, when
        the caller has just read them)."""
        if row.status == ARCHIVED or row.superseded_by:
            raise Conflict(f"record {row.id} is {row.status}; it can no longer be signed",
                           code="record_closed")
        policy = self.policies.get(row.record_type)
        if policy is None:
            raise ConfigError(f"policy {row.record_type} is no longer configured")
        role = policy.role(role_name)
        if role is None:
            raise InvalidInput(f"role {role_name!r} is not in policy {policy.ref} "
                               f"(roles: {', '.join(policy.role_names)})", code="role_unknown")
        if signed is None:
            signed = self.signed_roles(row)
        if role.name in signed:
            raise Conflict(f"role {role.name} has already signed", code="already_signed")
        nxt = policy.next_role(signed)
        if nxt is None or nxt.name != role.name:
            raise Conflict(f"role {role.name} cannot sign yet: {nxt.name if nxt else '-'} "
                           "signs next", code="role_out_of_order")
        return policy, role

    def finish(self, actor: Actor, row: RecordRow, *, current: bytes | BinaryIO | None = None
               ) -> RecordRow:
        """All roles signed: revocation data + document timestamp, then archive.
        `current`: the record's current revision when the caller holds it already."""
        if current is None:
            with self._open(row.current_sha256, Area.WORKING) as stored:
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
                self.lock_failure = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} {e.code}"
                log.error("archive lock not as requested for record %s: %s", row.id, e)
            raise DependencyError(f"store refused the final: {e}", code="store_error") from e
        try:
            row = self.index.mark_archived(row.id, row.current_sha256, obj, actor=actor.name,
                                           audit_detail={"sha256": obj.sha256,
                                                         "size": obj.size})
        except StaleRevision as e:
            raise Conflict("the record changed while archiving", code="stale_revision") from e
        self._release_working(row)
        return row

    def awaits_archiving(self, row: RecordRow, signed: set[str] | None = None) -> bool:
        """Every role signed, but archiving failed (TSA down, store refused, crash):
        repeating the last role's request retries the archiving."""
        policy = self.policies.get(row.record_type)
        if row.status == ARCHIVED or policy is None:
            return False
        return policy.next_role(self.signed_roles(row) if signed is None else signed) is None

    def _release_working(self, row: RecordRow) -> None:
        shas = [row.original_sha256] + [s.revision_sha256
                                        for s in self.index.list_signatures(row.id)]
        in_use = self.index.working_objects_in_use(shas, other_than=row.id)
        for sha in shas:
            if sha in in_use:
                continue  # another record (same bytes) is still being signed
            try:
                self.store.release_working(sha, row.current_sha256)
            except ArchiveError as e:  # kept, not lost: a later sweep retries
                log.warning("working object %s kept: %s", sha, e.code)

    # -- verify -----------------------------------------------------------------------

    def verify(self, pdf: bytes, *, allow_fetching: bool = True) -> dict[str, Any]:
        report = run(verify_pdf(pdf, trust_roots=self.services.trust_roots,
                                role_by_field=self.role_by_field,
                                allow_fetching=allow_fetching)).as_dict()
        version = self.index.find_version_by_sha256(hashlib.sha256(pdf).hexdigest())
        report["archived"] = ({"record_id": version.record_id, "version": version.version}
                              if version else None)
        return report

    def ready(self) -> dict[str, str]:
        """Each dependency checked; 'ok' or a short reason (never a secret)."""
        checks: dict[str, str] = {}

        def probe(name: str, fn: Any) -> None:
            try:
                fn()
                checks[name] = "ok"
            except (HocbaError, ArchiveError, OSError) as e:
                checks[name] = f"error: {type(e).__name__}"

        probe("index", self.index.check)
        probe("store", self.store.check)
        probe("hsm", self.keys.token.check if self.keys.token else _no_hsm)
        probe("tsa", lambda: _probe_http(self.settings.tsa_url))
        checks["archive_lock"] = (f"error: {self.lock_failure}" if self.lock_failure
                                  else "ok")
        return checks


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


def _no_hsm() -> None:
    raise DependencyError("no PKCS#11 module configured")


def _probe_http(url: str) -> None:
    import requests

    try:
        requests.head(url, timeout=3)
    except requests.RequestException as e:
        raise DependencyError(f"TSA unreachable: {type(e).__name__}") from e


def _refuse_dev_parts(settings: Settings) -> None:
    dev_markers = ("var/dev", "127.0.0.1:9780", "/dev/tsa/")
    for name, value in (("HOCBA_CLIENTS_FILE", str(settings.clients_file)),
                        ("HOCBA_TSA_URL", settings.tsa_url)):
        if any(m in value for m in dev_markers):
            raise ConfigError(f"production refuses dev parts: {name}={value}")
    if Path(settings.clients_file).exists():
        doc = json.loads(Path(settings.clients_file).read_text(encoding="utf-8"))
        if any(s.get("backend") == "local" for s in doc.get("signers", [])):
            raise ConfigError("production refuses software (local) signer keys")
        if any("api_key" in c for c in doc.get("clients", [])):
            raise ConfigError("production stores API keys as api_key_sha256 only")
