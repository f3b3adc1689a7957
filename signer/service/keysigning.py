"""Signing with a key the service reaches: server-held (HSM over PKCS#11, a dev software
key) or at a remote-signing provider (CSC), one record or a batch with one
authorization."""

from __future__ import annotations

from typing import Any, BinaryIO

from asn1crypto import x509

from archive.errors import ArchiveError
from archive.index.rows import RecordRow
from signer.errors import DependencyError, HocbaError
from signer.keys import KeyBackend
from signer.keys.csc import CscBatchSigner, CscKey
from signer.keys.registry import KeyRegistry
from signer.pades.context import SigningServices
from signer.pades.sign import sign_role_to
from signer.service.actors import Actor
from signer.service.signing import CurrentRevision, SigningStep, Target


class KeyProducer(CurrentRevision):
    """Signs with a registered key; a CSC key signs all its targets with one
    authorization (`authorization`: the provider's one-time OTP or PIN, used once)."""

    def __init__(self, key: KeyBackend, key_name: str, services: SigningServices,
                 authorization: Any = None) -> None:
        self.key = key
        self.key_name: str | None = key_name
        self.certificate: x509.Certificate = key.certificate
        self.services = services
        self.batched = isinstance(key, CscKey)
        self._authorization = authorization
        self._csc: CscBatchSigner | None = None

    async def start(self, count: int) -> None:
        if isinstance(self.key, CscKey):
            authorization, self._authorization = self._authorization, None
            self._csc = self.key.signer_for(authorization, batch_size=count)

    async def produce(self, target: Target, source: BinaryIO, out: BinaryIO) -> None:
        if self._csc is None:
            await sign_role_to(source, out, self.key.signer(), target.job, self.services)
            return
        with self._csc.slot():  # leaves the batch if it fails before signing
            await sign_role_to(source, out, self._csc, target.job, self.services)

    async def close(self) -> None:
        if self._csc is not None:
            await self._csc.aclose()
            self._csc = None


class KeySigning:
    def __init__(self, step: SigningStep, keys: KeyRegistry, services: SigningServices
                 ) -> None:
        self.step = step
        self.keys = keys
        self.services = services

    def producer(self, actor: Actor, key_name: str, authorization: Any = None
                 ) -> KeyProducer:
        key = self.keys.get(key_name, actor.client.schools)
        return KeyProducer(key, key_name, self.services, authorization)

    def sign(self, actor: Actor, record_id: str, role_name: str, key_name: str,
             authorization: Any = None) -> RecordRow:
        """One record, one role. The last role asking again for a record whose archiving
        failed retries the archiving."""
        target = self.step.target(actor.client, record_id, role_name, retry_archiving=True)
        if target.finish_only:
            try:
                return self.step.archiving.finish(actor, target.row)
            except HocbaError as e:
                raise finishing_later(e) from e
        producer = self.producer(actor, key_name, authorization)
        self.step.check_signer(target, producer.key.certificate, producer.key.chain,
                               key=producer.key)
        try:
            return self.step.sign_one(actor, target, producer)
        except HocbaError as e:
            if e.status >= 500 and target.is_last and signed_by(self.step, target):
                raise finishing_later(e) from e
            raise


def signed_by(step: SigningStep, target: Target) -> bool:
    """The target's role has signed the record (the step failed after its commit)."""
    try:
        return any(s.role == target.role.name for s in step.index.list_signatures(
            target.row.id))
    except ArchiveError:
        return False


def finishing_later(error: HocbaError) -> HocbaError:
    """The last signature is stored but archiving failed: the same code and status (a
    client may still retry: it archives), and a detail saying hocba finishes it."""
    cls = DependencyError if isinstance(error, DependencyError) else HocbaError
    return cls(f"{error.detail}. The signature is stored: hocba archives the "
                      "record by itself (status archiving); no action is needed",
                      code=error.code, status=error.status, title=error.title)
