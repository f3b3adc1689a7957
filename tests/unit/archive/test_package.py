"""Archival packages: a zipped BagIt bag that `bagit` validates after unzipping, and that
stops validating when a byte of it changes."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import bagit
import pytest

from archive.package import (
    NO_EVIDENCE,
    EvidenceFile,
    PackageError,
    PackageInput,
    VersionFile,
    build_package,
)

V1 = b"%PDF-1.7 version one, archived"
V2 = b"%PDF-1.7 version two, renewed"
RECORD = "0b6f0c2e-6a43-4d0f-a3b4-6d7d7c2a9e11"


def version(n: int, data: bytes) -> VersionFile:
    return VersionFile(n, hashlib.sha256(data).hexdigest(), data)


def package_input(**changes: object) -> PackageInput:
    values: dict[str, object] = {
        "record_id": RECORD, "school_code": "DEMO-SCHOOL-1",
        "school_name": "Trường Tiểu học Nguyễn Du", "record_type": "hoc_ba_tieu_hoc",
        "school_year": "2024-2025", "versions": [version(1, V1), version(2, V2)],
        "metadata": {"record": {"id": RECORD}, "student": {"full_name": "Phạm Gia Huy"}},
        "validation_report": {"indication": "TOTAL_PASSED", "level": "PAdES-B-LTA"},
        "bagging_date": datetime(2025, 6, 2, 9, 30, tzinfo=UTC),
    }
    values.update(changes)
    return PackageInput(**values)  # type: ignore[arg-type]


def unzip(data: bytes, into: Path) -> Path:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        tops = {name.split("/", 1)[0] for name in zf.namelist()}
        assert tops == {RECORD}, "one top-level directory, named after the record"
        zf.extractall(into)
    return into / RECORD


def test_package_is_a_valid_bag(tmp_path: Path) -> None:
    bag_dir = unzip(build_package(package_input()), tmp_path)
    bag = bagit.Bag(str(bag_dir))
    bag.validate()
    assert bag.algorithms == ["sha256"]
    assert (bag_dir / "manifest-sha256.txt").is_file()
    assert (bag_dir / "data" / "versions" / "v1.pdf").read_bytes() == V1
    assert (bag_dir / "data" / "versions" / "v2.pdf").read_bytes() == V2
    meta = json.loads((bag_dir / "data" / "metadata.json").read_text(encoding="utf-8"))
    assert meta["student"]["full_name"] == "Phạm Gia Huy"
    report = json.loads((bag_dir / "data" / "validation-report.json").read_text())
    assert report["indication"] == "TOTAL_PASSED"
    assert (bag_dir / "data" / "evidence" / "README.txt").read_text() == NO_EVIDENCE
    manifest = (bag_dir / "manifest-sha256.txt").read_text()
    assert f"{hashlib.sha256(V1).hexdigest()}  data/versions/v1.pdf" in manifest
    info = bag.info
    assert info["Source-Organization"] == "Trường Tiểu học Nguyễn Du"
    assert info["External-Identifier"] == RECORD
    assert info["Bagging-Date"] == "2025-06-02"
    assert info["Hocba-Current-Version"] == "2"
    assert info["Hocba-Current-SHA256"] == hashlib.sha256(V2).hexdigest()
    assert info["Hocba-Evidence-Records"] == "0"
    assert info["Payload-Oxum"].endswith(".5")  # 2 PDFs, metadata, report, README


def test_evidence_records_go_under_data_evidence(tmp_path: Path) -> None:
    bag_dir = unzip(build_package(package_input(
        evidence_records=[EvidenceFile("v1.ers", b"\x30\x03\x02\x01\x01")])), tmp_path)
    bagit.Bag(str(bag_dir)).validate()
    assert (bag_dir / "data" / "evidence" / "v1.ers").read_bytes() == b"\x30\x03\x02\x01\x01"
    assert not (bag_dir / "data" / "evidence" / "README.txt").exists()
    assert bagit.Bag(str(bag_dir)).info["Hocba-Evidence-Records"] == "1"


def test_a_changed_byte_fails_validation(tmp_path: Path) -> None:
    bag_dir = unzip(build_package(package_input()), tmp_path)
    pdf = bag_dir / "data" / "versions" / "v1.pdf"
    pdf.write_bytes(pdf.read_bytes().replace(b"one", b"One"))
    with pytest.raises(bagit.BagValidationError):
        bagit.Bag(str(bag_dir)).validate()


def test_bytes_that_do_not_match_their_hash_are_refused() -> None:
    wrong = VersionFile(1, hashlib.sha256(V2).hexdigest(), V1)
    with pytest.raises(PackageError) as e:
        build_package(package_input(versions=[wrong]))
    assert e.value.code == "package_hash_mismatch"
    with pytest.raises(PackageError) as e:
        build_package(package_input(versions=[]))
    assert e.value.code == "package_no_versions"
    with pytest.raises(PackageError):
        build_package(package_input(evidence_records=[EvidenceFile("../x", b"")]))


def test_building_leaves_the_working_directory_alone(tmp_path: Path) -> None:
    """bagit.make_bag chdirs; it runs in a child process, so threads here never move."""
    import os

    cwd = os.getcwd()
    moved: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if os.getcwd() != cwd:
                moved.append(os.getcwd())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(3):
            build_package(package_input())
    finally:
        stop.set()
        watcher.join()
    assert not moved
