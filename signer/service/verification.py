"""Verification for anyone (a report for any PDF, and whether hocba archived it), and
the service's readiness."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from archive.errors import ArchiveError
from archive.index import Index
from archive.index.rows import RecordRow
from archive.store import ObjectStore
from archive.times import rfc3339
from archive.verification import verify_url
from signer.aio import run
from signer.errors import DependencyError, HocbaError
from signer.evidence import verify_pdf_with_evidence
from signer.pades.context import SigningServices
from signer.pades.validate import verify_pdf
from signer.service.archiving import Archiving

if TYPE_CHECKING:
    from signer.keys.registry import KeyRegistry


class Verification:
    def __init__(self, index: Index, services: SigningServices,
                 role_by_field: dict[str, str], public_base_url: str) -> None:
        self.index = index
        self.services = services
        self.role_by_field = role_by_field
        self.public_base_url = public_base_url.rstrip("/")
        # the current evidence record (RFC 4998) of an archived object, by its SHA-256
        self.evidence_of: Callable[[str], bytes | None] = lambda _sha256: None

    def verify(self, pdf: bytes, *, public: bool = True, allow_fetching: bool = True
               ) -> dict[str, Any]:
        """The report on any PDF. `public` (anyone may ask): signers' subjects without
        identifying attributes, and `archived` says which version of an archived record
        this is and where its public page is, never the record's id. Otherwise (a package,
        for a key that covers the record) the full subjects and the record id."""
        return self.verify_archived(pdf, public=public, allow_fetching=allow_fetching)[0]

    def verify_archived(self, pdf: bytes, *, public: bool = True,
                        allow_fetching: bool = True) -> tuple[dict[str, Any], RecordRow | None]:
        """`verify`'s report and the record the file is an archived version of (or None):
        for pages that show the record's school without naming the record."""
        sha256 = hashlib.sha256(pdf).hexdigest()
        version = self.index.find_version_by_sha256(sha256)
        # its evidence record (RFC 4998) proves it when the file alone no longer does
        evidence = self.evidence_of(sha256) if version is not None else None
        if evidence is not None:
            found = run(verify_pdf_with_evidence(
                pdf, evidence, trust_roots=self.services.trust,
                role_by_field=self.role_by_field, allow_fetching=allow_fetching,
                when_needed=True))
        else:
            found = run(verify_pdf(pdf, trust_roots=self.services.trust,
                                   role_by_field=self.role_by_field,
                                   allow_fetching=allow_fetching))
        report = found.as_dict(public=public)
        record = self.index.get_record(version.record_id) if version else None
        if version is None:
            report["archived"] = None
        elif not public:
            report["archived"] = {"record_id": version.record_id, "version": version.version}
        else:
            code = record.verification_code if record else None
            report["archived"] = {
                "version": version.version, "archived_at": rfc3339(version.created_at),
                "verify_url": (verify_url(self.public_base_url, code) if code
                               else None)}
        return report, record


class Health:
    def __init__(self, index: Index, store: ObjectStore, keys: KeyRegistry,
                 archiving: Archiving, tsa_url: str) -> None:
        self.index = index
        self.store = store
        self.keys = keys
        self.archiving = archiving
        self.tsa_url = tsa_url

    def totals(self) -> dict[str, dict[str, int]]:
        """Counts for monitoring, the same whichever worker answers (from the index)."""
        return self.index.totals()

    def checks(self) -> dict[str, str]:
        """Each dependency checked; 'ok' or a short reason (never a secret)."""
        checks: dict[str, str] = {}

        def probe(name: str, fn: Callable[[], None]) -> None:
            try:
                fn()
                checks[name] = "ok"
            except (HocbaError, ArchiveError, OSError) as e:
                checks[name] = f"error: {type(e).__name__}"

        probe("index", self.index.check)
        probe("store", self.store.check)
        probe("hsm", self.keys.token.check if self.keys.token else _no_hsm)
        probe("tsa", lambda: _probe_http(self.tsa_url))
        failure = self.archiving.lock_failure
        checks["archive_lock"] = f"error: {failure}" if failure else "ok"
        return checks


def _no_hsm() -> None:
    raise DependencyError("no PKCS#11 module configured")


def _probe_http(url: str) -> None:
    import requests

    try:
        requests.head(url, timeout=3)
    except requests.RequestException as e:
        raise DependencyError(f"TSA unreachable: {type(e).__name__}") from e
