"""The service without HTTP: its parts built once per process, one service per concern.

    hocba = Hocba(load_settings())
    row = hocba.records.create(actor, pdf, metadata)
    row = hocba.key_signing.sign(actor, row.id, "teacher", "school-1-teacher")

Every signing path ends in `hocba.step.sign` (signer/service/signing.py).
"""

from __future__ import annotations

import ipaddress
import json
import threading
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
from signer.truststore import load_trust


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
                                       lease_seconds=self.settings.job_lease_seconds,
                                       finish_grace_seconds=self.settings.finish_grace_seconds)
            return self._jobs

    def close(self) -> None:
        if self._jobs is not None:
            self._jobs.stop()
        self.index.close()


def _refuse_dev_parts(settings: Settings) -> None:
    """HOCBA_ENV=production starts with no part of the dev setup (certs/provision.py,
    `hocba dev`): each refusal a ConfigError that names the part."""
    try:
        doc = json.loads(Path(settings.clients_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = {}  # load_clients says what is wrong with it
    clients = load_clients(settings.clients_file)
    signers = doc.get("signers", []) if isinstance(doc, dict) else []
    for check in (_dev_clients_file, _dev_tsa, _dev_public_base_url):
        check(settings)
    _software_keys(signers)
    _plain_api_keys(doc.get("clients", []) if isinstance(doc, dict) else [])
    _dev_csc(signers)
    _dev_trust(clients)
    _dev_token(settings, clients)


# where the dev and test state live (certs/provision.py) and its marker file
DEV_STATE_DIRS = ("var/dev", "var/test")
DEV_STATE_MARKER = ".provisioned"
# the dev PKI's CAs (certs/dev-pki.yml): its keys are new in each state directory, its
# names are not
DEV_CA_NAMES = ("hocba dev", "foreign test ca")
DEV_TOKEN_LABELS = ("hocba-dev", "hocba-school-client")


def _refuse(part: str, why: str) -> ConfigError:
    return ConfigError(f"production refuses {part}: {why}")


def _is_dev_state(path: Path) -> bool:
    """In a dev/test state directory: var/dev, var/test, var/test-<port>, or any
    directory provisioning marked."""
    parts = path.resolve().parts
    pairs = {f"{a}/{b.split('-')[0]}" for a, b in pairwise(parts)}
    return bool(pairs & set(DEV_STATE_DIRS)) or (
        path.resolve().parent / DEV_STATE_MARKER).exists()


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _dev_clients_file(settings: Settings) -> None:
    if _is_dev_state(Path(settings.clients_file)):
        raise _refuse("the dev clients file", f"HOCBA_CLIENTS_FILE={settings.clients_file} "
                      "is a provisioned dev/test state")


def _dev_tsa(settings: Settings) -> None:
    url = settings.tsa_url
    if _is_loopback(url) or urlsplit(url).path.startswith("/dev/"):
        raise _refuse("the dev TSA", f"HOCBA_TSA_URL={url} is the dev responder or on "
                      "this machine")


def _dev_public_base_url(settings: Settings) -> None:
    url = settings.public_base_url
    if _is_loopback(url) or urlsplit(url).scheme != "https":
        raise _refuse("the dev public base URL", f"HOCBA_PUBLIC_BASE_URL={url}: records "
                      "carry it in their QR code for ever; an https URL others reach")


def _software_keys(signers: list[dict[str, Any]]) -> None:
    found = [s.get("key") for s in signers
             if s.get("backend") == "local" or s.get("private_key_pem")]
    if found:
        raise _refuse("software (local) signer keys", f"{', '.join(map(str, found))} "
                      "(private keys in files; use PKCS#11, CSC or client-held keys)")


def _plain_api_keys(clients: list[dict[str, Any]]) -> None:
    found = [c.get("name") for c in clients if "api_key" in c]
    if found:  # never the key itself in the message
        raise _refuse("plain API keys", f"clients {', '.join(map(str, found))} hold "
                      "api_key; production stores API keys as api_key_sha256 only")


def _dev_csc(signers: list[dict[str, Any]]) -> None:
    csc = [s for s in signers if s.get("backend") == "csc"]
    local = [s.get("key") for s in csc if _is_loopback(str(s.get("csc_service_url", "")))]
    if local:
        raise _refuse("the dev CSC server", f"{', '.join(map(str, local))}: "
                      "csc_service_url on this machine")
    stored = [s.get("key") for s in csc if "authorization" in s]
    if stored:
        raise _refuse("a stored CSC authorization", f"{', '.join(map(str, stored))}: the "
                      "caller sends the one-time authorization, the clients file never "
                      "holds it")


def _dev_trust(clients: Clients) -> None:
    for anchor in load_trust(list(clients.trust_anchors)).anchors:
        subject = anchor.certificate.subject.human_friendly
        if any(name in subject.lower() for name in DEV_CA_NAMES):
            raise _refuse("the dev root", f"trust anchor {subject!r} ({anchor.sha256[:16]}) "
                          "is the dev PKI's")


def _dev_token(settings: Settings, clients: Clients) -> None:
    p11 = clients.pkcs11
    if not (settings.pkcs11_module or p11):
        return
    label = p11.token_label if p11 else settings.pkcs11_token_label
    if label in DEV_TOKEN_LABELS:
        raise _refuse("the dev PKCS#11 token", f"token label {label!r} is the dev "
                      "SoftHSM2 token's")
    if p11 and (p11.pin_file or p11.softhsm2_conf):
        raise _refuse("the dev PKCS#11 token", "pin_file/softhsm2_conf in the clients "
                      "file (the PIN comes from the variable HOCBA_PKCS11_PIN_ENV names)")
