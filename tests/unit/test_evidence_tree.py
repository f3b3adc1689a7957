"""archive.evidence.tree: RFC 4998 section 4 hash trees and reduced hash trees."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import pytest

from archive.evidence.tree import Hasher, HashTree, hasher, proves, root_of

SHA256 = hasher("sha256")
SIZES = [*range(1, 71), 127, 128, 129, 1000]


def leaves(n: int, algorithm: str = "sha256") -> list[bytes]:
    return [hashlib.new(algorithm, f"object {i}".encode()).digest() for i in range(n)]


def bc_root(reduced: Sequence[Sequence[bytes]], h: Hasher = SHA256) -> bytes:
    """Bouncy Castle 1.72's reading of a reduced tree, written out: the first list is
    its one value, or the hash of its values sorted; each later list likewise, then
    hashed with the running value, the two sorted."""
    def node(values: Sequence[bytes]) -> bytes:
        return values[0] if len(values) == 1 else h(b"".join(sorted(values)))
    running = node(reduced[0])
    for values in reduced[1:]:
        running = h(b"".join(sorted([running, node(values)])))
    return running


def flipped(value: bytes, at: int = 0) -> bytes:
    return value[:at] + bytes([value[at] ^ 0x01]) + value[at + 1:]


# -- every leaf of every size --------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
def test_each_leaf_proves_itself_against_the_root(n: int) -> None:
    values = leaves(n)
    tree = HashTree(values, "sha256")
    assert len(tree) == n
    other_root = SHA256(b"another root")
    for i, leaf in enumerate(values):
        reduced = tree.reduced(i)
        if n == 1:
            assert reduced is None
            assert proves(None, leaf, tree.root, SHA256)
            assert tree.root == leaf
            continue
        assert reduced is not None
        assert proves(reduced, leaf, tree.root, SHA256)
        assert not proves(reduced, leaf, other_root, SHA256)
        assert not proves(reduced, SHA256(b"not a leaf"), tree.root, SHA256)
        assert not proves(reduced, flipped(leaf), tree.root, SHA256)
        # The same proof holds for the value it is paired with in its first list and
        # for no other leaf of the batch.
        others = values if n <= 70 else values[max(0, i - 3):i + 4]
        for other in others:
            assert proves(reduced, other, tree.root, SHA256) == (other in reduced[0])
        # Its partner is the neighbouring leaf, or an inner node for a last leaf moved up.
        partners = sum(v in reduced[0] for v in values)
        assert partners == (1 if n % 2 and i == n - 1 else 2)


@pytest.mark.parametrize("n", SIZES)
def test_reduced_tree_shape_and_depth(n: int) -> None:
    tree = HashTree(leaves(n), "sha256")
    for i in range(n):
        reduced = tree.reduced(i)
        if n == 1:
            assert reduced is None
            continue
        assert reduced is not None
        assert reduced[0][0] == tree.levels[0][i]
        assert len(reduced[0]) == 2
        assert all(len(values) == 1 for values in reduced[1:])
        assert 1 <= len(reduced) <= math.ceil(math.log2(n))
        # The shape on which RFC 4998 section 4.3 and Bouncy Castle read the same root.
        assert bc_root(reduced) == root_of(reduced, SHA256) == tree.root


@pytest.mark.parametrize("n", [2, 3, 5, 8, 33, 70])
def test_tampering_any_hash_of_a_reduced_tree_breaks_it(n: int) -> None:
    values = leaves(n)
    tree = HashTree(values, "sha256")
    for i, leaf in enumerate(values):
        reduced = tree.reduced(i)
        assert reduced is not None
        for a, level in enumerate(reduced):
            for b in range(len(level)):
                for at in (0, len(level[b]) - 1):
                    bad = [list(v) for v in reduced]
                    bad[a][b] = flipped(bad[a][b], at)
                    assert not proves(bad, leaf, tree.root, SHA256), (n, i, a, b, at)
        if len(reduced) > 1:  # dropping or swapping levels breaks it too
            assert not proves(reduced[:-1], leaf, tree.root, SHA256)
            swapped = [reduced[0], *reversed(reduced[1:])]
            if swapped != reduced:
                assert not proves(swapped, leaf, tree.root, SHA256)


def test_sha512_tree() -> None:
    h = hasher("sha512")
    values = leaves(9, "sha512")
    tree = HashTree(values, "sha512")
    assert len(tree.root) == 64
    for i, leaf in enumerate(values):
        reduced = tree.reduced(i)
        assert reduced is not None
        assert proves(reduced, leaf, tree.root, h)
        assert not proves(reduced, leaf, tree.root, SHA256)


# -- refusals -------------------------------------------------------------------------

def test_leaves_must_be_distinct() -> None:
    a, b = leaves(2)
    with pytest.raises(ValueError, match="distinct"):
        HashTree([a, b, a], "sha256")
    with pytest.raises(ValueError, match="distinct"):
        HashTree([a, a], "sha256")


def test_a_tree_needs_a_leaf() -> None:
    with pytest.raises(ValueError, match="at least one leaf"):
        HashTree([], "sha256")


def test_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unknown hash algorithm"):
        hasher("sha257")


def test_reduced_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        HashTree(leaves(3), "sha256").reduced(3)


# -- by hand --------------------------------------------------------------------------

def test_three_leaves_by_hand() -> None:
    a = hashlib.sha256(b"a").digest()
    b = hashlib.sha256(b"b").digest()
    c = hashlib.sha256(b"c").digest()
    lo, hi = sorted([a, b])
    ab = hashlib.sha256(lo + hi).digest()
    lo, hi = sorted([ab, c])
    root = hashlib.sha256(lo + hi).digest()
    # Written out, not from the code: pinned so a change of definition shows.
    assert a.hex().startswith("ca978112")
    tree = HashTree([a, b, c], "sha256")
    assert tree.levels == [[a, b, c], [ab, c], [root]]
    assert tree.root == root
    assert tree.reduced(0) == [[a, b], [c]]
    assert tree.reduced(1) == [[b, a], [c]]
    assert tree.reduced(2) == [[c, ab]]  # c moved up unchanged: paired at the top
    for i, leaf in enumerate([a, b, c]):
        reduced = tree.reduced(i)
        assert reduced is not None
        assert proves(reduced, leaf, root, SHA256)


def test_root_of_reads_rfc4998_generic_trees() -> None:
    """Section 4.3: each list's values together with the running hash, sorted,
    concatenated and hashed; the first list without a running hash. Lists of several
    values above the first are allowed (a non-binary tree)."""
    def h(*parts: bytes) -> bytes:
        return hashlib.sha256(b"".join(parts)).digest()
    x, y, p, q, r, s = (h(name.encode()) for name in "xypqrs")
    # [[x, y], [p, q], [r]]: three levels, the second with two values.
    first = h(*sorted([x, y]))
    second = h(*sorted([p, q, first]))
    expected = h(*sorted([r, second]))
    reduced = [[x, y], [p, q], [r]]
    assert root_of(reduced, SHA256) == expected
    assert proves(reduced, x, expected, SHA256)
    assert proves(reduced, y, expected, SHA256)
    assert not proves(reduced, p, expected, SHA256)  # only the first list holds objects
    # Bouncy Castle 1.72 hashes p and q first and pairs that with the running hash.
    assert bc_root(reduced) == h(*sorted([r, h(*sorted([h(*sorted([p, q])), first]))]))
    assert bc_root(reduced) != expected
    # Three values in the first list, two in a later one.
    three = h(*sorted([x, y, s]))
    assert root_of([[x, y, s], [p, q]], SHA256) == h(*sorted([p, q, three]))
    # One value alone in the first list is hashed by the RFC reading (BC takes it as is).
    assert root_of([[x]], SHA256) == h(x)
    assert root_of([[x], [p]], SHA256) == h(*sorted([h(x), p]))
    assert bc_root([[x], [p]]) == h(*sorted([x, p]))
