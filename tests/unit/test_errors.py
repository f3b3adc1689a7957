"""One mapping from archive errors (package errors included) to API problems."""

from __future__ import annotations

from archive.errors import ArchiveError
from archive.package import PackageError
from signer.errors import DependencyError, Gone, IntegrityError, from_archive


def test_package_errors_are_archive_errors_mapped_by_the_one_table() -> None:
    mismatch = PackageError("v1 does not hash to its name", code="package_hash_mismatch")
    assert isinstance(mismatch, ArchiveError)
    problem = from_archive(mismatch)
    assert isinstance(problem, IntegrityError)
    assert (problem.status, problem.code) == (500, "integrity_error")

    failed = from_archive(PackageError("bagit failed"), "package: bagit failed",
                          default_code="package_failed")
    assert isinstance(failed, DependencyError)
    assert (failed.status, failed.code, failed.detail) == (503, "package_failed",
                                                           "package: bagit failed")


def test_named_codes_keep_their_problem_and_unknown_ones_are_dependency_failures() -> None:
    gone = from_archive(ArchiveError("expired", code="share_link_expired"))
    assert isinstance(gone, Gone) and gone.status == 410
    other = from_archive(ArchiveError("disk full", code="store_unavailable"))
    assert (other.status, other.code) == (503, "store_unavailable")
