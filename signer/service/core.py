"""The service without HTTP: its parts built once per process, one service per concern.

    hocba = Hocba(load_settings())
    row = hocba.records.create(actor, pdf, metadata)
    row = hocba.key_signing.sign(actor, row.id, "teacher", "school-1-teacher")

Every signing path ends in `hocba.step.sign` (signer/service/signing.py).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from archive.index import Index
from archive.store import ObjectStore, open_store
from signer.clients import Clients, load_clients
from signer.errors import ConfigError
from signer.keys.registry import KeyRegistry
from signer.pades.context import SigningServices
from signer.policy import Policy, load_policies
from signer.service.archiving import Archiving
from signer.service.audits import Audits
from signer.service.catalog import Catalog
from signer.service.documents import Documents
from signer.service.evidence import Evidence, EvidencePolicy
from signer.service.jobs import JobRunner
from signer.service.keysigning import KeySigning
from signer.service.packages import Packages
from signer.service.records import Records
from signer.service.renewals import RenewalPolicy, Renewals
from signer.service.shares import ShareLinks
from signer.service.signing import SigningStep
from signer.service.stats import Stats
from signer.service.transfers import Transfers
from signer.service.twostep import TwoStep
from signer.service.verification import Health, Verification
from signer.settings import Settings


class Hocba:
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
        self.index.migrate()
        self.services = SigningServices(
            tsa_url=settings.tsa_url, trust_anchors=list(self.clients.trust_anchors),
            font_path=settings.stamp_font,
            revocation_cache_seconds=settings.revocation_cache_seconds,
            timeout=settings.network_timeout_seconds,
        )
        role_by_field = {r.field.name: r.name for p in self.policies.values() for r in p.roles}

        self.documents = Documents(self.store)
        self.records = Records(settings, self.index, self.documents, self.policies)
        self.archiving = Archiving(self.store, self.index, self.documents, self.policies,
                                   self.services)
        self.step = SigningStep(self.index, self.records, self.documents, self.archiving,
                                self.policies, self.services)
        self.key_signing = KeySigning(self.step, self.keys, self.services)
        self.two_step = TwoStep(settings, self.index, self.documents, self.step,
                                self.services)
        self.verification = Verification(self.index, self.services, role_by_field,
                                         settings.public_base_url)
        self.health = Health(self.index, self.store, self.keys, self.archiving,
                                   settings.tsa_url)
        self.catalog = Catalog(self.index, self.records, self.documents)
        self.packages = Packages(self.index, self.records, self.catalog, self.verification)
        self.shares = ShareLinks(self.index, self.catalog, settings.public_base_url)
        self.transfers = Transfers(self.index, self.clients)
        self.stats = Stats(self.index, sorted(self.policies))
        self.audits = Audits(self.index)
        self.renewals = Renewals(self.index, self.store, self.documents, self.services,
                                 RenewalPolicy.load())
        self.evidence = Evidence(self.index, self.store, self.documents, self.services,
                                 EvidencePolicy.load(self.renewals.policy.margin,
                                                     settings.evidence_policy or None))
        self.verification.evidence_of = self.evidence.current_der
        self._jobs: JobRunner | None = None
        self._jobs_lock = threading.Lock()

    def jobs(self) -> JobRunner:
        """The job runner of this process (its thread starts with the first job)."""
        with self._jobs_lock:
            if self._jobs is None:
                self._jobs = JobRunner(self.index, self.store, self.clients,
                                       self.key_signing, self.renewals, self.evidence,
                                       lease_seconds=self.settings.job_lease_seconds)
            return self._jobs

    def close(self) -> None:
        if self._jobs is not None:
            self._jobs.stop()
        self.index.close()


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
