from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from archive.errors import (
    ArchiveError,
    LockMismatch,
    ObjectConflict,
    ObjectCorrupt,
    ObjectMissing,
)
from archive.store import Area, FilesystemStore, LockInfo, StoredObject, open_store

PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
REVISION = PDF + b"2 0 obj\n<< /Sig >>\nendobj\n%%EOF\n"
FINAL = REVISION + b"3 0 obj\n<< /DocTimeStamp >>\nendobj\n%%EOF\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> FilesystemStore:
    return FilesystemStore(tmp_path / "store")


def test_put_names_object_by_sha256_in_sharded_layout(store: FilesystemStore) -> None:
    stored = store.put(PDF, Area.WORKING)

    name = sha(PDF)
    assert stored == StoredObject(sha256=name, size=len(PDF), area=Area.WORKING)
    assert store.path_of(name, Area.WORKING) == (
        store.root / "working" / name[:2] / name[2:4] / name
    )
    assert store.path_of(name, Area.WORKING).read_bytes() == PDF
    assert store.get(name, Area.WORKING) == PDF
    assert store.exists(name, Area.WORKING)
    assert not store.exists(name, Area.ARCHIVE)


def test_put_same_bytes_twice_is_a_no_op(store: FilesystemStore) -> None:
    first = store.put(PDF, Area.ARCHIVE)
    inode = store.path_of(first.sha256, Area.ARCHIVE).stat().st_ino

    again = store.put(PDF, Area.ARCHIVE)

    assert again == first
    assert store.path_of(first.sha256, Area.ARCHIVE).stat().st_ino == inode
    assert list(store.iter_names(Area.ARCHIVE)) == [first.sha256]


def test_put_leaves_no_temp_files(store: FilesystemStore) -> None:
    stored = store.put(PDF, Area.WORKING)

    siblings = os.listdir(store.path_of(stored.sha256, Area.WORKING).parent)
    assert siblings == [stored.sha256]


def test_put_refuses_different_bytes_under_an_existing_name(store: FilesystemStore) -> None:
    name = sha(PDF)
    path = store.path_of(name, Area.ARCHIVE)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"something else")

    with pytest.raises(ObjectConflict) as info:
        store.put(PDF, Area.ARCHIVE)

    assert info.value.code == "object_conflict"
    assert path.read_bytes() == b"something else"


def test_objects_are_written_read_only(store: FilesystemStore) -> None:
    for area in Area:
        stored = store.put(PDF, area)
        mode = stat.S_IMODE(store.path_of(stored.sha256, area).stat().st_mode)
        assert mode == 0o444


def test_lock_info_reads_the_file_mode_back(store: FilesystemStore) -> None:
    stored = store.put(FINAL, Area.ARCHIVE)
    assert store.lock_info(stored.sha256, Area.ARCHIVE) == LockInfo(
        mode="read-only", retain_until=None, legal_hold=False
    )

    store.path_of(stored.sha256, Area.ARCHIVE).chmod(0o644)
    assert store.lock_info(stored.sha256, Area.ARCHIVE).mode == "none"

    with pytest.raises(ObjectMissing):
        store.lock_info(sha(b"absent"), Area.ARCHIVE)


def test_put_archived_checks_the_lock_read_back(store: FilesystemStore) -> None:
    stored = store.put_archived(FINAL)
    assert stored.area is Area.ARCHIVE

    # Someone loosened the mode by hand: storing the same final again must not pass.
    store.path_of(stored.sha256, Area.ARCHIVE).chmod(0o644)
    with pytest.raises(LockMismatch) as info:
        store.put_archived(FINAL)
    assert info.value.code == "lock_mismatch"


def test_get_detects_a_flipped_byte(store: FilesystemStore) -> None:
    stored = store.put(FINAL, Area.ARCHIVE)
    path = store.path_of(stored.sha256, Area.ARCHIVE)
    path.chmod(0o644)
    damaged = bytearray(path.read_bytes())
    damaged[10] ^= 0x01
    path.write_bytes(bytes(damaged))

    with pytest.raises(ObjectCorrupt) as info:
        store.get(stored.sha256, Area.ARCHIVE)
    assert info.value.code == "object_corrupt"


def test_get_missing_object(store: FilesystemStore) -> None:
    with pytest.raises(ObjectMissing) as info:
        store.get(sha(b"never stored"), Area.WORKING)
    assert info.value.code == "object_missing"


def test_names_must_be_lowercase_hex_sha256(store: FilesystemStore) -> None:
    for bad in ["../../etc/passwd", sha(PDF).upper(), sha(PDF)[:-1], ""]:
        with pytest.raises(ValueError):
            store.path_of(bad, Area.WORKING)


def test_iter_names_lists_each_area_apart(store: FilesystemStore) -> None:
    a = store.put(PDF, Area.WORKING).sha256
    b = store.put(REVISION, Area.WORKING).sha256
    c = store.put(FINAL, Area.ARCHIVE).sha256

    assert sorted(store.iter_names(Area.WORKING)) == sorted([a, b])
    assert list(store.iter_names(Area.ARCHIVE)) == [c]


def test_release_working_with_a_valid_prefix(store: FilesystemStore) -> None:
    original = store.put(PDF, Area.WORKING)
    revision = store.put(REVISION, Area.WORKING)
    final = store.put_archived(FINAL)

    store.release_working(original.sha256, final.sha256)
    store.release_working(revision.sha256, final.sha256)

    assert list(store.iter_names(Area.WORKING)) == []
    assert store.get(final.sha256, Area.ARCHIVE) == FINAL


def test_release_working_refuses_when_final_does_not_begin_with_it(
    store: FilesystemStore,
) -> None:
    other = store.put(b"%PDF-1.7 another pupil", Area.WORKING)
    final = store.put_archived(FINAL)

    with pytest.raises(ArchiveError) as info:
        store.release_working(other.sha256, final.sha256)

    assert info.value.code == "not_a_prefix"
    assert store.get(other.sha256, Area.WORKING) == b"%PDF-1.7 another pupil"


def test_release_working_refuses_without_the_archived_final(store: FilesystemStore) -> None:
    original = store.put(PDF, Area.WORKING)
    final_in_working_only = store.put(FINAL, Area.WORKING)

    with pytest.raises(ObjectMissing):
        store.release_working(original.sha256, final_in_working_only.sha256)

    assert store.exists(original.sha256, Area.WORKING)


def test_release_working_never_touches_the_archive(store: FilesystemStore) -> None:
    final = store.put_archived(FINAL)

    # The archive object's own name is not a working object: nothing is removed.
    with pytest.raises(ObjectMissing):
        store.release_working(final.sha256, final.sha256)

    assert store.get(final.sha256, Area.ARCHIVE) == FINAL


def test_no_public_method_removes_or_rewrites_objects() -> None:
    # A guard: a new public method (delete, overwrite, ...) must be reviewed here first.
    public = {name for name in dir(FilesystemStore) if not name.startswith("_")}
    assert public == {
        "check",
        "exists",
        "get",
        "iter_names",
        "lock_info",
        "lock_is_sufficient",
        "open_object",  # reads (verified)
        "path_of",
        "put",
        "put_archived",
        "put_archived_file",  # put_file + read-back + lock check
        "put_file",  # like put: never replaces an existing name (tested above)
        "release_working",
        "release_working_all",  # release_working for several, one read of the final
    }


def test_check_passes_on_a_writable_root_and_fails_otherwise(tmp_path: Path) -> None:
    FilesystemStore(tmp_path / "fresh").check()
    assert (tmp_path / "fresh" / "archive").is_dir()

    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    with pytest.raises(ArchiveError) as info:
        FilesystemStore(blocker).check()
    assert info.value.code == "store_unavailable"


def test_open_store_accepts_file_urls_and_plain_paths(tmp_path: Path) -> None:
    by_url = open_store(f"file://{tmp_path}/a%20b")
    assert isinstance(by_url, FilesystemStore)
    assert by_url.root == tmp_path / "a b"

    by_path = open_store(str(tmp_path / "plain"))
    assert isinstance(by_path, FilesystemStore)
    assert by_path.root == tmp_path / "plain"


@pytest.mark.parametrize(
    "url", ["http://example.org/store", "file://host/path", ""]
)
def test_open_store_refuses_other_urls(url: str) -> None:
    with pytest.raises(ValueError):
        open_store(url)


def test_release_working_refuses_a_final_shorter_than_it(store: FilesystemStore) -> None:
    longer = store.put(FINAL + b"% more", Area.WORKING)
    final = store.put_archived(FINAL)

    with pytest.raises(ArchiveError) as info:
        store.release_working(longer.sha256, final.sha256)

    assert info.value.code == "not_a_prefix"
    assert store.exists(longer.sha256, Area.WORKING)


# -- files instead of bytes (large records) -----------------------------------------------


def test_put_file_stores_what_put_would(store: FilesystemStore, tmp_path: Path) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)  # more than one chunk
    src = tmp_path / "revision.pdf"
    src.write_bytes(big)
    with src.open("rb") as f:
        f.seek(100)  # from the start, wherever the file stands
        stored = store.put_file(f, Area.WORKING)
    assert stored == StoredObject(sha256=sha(big), size=len(big), area=Area.WORKING)
    assert store.get(stored.sha256, Area.WORKING) == big
    assert store.put(big, Area.WORKING) == stored  # same bytes again: nothing new
    path = store.path_of(stored.sha256, Area.WORKING)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_put_file_refuses_other_bytes_under_an_existing_name(
        store: FilesystemStore, tmp_path: Path) -> None:
    stored = store.put(PDF, Area.WORKING)
    path = store.path_of(stored.sha256, Area.WORKING)
    path.chmod(0o644)
    path.write_bytes(b"not the same")  # what a damaged disk would do
    src = tmp_path / "same-name.pdf"
    src.write_bytes(PDF)
    with src.open("rb") as f, pytest.raises(ObjectConflict):
        store.put_file(f, Area.WORKING)
    assert path.read_bytes() == b"not the same"  # nothing overwritten


def test_open_object_streams_verified_bytes(store: FilesystemStore) -> None:
    stored = store.put(FINAL, Area.ARCHIVE)
    with store.open_object(stored.sha256, Area.ARCHIVE) as f:
        assert f.tell() == 0 and f.read() == FINAL
    path = store.path_of(stored.sha256, Area.ARCHIVE)
    path.chmod(0o644)
    path.write_bytes(FINAL.replace(b"Sig", b"Sog"))
    with pytest.raises(ObjectCorrupt), store.open_object(stored.sha256, Area.ARCHIVE):
        pass
    with pytest.raises(ObjectMissing), store.open_object(sha(b"nothing"), Area.WORKING):
        pass


def test_put_archived_file_locks_and_reads_back(store: FilesystemStore, tmp_path: Path) -> None:
    src = tmp_path / "final.pdf"
    src.write_bytes(FINAL)
    with src.open("rb") as f:
        stored = store.put_archived_file(f)
    assert stored.area is Area.ARCHIVE and stored.sha256 == sha(FINAL)
    assert store.lock_info(stored.sha256, Area.ARCHIVE).mode == "read-only"
    assert store.get(stored.sha256, Area.ARCHIVE) == FINAL


def test_release_working_all_proves_each_prefix_in_one_read(store: FilesystemStore) -> None:
    original = store.put(PDF, Area.WORKING)
    revision = store.put(REVISION, Area.WORKING)
    other = store.put(b"%PDF-1.7 another pupil", Area.WORKING)
    final = store.put_archived(FINAL)
    gone = "0" * 64

    refused = store.release_working_all(
        [original.sha256, other.sha256, revision.sha256, gone, original.sha256], final.sha256)

    assert {sha: e.code for sha, e in refused.items()} == {
        other.sha256: "not_a_prefix", gone: "object_missing"}
    assert list(store.iter_names(Area.WORKING)) == [other.sha256]
    assert store.get(final.sha256, Area.ARCHIVE) == FINAL


def test_release_working_all_without_the_final_removes_nothing(store: FilesystemStore) -> None:
    original = store.put(PDF, Area.WORKING)
    final_in_working_only = store.put(FINAL, Area.WORKING)

    refused = store.release_working_all([original.sha256], final_in_working_only.sha256)

    assert refused[original.sha256].code == "object_missing"
    assert store.exists(original.sha256, Area.WORKING)
