"""An archived record as an archival information package (BagIt, zipped), audited."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archive.errors import ArchiveError
from archive.index import Index
from archive.index.rows import VersionRow
from archive.package import EvidenceFile, PackageInput, VersionFile, build_package
from archive.times import rfc3339
from signer.errors import from_archive
from signer.service.actors import Actor
from signer.service.catalog import Catalog
from signer.service.records import Records
from signer.service.verification import Verification
from signer.service.views import signature_view, version_view


@dataclass(frozen=True)
class Package:
    record_id: str
    data: bytes
    sha256: str


class Packages:
    def __init__(self, index: Index, records: Records, catalog: Catalog,
                 verification: Verification) -> None:
        self.index = index
        self.records = records
        self.catalog = catalog
        self.verification = verification

    def build(self, actor: Actor, record_id: str) -> Package:
        row = self.catalog.archived_row(actor.client, record_id, transferred=True)
        version_rows = self.index.list_versions(row.id)
        files = [VersionFile(v.version, v.sha256, self.catalog.archived_bytes(v.sha256))
                 for v in version_rows]
        newest = max(files, key=lambda f: f.version) if files else None
        report = self.verification.verify(newest.data, public=False) if newest else {}
        evidence, evidence_listing = self._evidence(row.id, version_rows)
        metadata = {
            "package": {"format": "hocba-record-package/1",
                        "created_at": rfc3339(datetime.now(UTC)), "created_by": actor.name},
            "record": self.records.view(row),
            "metadata": json.loads(row.metadata_json),
            "school": {"code": row.school_code, "name": row.school_name},
            "signatures": [signature_view(s) for s in self.index.list_signatures(row.id)],
            "versions": [{**version_view(v), "file": f"data/versions/v{v.version}.pdf"}
                         for v in version_rows],
            "chain": {"chain_version": row.chain_version, "supersedes": row.supersedes,
                      "superseded_by": row.superseded_by,
                      "records": self.catalog.chain(actor.client, row)},
            "validation_report": {"file": "data/validation-report.json",
                                  "version": newest.version if newest else None},
            "evidence_records": evidence_listing,
        }
        inp = PackageInput(
            record_id=row.id, school_code=row.school_code, school_name=row.school_name,
            record_type=row.record_type, school_year=row.school_year, versions=files,
            metadata=metadata, validation_report=report, evidence_records=evidence)
        try:
            data = build_package(inp)
        except ArchiveError as e:
            raise from_archive(e, None if e.code == "package_hash_mismatch"
                               else f"package: {e.detail}", default_code="package_failed") from e
        digest = hashlib.sha256(data).hexdigest()
        self.index.append_audit(actor.name, row.tenant, "record.package_exported", row.id,
                                {"sha256": digest, "size": len(data),
                                 "versions": [f.version for f in files],
                                 "reader_tenant": actor.client.tenant})
        return Package(row.id, data, digest)

    def _evidence(self, record_id: str, version_rows: list[VersionRow]
                  ) -> tuple[list[EvidenceFile], list[dict[str, Any]]]:
        """Every evidence record (RFC 4998) of the record's versions, every generation."""
        versions_of: dict[str, list[int]] = {}
        for v in version_rows:
            versions_of.setdefault(v.sha256, []).append(v.version)
        files: list[EvidenceFile] = []
        listing: list[dict[str, Any]] = []
        for e in self.index.evidence_of_record(record_id):
            for version in versions_of.get(e.object_sha256, []):
                name = f"v{version}-g{e.generation}.ers"
                files.append(EvidenceFile(name, self.catalog.archived_bytes(e.evidence_sha256)))
                listing.append({"file": f"data/evidence/{name}", "version": version,
                                "generation": e.generation, "current": e.current,
                                "sha256": e.evidence_sha256, "algorithm": e.algorithm,
                                "valid_until": rfc3339(e.valid_until),
                                "created_at": rfc3339(e.created_at)})
        return files, listing
