"""Archival information packages: one record as a BagIt bag (RFC 8493), zipped.

Built from plain inputs (bytes and JSON-able values), so it knows neither HTTP nor the
signing service. The zip holds one top-level directory named after the record, the bag:

    <record_id>/
      bagit.txt, bag-info.txt, manifest-sha256.txt, tagmanifest-sha256.txt
      data/versions/v<n>.pdf          each archived version of the record (PAdES-B-LTA)
      data/metadata.json              the record, its signatures, versions and chain links
      data/validation-report.json     the validation report of the newest version, today
      data/evidence/v<n>-g<k>.ers     evidence records (RFC 4998, DER) of each version, every
                                      generation (k: 1 first, then each renewal); before a
                                      version's batch is built, a README.txt says so

`bagit.make_bag` changes the process's working directory while it runs, which would move
every other thread of a threaded server with it; so the bag is made in a short child
process. Reading and validating a bag (`bagit.Bag(path).validate()`) is safe in-process.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bagit

from archive.errors import ArchiveError
from archive.times import rfc3339

PACKAGE_FORMAT = "hocba-record-package/1"
BAG_SOFTWARE = f"hocba (bagit.py {bagit.VERSION})"
NO_EVIDENCE = """\
No evidence records are in this package yet.

Evidence records (RFC 4998 Evidence Record Syntax) prove that each archived version
existed since their first archive timestamp, renewed per batch. They are built in
batches within the archive's maximum wait after archiving; this record's versions were
not in a built batch when the package was made. Each PDF under data/versions/ is
PAdES-B-LTA: it carries its signatures, the revocation data of every certificate
involved and a document timestamp, so it can be validated on its own. A package made
later holds the evidence records here (v<n>-g<k>.ers), listed in metadata.json under
"evidence_records".
"""

# Run in the child: make the bag in argv[1] with the bag-info read from stdin (JSON).
_MAKE_BAG = (
    "import json, sys, bagit; "
    "bagit.make_bag(sys.argv[1], json.load(sys.stdin), processes=1, checksums=['sha256'])"
)


class PackageError(ArchiveError):
    """The inputs do not make a sound package (e.g. bytes that do not match their hash)."""

    code = "package_invalid"


@dataclass(frozen=True)
class VersionFile:
    """One archived version: its number, the SHA-256 the index gives it, and its bytes."""

    version: int
    sha256: str
    data: bytes


@dataclass(frozen=True)
class EvidenceFile:
    name: str  # a plain file name, e.g. "v1.ers"
    data: bytes


@dataclass(frozen=True)
class PackageInput:
    record_id: str
    school_code: str
    school_name: str
    record_type: str
    school_year: str
    versions: Sequence[VersionFile]
    metadata: Mapping[str, Any]  # becomes data/metadata.json
    validation_report: Mapping[str, Any]  # becomes data/validation-report.json
    evidence_records: Sequence[EvidenceFile] = ()
    bagging_date: datetime | None = None
    extra_info: Mapping[str, str] = field(default_factory=dict)


def _json(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n").encode()


def _plain_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise PackageError(f"not a plain file name: {name!r}", code="package_bad_name")
    return name


def payload_files(inp: PackageInput) -> dict[str, bytes]:
    """What goes under data/: relative path -> bytes. Checks each version's hash."""
    if not inp.versions:
        raise PackageError(f"record {inp.record_id} has no archived version",
                           code="package_no_versions")
    files: dict[str, bytes] = {}
    for v in inp.versions:
        if hashlib.sha256(v.data).hexdigest() != v.sha256:
            raise PackageError(f"version {v.version} of {inp.record_id} does not hash to "
                               f"{v.sha256}", code="package_hash_mismatch")
        name = f"versions/v{v.version}.pdf"
        if name in files:
            raise PackageError(f"version {v.version} given twice", code="package_bad_name")
        files[name] = v.data
    files["metadata.json"] = _json(inp.metadata)
    files["validation-report.json"] = _json(inp.validation_report)
    if inp.evidence_records:
        for ev in inp.evidence_records:
            files[f"evidence/{_plain_name(ev.name)}"] = ev.data
    else:
        files["evidence/README.txt"] = NO_EVIDENCE.encode()
    return files


def bag_info(inp: PackageInput) -> dict[str, str]:
    when = (inp.bagging_date or datetime.now(UTC)).astimezone(UTC)
    newest = max(inp.versions, key=lambda v: v.version) if inp.versions else None
    info = {
        "Source-Organization": inp.school_name,
        "External-Identifier": inp.record_id,
        "External-Description": (f"Học bạ số (digital school record) {inp.record_type}, "
                                 f"school year {inp.school_year}, school {inp.school_code}: "
                                 f"{len(inp.versions)} archived version(s), metadata, "
                                 "validation report, evidence records"),
        "Internal-Sender-Identifier": f"{inp.school_code}/{inp.record_id}",
        "Bagging-Date": when.strftime("%Y-%m-%d"),
        "Bag-Software-Agent": BAG_SOFTWARE,
        "Hocba-Package-Format": PACKAGE_FORMAT,
        "Hocba-Bagging-Time": rfc3339(when),
        "Hocba-School-Code": inp.school_code,
        "Hocba-Record-Type": inp.record_type,
        "Hocba-School-Year": inp.school_year,
        "Hocba-Versions": str(len(inp.versions)),
        "Hocba-Evidence-Records": str(len(inp.evidence_records)),
    }
    if newest is not None:
        info["Hocba-Current-Version"] = str(newest.version)
        info["Hocba-Current-SHA256"] = newest.sha256
    info.update(inp.extra_info)
    return info


def make_bag(directory: Path, inp: PackageInput, *, timeout: float = 120) -> Path:
    """Write the bag for `inp` into the empty or missing `directory`; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise PackageError(f"{directory} is not empty", code="package_dir_not_empty")
    for rel, data in payload_files(inp).items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    info = json.dumps(bag_info(inp), ensure_ascii=False)
    try:
        subprocess.run([sys.executable, "-I", "-c", _MAKE_BAG, str(directory)],
                       input=info.encode(), capture_output=True, check=True,
                       timeout=timeout, cwd=directory.parent)
    except subprocess.CalledProcessError as e:
        tail = e.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise PackageError(f"bagit failed: {tail[0]}", code="package_failed") from e
    except subprocess.TimeoutExpired as e:
        raise PackageError("bagit timed out", code="package_failed") from e
    bag = bagit.Bag(str(directory))
    try:
        bag.validate()
    except bagit.BagError as e:
        raise PackageError(f"the new bag does not validate: {e}", code="package_failed") from e
    return directory


def zip_directory(directory: Path, top: str) -> bytes:
    """Zip `directory` as `top/...` (BagIt serialization: one top-level directory)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                zf.write(path, f"{top}/{path.relative_to(directory).as_posix()}")
    return buffer.getvalue()


def build_package(inp: PackageInput) -> bytes:
    """The zipped bag of one record: `<record_id>/` holding the bag."""
    top = _plain_name(inp.record_id)
    with tempfile.TemporaryDirectory(prefix="hocba-bag-") as tmp:
        bag_dir = make_bag(Path(tmp) / top, inp)
        return zip_directory(bag_dir, top)
