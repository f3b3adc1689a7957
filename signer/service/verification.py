"""Verification for anyone (a report for any PDF, and whether hocba archived it), and
the service's readiness."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

from archive.errors import ArchiveError
from archive.index import Index
from archive.index.rows import RecordRow
from archive.index.service_state import FLAGS, FlagRow
from archive.store import ObjectStore
from archive.times import rfc3339
from archive.verification import verify_url
from signer.aio import run
from signer.errors import DependencyError, HocbaError, NotFound
from signer.evidence import verify_pdf_with_evidence
from signer.pades.context import SigningServices, TsaClient
from signer.pades.validate import verify_pdf
from signer.service.actors import Actor
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


# A TSA probe (a real RFC 3161 request) answers /readyz for this long: probes from
# readiness checks every few seconds must not load the TSA.
TSA_PROBE_CACHE_SECONDS = 30.0
TSA_PROBE_TIMEOUT_SECONDS = 5
OK = "ok"


@dataclass(frozen=True)
class CheckResult:
    """One readiness check's outcome in this process: "ok" or "error: <short reason>"
    (never a secret nor a record id: /readyz is public)."""

    status: str
    checked_at: float  # time.time()
    seconds: float  # how long the check took


class Health:
    """Readiness from what every worker shares: the index (the archive-lock flag), the
    store, the HSM, and the TSA asked for a real timestamp, that answer reused for
    TSA_PROBE_CACHE_SECONDS."""

    def __init__(self, index: Index, store: ObjectStore, keys: KeyRegistry,
                 archiving: Archiving, tsa_url: str, *,
                 tsa_cache_seconds: float = TSA_PROBE_CACHE_SECONDS) -> None:
        self.index = index
        self.store = store
        self.keys = keys
        self.archiving = archiving
        self.tsa_url = tsa_url
        self.tsa_cache_seconds = tsa_cache_seconds
        # the signing services' TSA client class, with a readiness probe's short timeout
        self._tsa = TsaClient(tsa_url, timeout=TSA_PROBE_TIMEOUT_SECONDS)
        self._tsa_lock = threading.Lock()  # one probe at a time; the others wait for it
        self._tsa_last: tuple[float, CheckResult] | None = None  # (monotonic, result)
        # told each check that ran (name, result): the metrics (signer.http.metrics)
        self.on_check: Callable[[str, CheckResult], None] = lambda _name, _result: None

    def totals(self) -> dict[str, dict[str, int]]:
        """Counts for monitoring, the same whichever worker answers (from the index)."""
        return self.index.totals()

    def checks(self) -> dict[str, str]:
        """Each dependency checked; 'ok' or a short reason (never a secret)."""
        results = {
            "index": self._timed("index", self.index.check),
            "store": self._timed("store", self.store.check),
            "hsm": self._timed("hsm", self.keys.token.check if self.keys.token else _no_hsm),
            "tsa": self._tsa_check(),
            "archive_lock": self._timed("archive_lock", self._archive_lock),
        }
        return {name: r.status for name, r in results.items()}

    def _timed(self, name: str, fn: Callable[[], None]) -> CheckResult:
        start = time.perf_counter()
        try:
            fn()
            status = OK
        except (HocbaError, ArchiveError, OSError) as e:
            status = f"error: {e.detail if isinstance(e, _Reason) else type(e).__name__}"
        result = CheckResult(status, time.time(), time.perf_counter() - start)
        self.on_check(name, result)
        return result

    def _tsa_check(self) -> CheckResult:
        with self._tsa_lock:
            cached = self._tsa_last
            if cached is not None and time.monotonic() - cached[0] < self.tsa_cache_seconds:
                return cached[1]
            result = self._timed("tsa", lambda: probe_tsa(self._tsa))
            self._tsa_last = (time.monotonic(), result)
            return result

    def _archive_lock(self) -> None:
        failure = self.archiving.lock_failure
        if failure:
            raise _Reason(failure)

    def flags(self) -> list[FlagRow]:
        """The service-wide flags raised (in the index: every worker's)."""
        return self.index.list_flags()

    def clear_flag(self, actor: Actor, name: str) -> FlagRow | None:
        """An operator's act (audited): the flag cleared, None when it was not raised."""
        if name not in FLAGS:
            raise NotFound(f"no service flag {name!r}; flags: {', '.join(sorted(FLAGS))}",
                           code="flag_unknown")
        return self.index.clear_flag(name, actor=actor.name)


class _Reason(DependencyError):
    """A failed check whose detail is its reason (short, nothing secret)."""


def _no_hsm() -> None:
    raise _Reason("no PKCS#11 module configured")


def probe_tsa(client: HTTPTimeStamper) -> None:
    """Ask the TSA for a real RFC 3161 timestamp of a fresh digest (pyHanko's client:
    a nonce, the answer's status and nonce checked) and check that a token for that
    digest came back. Raises DependencyError with a short reason."""
    digest = hashlib.sha256(b"hocba readiness probe " + os.urandom(16)).digest()
    try:
        token = run(client.async_timestamp(digest, "sha256"))
    except TimestampRequestError as e:
        cause = e.__cause__
        raise _Reason("TSA did not answer with a timestamp"
                      + (f" ({type(cause).__name__})" if cause is not None
                         else " (refused)")) from e
    except Exception as e:  # any answer that is not a timestamp response
        raise _Reason(f"TSA answer is not a timestamp response ({type(e).__name__})") from e
    try:
        signed = token["content"]
        encap = signed["encap_content_info"]
        imprint = encap["content"].parsed["message_imprint"]
        ok = (token["content_type"].native == "signed_data"
              and encap["content_type"].native == "tst_info"
              and len(signed["signer_infos"]) > 0
              and imprint["hash_algorithm"]["algorithm"].native == "sha256"
              and imprint["hashed_message"].native == digest)
    except Exception as e:  # a token asn1crypto cannot read is no token
        raise _Reason(f"TSA token unreadable ({type(e).__name__})") from e
    if not ok:
        raise _Reason("TSA token does not timestamp the digest asked")
