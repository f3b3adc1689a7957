"""Where a record is signed: `SigningStep.sign`, for every path.

A server-held key (HSM, dev software key), a remote-signing provider (CSC, one record
or a class with one authorization) and a client-held key (two-step, one record or a
class) differ only in how they produce the signed revision: a `Producer`. The rest is
this one step, as RECORDS.md describes it:

    target (check record, order, policy) -> check_signer (certificate rules)
      -> produce (from the current revision, streamed) -> put (working area)
      -> commit (compare-and-set on the current revision) -> archive, if it was the last role

A crash anywhere leaves the record at its last good revision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Protocol

from asn1crypto import x509
from pyhanko.pdf_utils.metadata.xmp_xml import XmpXmlProcessingError
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

from archive.errors import ArchiveError
from archive.index import Index
from archive.index.rows import ARCHIVED, RecordRow
from archive.store import Area
from signer.aio import run
from signer.certrules import check_certificate
from signer.clients import Client
from signer.errors import (
    CertificateNotAllowed,
    ConfigError,
    Conflict,
    DependencyError,
    HocbaError,
    InvalidInput,
    from_archive,
)
from signer.keys import KeyBackend
from signer.pades.context import SigningServices
from signer.pades.sign import RoleSigning
from signer.policy import Policy, RolePolicy
from signer.service.actors import Actor
from signer.service.archiving import Archiving
from signer.service.documents import Documents, release_garbage, scratch_file
from signer.service.records import Records

log = logging.getLogger("hocba.signing")


@dataclass(frozen=True)
class Target:
    """A record about to be signed by one role, checked: which revision is current,
    which roles have signed, which role certifies. `finish_only`: every role has signed
    but archiving failed (TSA down, store refused, crash); signing again archives."""

    row: RecordRow
    policy: Policy
    role: RolePolicy
    signed_before: frozenset[str]
    finish_only: bool = False

    @property
    def job(self) -> RoleSigning:
        """The role's signature as pyHanko makes it: the first role certifies."""
        return RoleSigning(self.policy, self.role, self.row.school_name,
                           certify=self.role.name == self.policy.roles[0].name)

    @property
    def is_last(self) -> bool:
        return self.policy.next_role(self.signed_before | {self.role.name}) is None


class Producer(Protocol):
    """Makes one role's signed revision of a target's document."""

    certificate: x509.Certificate
    key_name: str | None
    batched: bool
    """True when the targets must be produced together (one provider call for all)."""

    def source(self, target: Target) -> tuple[str, Area]:
        """The object the signed revision is made from (the current revision, or the
        prepared PDF of a two-step session)."""
        ...

    async def start(self, count: int) -> None: ...

    async def produce(self, target: Target, source: BinaryIO, out: BinaryIO) -> None: ...

    async def close(self) -> None: ...


class CurrentRevision:
    """Producers that sign the record's current revision."""

    def source(self, target: Target) -> tuple[str, Area]:
        return target.row.current_sha256, Area.WORKING


Outcome = RecordRow | HocbaError


class SigningStep:
    def __init__(self, index: Index, records: Records, documents: Documents,
                 archiving: Archiving, policies: dict[str, Policy],
                 services: SigningServices) -> None:
        self.index = index
        self.records = records
        self.documents = documents
        self.archiving = archiving
        self.policies = policies
        self.services = services

    # -- check ----------------------------------------------------------------------

    def target(self, client: Client, record_id: str, role_name: str, *,
               expect_sha256: str | None = None, retry_archiving: bool = False) -> Target:
        """The record and role, if `role_name` signs next. `expect_sha256`: the revision
        the caller prepared against (409 stale_revision if it moved). `retry_archiving`:
        the last role asking again for a record whose archiving failed gets a
        `finish_only` target."""
        row = self.records.row(client, record_id)
        if expect_sha256 is not None and row.current_sha256 != expect_sha256:
            raise Conflict("the record changed since the session started",
                           code="stale_revision")
        if row.status == ARCHIVED or row.superseded_by:
            raise Conflict(f"record {row.id} is {row.status}; it can no longer be signed",
                           code="record_closed")
        policy = self.policies.get(row.record_type)
        if policy is None:
            raise ConfigError(f"policy {row.record_type} is no longer configured")
        signed = frozenset(s.role for s in self.index.list_signatures(row.id))
        if (retry_archiving and policy.next_role(signed) is None
                and role_name == policy.roles[-1].name):
            return Target(row, policy, policy.roles[-1], signed, finish_only=True)
        role = policy.role(role_name)
        if role is None:
            raise InvalidInput(f"role {role_name!r} is not in policy {policy.ref} "
                               f"(roles: {', '.join(policy.role_names)})", code="role_unknown")
        if role.name in signed:
            raise Conflict(f"role {role.name} has already signed", code="already_signed")
        nxt = policy.next_role(signed)
        if nxt is None or nxt.name != role.name:
            raise Conflict(f"role {role.name} cannot sign yet: {nxt.name if nxt else '-'} "
                           "signs next", code="role_out_of_order")
        return Target(row, policy, role, signed)

    def check_signer(self, target: Target, cert: x509.Certificate,
                     chain: list[x509.Certificate], *, key: KeyBackend | None = None) -> None:
        """The certificate may sign for the role at the record's school (policy rules,
        a validated path); a server-held `key` must also be registered for both."""
        run(check_certificate(cert, chain, target.role, target.row.school_code,
                              self.services))
        if key is None:
            return
        if key.entry.role != target.role.name:
            raise CertificateNotAllowed(f"key {key.entry.key} is registered for role "
                                        f"{key.entry.role}, not {target.role.name}")
        if key.entry.tenant != target.row.school_code:
            raise CertificateNotAllowed(f"key {key.entry.key} belongs to {key.entry.tenant}, "
                                        f"not {target.row.school_code}")

    @contextmanager
    def open_current(self, target: Target) -> Iterator[BinaryIO]:
        with self.documents.open(target.row.current_sha256, Area.WORKING) as f:
            yield f

    # -- sign -----------------------------------------------------------------------

    def sign_one(self, actor: Actor, target: Target, producer: Producer) -> RecordRow:
        outcome = self.sign(actor, [target], producer)[0]
        if isinstance(outcome, HocbaError):
            raise outcome
        return outcome

    def sign(self, actor: Actor, targets: Sequence[Target], producer: Producer
             ) -> list[Outcome]:
        """Sign each checked target with `producer`: produce from its source (streamed),
        put, commit (compare-and-set), archive if it was the last role. One outcome per
        target, in order: the record after the step, or the error that stopped it
        (nothing of that record changed, or it waits at its last revision)."""
        outcomes: dict[int, Outcome] = {}
        todo = []
        for i, t in enumerate(targets):
            if t.finish_only:
                outcomes[i] = self._guard(lambda t=t: self.archiving.finish(actor, t.row))
            else:
                todo.append(i)
        if todo and producer.batched:
            self._sign_together(actor, [(i, targets[i]) for i in todo], producer, outcomes)
        else:
            for i in todo:
                self._sign_together(actor, [(i, targets[i])], producer, outcomes)
        return [outcomes[i] for i in range(len(targets))]

    def _sign_together(self, actor: Actor, items: list[tuple[int, Target]],
                       producer: Producer, outcomes: dict[int, Outcome]) -> None:
        with ExitStack() as stack:
            opened = []
            for i, t in items:
                try:
                    source = stack.enter_context(self.documents.open(*producer.source(t)))
                except HocbaError as e:
                    outcomes[i] = e
                    continue
                opened.append((i, t, source, stack.enter_context(scratch_file())))
            if not opened:
                return
            produced = run(self._produce(producer, [(t, src, out) for _, t, src, out in opened]))
            for (i, t, _src, out), error in zip(opened, produced, strict=True):
                release_garbage(t.row.current_size)
                outcomes[i] = error or self._guard(
                    lambda t=t, out=out: self.commit(actor, t, out, producer.certificate,
                                                     producer.key_name))

    async def _produce(self, producer: Producer,
                       items: list[tuple[Target, BinaryIO, BinaryIO]]) -> list[HocbaError | None]:
        try:
            await producer.start(len(items))
        except HocbaError as e:  # e.g. the one-time authorization refused: every target
            return [e] * len(items)
        try:
            results = await asyncio.gather(*(producer.produce(t, src, out)
                                             for t, src, out in items),
                                           return_exceptions=True)
        finally:
            await producer.close()
        return [None if r is None else _as_problem(r) for r in results]

    def _guard(self, fn: Any) -> Outcome:
        """`fn` (commit, archiving) as an outcome: any failure becomes a problem with a
        stable code (`_as_problem`); BaseExceptions that are not Exceptions propagate."""
        try:
            result: RecordRow = fn()
        except Exception as e:
            return _as_problem(e, default_code="index_error")
        return result

    def commit(self, actor: Actor, target: Target, signed: bytes | BinaryIO,
               cert: x509.Certificate, key_name: str | None) -> RecordRow:
        """Store the new revision and move `current` to it (compare-and-set); archive
        the record when this was the last role."""
        obj = self.documents.put(signed, Area.WORKING)
        role, policy = target.role, target.policy
        try:
            row = self.index.add_signature(
                target.row.id, target.row.current_sha256, obj, role=role.name,
                position=policy.role_names.index(role.name),
                signer_subject=cert.subject.human_friendly,
                signer_issuer=cert.issuer.human_friendly,
                signer_serial=format(cert.serial_number, "x"),
                field_name=role.field.name, signed_at=datetime.now(UTC), signer_key=key_name,
                actor=actor.name, audit_detail={"role": role.name, "key": key_name,
                                                "sha256": obj.sha256},
            )
        except ArchiveError as e:
            raise from_archive(e, "the record changed while signing; fetch it and retry"
                               if e.code == "stale_revision" else None) from e
        if target.is_last:
            row = self.archiving.finish(actor, row, current=signed)
        return row


# What pyHanko (and what it uses) raises on a document it cannot read or write: the
# record's document, not a dependency, is at fault (422 record_unreadable).
_DOCUMENT_ERRORS: tuple[type[Exception], ...] = (PdfError, XmpXmlProcessingError,
                                                 RecursionError, LookupError, UnicodeError,
                                                 AssertionError)


def _as_problem(error: BaseException, *, default_code: str = "store_error") -> HocbaError:
    """A failure while producing, committing or archiving as the record's outcome, a
    problem with a stable code: a HocbaError as it is; an archive error through
    `from_archive`; a document pyHanko cannot read 422 record_unreadable; anything else
    a 503 signing_failed. Unexpected ones are logged once, with their traceback.
    BaseExceptions that are not Exceptions (KeyboardInterrupt, SystemExit,
    cancellation) propagate."""
    if isinstance(error, HocbaError):
        return error
    if isinstance(error, ArchiveError):
        return from_archive(error, default_code=default_code)
    if not isinstance(error, Exception):
        raise error  # KeyboardInterrupt, SystemExit, cancellation
    if isinstance(error, (SigningError, TimestampRequestError, OSError)):
        return DependencyError(f"signing failed: {error}", code="signing_failed")
    if isinstance(error, _DOCUMENT_ERRORS):
        log.error("the record's document cannot be signed", exc_info=error)
        return InvalidInput("the record's document cannot be read or updated to sign it "
                            f"({type(error).__name__}); upload a corrected record with "
                            "`supersedes`", code="record_unreadable")
    log.error("signing failed unexpectedly", exc_info=error)
    return DependencyError(f"signing failed: {type(error).__name__}", code="signing_failed")
