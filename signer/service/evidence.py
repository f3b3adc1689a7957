"""Evidence records (RFC 4998) for every archived object: built in batches (one hash
tree, one timestamp from the signing TSA), renewed per batch, checked against files.

Building: the oldest objects without evidence, up to `batch_size`; a smaller batch only
once its oldest object waited `max_wait` (or `everything=True`). Each batch's token
carries the validation data of its TSA chain (fetched then), so the record is
self-contained. Renewal: every group of current evidence records sharing a newest
archive timestamp that can be validated for less than the margin more gets one new
timestamp over that token (section 5.2) — or, when the tree's hash algorithm weakens
within the margin, a new hash tree over the rehashed objects (section 5.3).

Crash safety: evidence records are stored (locked, write-once) before one index
transaction adds the whole batch; a crash before it leaves locked objects no row
points to (the fixity audit lists them), never an object without evidence after a
rerun, and no indexed record that fails to verify.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asn1crypto import cms
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

from archive.errors import ArchiveError
from archive.evidence import (
    BatchEncoder,
    EvidenceError,
    HashTree,
    appended_timestamp_der,
    check_hashes,
    hash_renewal_value,
    parse,
    renew_hash_tree,
    renewal_ats,
    replace_last_timestamp,
    timestamp_renewal_value,
    tst_info,
    with_validation_data,
)
from archive.evidence.records import chain_algorithm, last_timestamp
from archive.index import Index
from archive.index.evidence import NewEvidence
from archive.index.rows import (
    EvidenceBatchRow,
    EvidenceRow,
    JobRow,
    PendingObject,
    RecordRow,
)
from archive.store import Area, ObjectStore
from signer.aio import run
from signer.algorithms import load_algorithm_policy
from signer.errors import ConfigError, DependencyError, HocbaError, NotFound, from_archive
from signer.evidence import EvidenceReport, verify_evidence
from signer.pades.context import SigningServices, cache_key
from signer.service.documents import Documents
from signer.service.views import job_view
from signer.truststore import TIMESTAMPING

log = logging.getLogger("hocba.evidence")
EVIDENCE_JOB = "evidence"
SCHEDULER = "hocba-scheduler"  # actor and tenant of the evidence jobs hocba queues itself
DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "crypto" / "evidence.toml"


@dataclass(frozen=True)
class EvidencePolicy:
    batch_size: int
    max_wait: timedelta
    hash_algorithm: str
    margin: timedelta

    @classmethod
    def load(cls, margin: timedelta, path: Path | str | None = None) -> EvidencePolicy:
        path = Path(path) if path else DEFAULT_POLICY
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
            policy = cls(int(doc["batch_size"]), timedelta(minutes=int(doc["max_wait_minutes"])),
                         str(doc["hash_algorithm"]), margin)
            hashlib.new(policy.hash_algorithm)
        except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"evidence policy {path}: {e!r}") from e
        if policy.batch_size < 1:
            raise ConfigError(f"evidence policy {path}: batch_size must be at least 1")
        return policy


@dataclass
class EvidenceRun:
    """What one run did: objects given evidence, batches built, evidence renewed, TSA
    requests made, and objects left waiting for a fuller batch."""

    built: int = 0
    batches: int = 0
    renewed: int = 0
    timestamp_requests: int = 0
    waiting: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    cpu_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"built": self.built, "batches": self.batches, "renewed": self.renewed,
                "timestamp_requests": self.timestamp_requests, "waiting": self.waiting,
                "failed": self.failed}


Progress = Callable[[int, int], None]


class Evidence:
    def __init__(self, index: Index, store: ObjectStore, documents: Documents,
                 services: SigningServices, policy: EvidencePolicy) -> None:
        self.index = index
        self.store = store
        self.documents = documents
        self.services = services
        self.policy = policy
        self.algorithms = load_algorithm_policy()

    # -- building ------------------------------------------------------------------------

    def build(self, actor: str, *, everything: bool = False, now: datetime | None = None,
              progress: Progress | None = None, stop: Callable[[], bool] | None = None
              ) -> EvidenceRun:
        """Evidence for the archived objects that have none, a batch at a time."""
        started = time.process_time()
        report = EvidenceRun()
        total = self.index.count_without_evidence()
        while stop is None or not stop():
            pending = self.index.objects_without_evidence(self.policy.batch_size)
            if not pending:
                break
            moment = now or datetime.now(UTC)
            if (len(pending) < self.policy.batch_size and not everything
                    and moment - pending[0].archived_at < self.policy.max_wait):
                report.waiting = len(pending)
                break
            try:
                report.built += self._build_batch(actor, pending)
            except HocbaError as e:
                report.failed.append({"objects": len(pending), "code": e.code,
                                      "detail": e.detail})
                log.warning("evidence batch of %d not built: %s", len(pending), e.code)
                break
            report.batches += 1
            report.timestamp_requests += 1
            if progress is not None:
                progress(report.built, total)
        report.cpu_seconds = time.process_time() - started
        return report

    def _build_batch(self, actor: str, pending: list[PendingObject]) -> int:
        algorithm = self.policy.hash_algorithm
        leaves = [self._object_hash(p.sha256, algorithm) for p in pending]
        tree = HashTree(leaves, algorithm)
        token, valid_until = self.timestamp(tree.root, algorithm)
        batch = EvidenceBatchRow(str(uuid.uuid4()), "initial", algorithm, len(tree),
                                 tree.root.hex(), tst_info(token)["gen_time"].native,
                                 datetime.now(UTC))
        encoder = BatchEncoder(algorithm, token)
        built = encoder.records(tree)
        first = next(built)
        self._sanity_check(pending[0], first)
        items = [NewEvidence(p.sha256, p.record_id, self._put(der), 1)
                 for p, der in zip(pending, itertools.chain([first], built), strict=True)]
        return self._index(batch, items, valid_until, actor)

    def _object_hash(self, sha256: str, algorithm: str) -> bytes:
        if algorithm == "sha256":
            return bytes.fromhex(sha256)  # an archive object is named by its SHA-256
        digest = hashlib.new(algorithm)
        with self.documents.open(sha256, Area.ARCHIVE) as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return digest.digest()

    # -- renewal -------------------------------------------------------------------------

    def due(self, now: datetime | None = None, margin: timedelta | None = None
            ) -> list[tuple[str, int, datetime]]:
        before = (now or datetime.now(UTC)) + (self.policy.margin if margin is None
                                               else margin)
        weak = [a for a in self.index.evidence_algorithms()
                if self._weakens_before(a, before)]
        return self.index.evidence_groups_due(before, weak)

    def renew(self, actor: str, *, now: datetime | None = None,
              margin: timedelta | None = None, progress: Progress | None = None,
              stop: Callable[[], bool] | None = None) -> EvidenceRun:
        """Renew every group of evidence records due: one timestamp per group."""
        started = time.process_time()
        report = EvidenceRun()
        groups = self.due(now, margin)
        total = sum(n for _, n, _ in groups)
        horizon = (now or datetime.now(UTC)) + (self.policy.margin if margin is None
                                                else margin)
        for batch_id, n, _until in groups:
            if stop is not None and stop():
                break
            members = self.index.current_evidence_in_batch(batch_id)
            try:
                if self._weakens_before(members[0].algorithm, horizon):
                    report.renewed += self._renew_hash_tree(actor, members)
                else:
                    report.renewed += self._renew_timestamp(actor, members)
                report.timestamp_requests += 1
            except HocbaError as e:
                report.failed.append({"batch_id": batch_id, "objects": n, "code": e.code,
                                      "detail": e.detail})
                log.warning("evidence of batch %s not renewed: %s", batch_id, e.code)
            if progress is not None:
                progress(report.renewed, total)
        report.cpu_seconds = time.process_time() - started
        return report

    def _weakens_before(self, algorithm: str, horizon: datetime) -> bool:
        listed, until = self.algorithms.digest_until(algorithm)
        return not listed or (until is not None and until <= horizon)

    def _renew_timestamp(self, actor: str, members: list[EvidenceRow]) -> int:
        """One new archive timestamp for a group sharing its newest one (RFC 4998 5.2):
        each record gets the old token with validation data added, then the new ATS."""
        ders = [self._der(m) for m in members]
        first = self._parsed(members[0], ders[0])
        old = last_timestamp(first)
        enriched = self.with_validation_data(old)
        value = timestamp_renewal_value(replace_last_timestamp(first, enriched))
        algorithm = members[0].algorithm
        token, valid_until = self.timestamp(value, algorithm)
        batch = EvidenceBatchRow(str(uuid.uuid4()), "timestamp", algorithm, 1, value.hex(),
                                 tst_info(token)["gen_time"].native, datetime.now(UTC))
        new_ats = renewal_ats(algorithm, token)
        old_der, enriched_der = old.dump(), enriched.dump()
        try:
            renewed = [appended_timestamp_der(der, old_der, enriched_der, new_ats)
                       for der in ders]
        except EvidenceError as e:
            raise HocbaError(f"evidence records of one batch differ: {e}",
                             code="evidence_inconsistent", status=409) from e
        self._sanity_check(members[0], renewed[0])
        items = [NewEvidence(m.object_sha256, m.record_id, self._put(der), m.generation + 1)
                 for m, der in zip(members, renewed, strict=True)]
        return self._index(batch, items, valid_until, actor)

    def _sanity_check(self, member: EvidenceRow | PendingObject, der: bytes) -> None:
        """The first record of a batch is checked against its object's hash before any
        is stored: a wrong build stops there."""
        sha256 = member.object_sha256 if isinstance(member, EvidenceRow) else member.sha256
        try:
            check_hashes(parse(der), {"sha256": bytes.fromhex(sha256)}
                         if self._chains_are_sha256(der) else self._object_digests(sha256))
        except EvidenceError as e:
            raise HocbaError(f"evidence record built for {sha256} does not verify: {e}",
                             code="evidence_corrupt", status=500) from e

    def _chains_are_sha256(self, der: bytes) -> bool:
        record = parse(der, lazy=True)
        return all(chain_algorithm(c) == "sha256" for c in record["archive_time_stamp_sequence"])

    def _object_digests(self, sha256: str) -> dict[str, bytes]:
        return {a: self._object_hash(sha256, a)
                for a in {*self.index.evidence_algorithms(), self.policy.hash_algorithm,
                          "sha256"}}

    def _renew_hash_tree(self, actor: str, members: list[EvidenceRow]) -> int:
        algorithm = self.policy.hash_algorithm
        if self._weakens_before(algorithm, datetime.now(UTC) + self.policy.margin):
            raise ConfigError(f"evidence policy: {algorithm} weakens within the renewal "
                              "margin; choose a stronger hash_algorithm")
        records = [self._record(m) for m in members]
        enriched = self.with_validation_data(last_timestamp(records[0]))
        records = [replace_last_timestamp(r, enriched) for r in records]
        leaves = [hash_renewal_value(r, self._object_hash(m.object_sha256, algorithm),
                                     algorithm) for m, r in zip(members, records, strict=True)]
        tree = HashTree(leaves, algorithm)
        token, valid_until = self.timestamp(tree.root, algorithm)
        batch = EvidenceBatchRow(str(uuid.uuid4()), "hash_tree", algorithm, len(tree),
                                 tree.root.hex(), tst_info(token)["gen_time"].native,
                                 datetime.now(UTC))
        items = [NewEvidence(m.object_sha256, m.record_id,
                             self._put(renew_hash_tree(r, algorithm, tree.reduced(i),
                                                       token).dump()),
                             m.generation + 1)
                 for i, (m, r) in enumerate(zip(members, records, strict=True))]
        return self._index(batch, items, valid_until, actor)

    # -- shared steps ----------------------------------------------------------------------

    def timestamp(self, digest: bytes, algorithm: str) -> tuple[cms.ContentInfo, datetime]:
        """A token over `digest` from the signing TSA, with its chain's validation data
        (fetched now), and until when it can be validated."""
        try:
            token = run(self.services.timestamper.async_timestamp(digest, algorithm))
        except (TimestampRequestError, OSError) as e:
            raise DependencyError(f"evidence: the TSA did not answer: {e}",
                                  code="tsa_unavailable") from e
        token = self.with_validation_data(token)
        token = cms.ContentInfo.load(token.dump())  # encoded once, reused as it is
        cert = _tsa_certificate(token)
        ends = [cert.not_valid_after]
        weakens = self.algorithms.weakens_before(cert)
        if weakens is not None:
            ends.append(weakens)
        _listed, tree_until = self.algorithms.digest_until(algorithm)
        if tree_until is not None:
            ends.append(tree_until)
        return token, min(ends)

    def with_validation_data(self, token: cms.ContentInfo) -> cms.ContentInfo:
        """`token` with its TSA's path and that path's revocation data, checked now."""
        cert = _tsa_certificate(token)
        others = [c.chosen for c in token["content"]["certificates"] or ()
                  if c.name == "certificate"]
        try:
            path = run(self.services.validated_path(cert, others, purpose=TIMESTAMPING))
        except Exception as e:  # pyhanko_certvalidator's errors, fetch failures
            raise HocbaError(f"evidence: the TSA certificate does not validate now: {e}",
                             code="tsa_untrusted", status=409) from e
        context = self.services.revinfo_context([cache_key(cert)])
        enriched = with_validation_data(token, list(path), [c.dump() for c in context.crls],
                                        [o.dump() for o in context.ocsps])
        return cms.ContentInfo.load(enriched.dump())

    def _der(self, row: EvidenceRow) -> bytes:
        try:
            return bytes(self.store.get(row.evidence_sha256, Area.ARCHIVE))
        except ArchiveError as e:
            raise from_archive(e, f"evidence record {row.evidence_sha256}: {e}",
                               default_code="store_error") from e

    def _parsed(self, row: EvidenceRow, der: bytes) -> Any:
        try:
            return parse(der, lazy=True)
        except EvidenceError as e:
            raise HocbaError(f"stored evidence record {row.evidence_sha256}: {e}",
                             code="evidence_corrupt", status=500) from e

    def _record(self, row: EvidenceRow) -> Any:
        return self._parsed(row, self._der(row))

    def _put(self, der: bytes) -> Any:
        try:
            return self.store.put_archived(der)
        except ArchiveError as e:
            raise from_archive(e, f"store refused an evidence record: {e}",
                               default_code="store_error") from e

    def _index(self, batch: EvidenceBatchRow, items: list[NewEvidence],
               valid_until: datetime, actor: str) -> int:
        try:
            added = self.index.add_evidence_batch(batch, items, valid_until=valid_until,
                                                  actor=actor)
        except ArchiveError as e:
            raise from_archive(e, f"index refused an evidence batch: {e}",
                               default_code="store_error") from e
        log.info("evidence batch %s (%s): %d objects", batch.id, batch.kind, added)
        return added

    # -- reading and checking --------------------------------------------------------------

    def current_der(self, object_sha256: str) -> bytes | None:
        row = self.index.current_evidence(object_sha256)
        if row is None:
            return None
        try:
            return self.store.get(row.evidence_sha256, Area.ARCHIVE)
        except ArchiveError as e:
            raise from_archive(e, f"evidence record {row.evidence_sha256}: {e}",
                               default_code="store_error") from e

    def of_newest_version(self, row: RecordRow) -> tuple[bytes, EvidenceRow]:
        """The current evidence record of an archived record's newest version."""
        found = self.index.current_evidence(row.current_sha256)
        if found is None:
            raise NotFound(f"record {row.id} has no evidence record yet (evidence is "
                           f"built within {self.policy.max_wait} of archiving)",
                           code="evidence_not_found")
        der = self.current_der(row.current_sha256)
        assert der is not None
        return der, found

    def check(self, data: bytes, evidence: bytes, *, online: bool = True) -> EvidenceReport:
        return run(verify_evidence(data, evidence, self.services.trust, online=online))

    def counts(self, now: datetime | None = None) -> dict[str, int]:
        now = now or datetime.now(UTC)
        return self.index.evidence_counts(now, now + self.policy.margin)

    # -- as a job ------------------------------------------------------------------------

    def submit(self, tenant: str, actor: str, *, renew: bool = False,
               everything: bool = False) -> JobRow:
        total = (sum(n for _, n, _ in self.due()) if renew
                 else self.index.count_without_evidence())
        return self.index.create_job(tenant=tenant, kind=EVIDENCE_JOB, total=total,
                                     actor=actor,
                                     params={"actor": actor, "renew": renew,
                                             "everything": everything})

    def schedule(self, now: datetime | None = None) -> JobRow | None:
        """Queue an evidence job when a batch is ready (full, or its oldest object waited
        `max_wait`) and none is queued or running: the job runner calls this when idle."""
        pending = self.index.objects_without_evidence(self.policy.batch_size)
        if not pending:
            return None
        moment = now or datetime.now(UTC)
        if (len(pending) < self.policy.batch_size
                and moment - pending[0].archived_at < self.policy.max_wait):
            return None
        return self.index.create_job_unless_active(
            tenant=SCHEDULER, kind=EVIDENCE_JOB, total=self.index.count_without_evidence(),
            actor=SCHEDULER, params={"actor": SCHEDULER, "renew": False, "everything": False})

    def status(self, job_id: str) -> dict[str, Any]:
        job = self.index.get_job(job_id)
        if job is None or job.kind != EVIDENCE_JOB:
            raise NotFound(f"no evidence job {job_id}", code="evidence_job_not_found")
        return job_view(job)

    def run_job(self, job: JobRow, lost: Callable[[], bool]) -> None:
        """Build (or renew) what is missing now: a resumed job finds the done part done."""
        last = 0

        def progress(done: int, _total: int) -> None:
            nonlocal last
            done = min(done, job.total - job.done)  # more may have been archived since
            if done > last:
                self.index.update_job_progress(job.id, done - last, None)
                last = done

        params = job.params
        if params.get("renew"):
            run_ = self.renew(params["actor"], progress=progress, stop=lost)
        else:
            run_ = self.build(params["actor"], everything=bool(params.get("everything")),
                              progress=progress, stop=lost)
        for failure in run_.failed:
            self.index.update_job_progress(job.id, 0, failure)


def _tsa_certificate(token: cms.ContentInfo) -> Any:
    signed = token["content"]
    sid = signed["signer_infos"][0]["sid"]
    for choice in signed["certificates"] or ():
        cert = choice.chosen
        if choice.name != "certificate":
            continue
        if sid.name == "issuer_and_serial_number":
            if cert.serial_number == sid.chosen["serial_number"].native \
                    and cert.issuer == sid.chosen["issuer"]:
                return cert
        elif cert.key_identifier == sid.chosen.native:
            return cert
    raise DependencyError("the TSA's token does not hold its certificate",
                          code="tsa_unavailable")
