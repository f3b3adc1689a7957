"""RFC 4998 section 4.2 hash trees: one root over a batch of hash values, and the reduced
hash tree that proves one of them.

A binary tree; each node is the hash of its children's values concatenated in binary
ascending order; a node left without a sibling moves up unchanged. Reduced trees are
[[h, sibling], [next sibling], ...]: the first list holds the object's hash and its first
sibling, every later list one sibling. That shape is read the same way by RFC 4998
section 4.3 and by Bouncy Castle 1.72, which differ for other shapes
(docs/evidence-bouncycastle.md). One hash alone has no reduced tree: the timestamp covers it
directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

Hasher = Callable[[bytes], bytes]


def hasher(algorithm: str) -> Hasher:
    """`algorithm` as asn1crypto names it (sha256, sha384, sha512, sha3_256, ...)."""
    try:
        hashlib.new(algorithm)
    except ValueError as e:
        raise ValueError(f"unknown hash algorithm {algorithm!r}") from e

    def digest(data: bytes) -> bytes:
        return hashlib.new(algorithm, data).digest()

    return digest


def node(h: Hasher, values: Sequence[bytes]) -> bytes:
    """The hash of `values` concatenated in binary ascending order."""
    return h(b"".join(sorted(values)))


class HashTree:
    """A tree over distinct leaf hashes, in the order given."""

    def __init__(self, leaves: Sequence[bytes], algorithm: str) -> None:
        if not leaves:
            raise ValueError("a hash tree needs at least one leaf")
        if len(set(leaves)) != len(leaves):
            raise ValueError("hash tree leaves must be distinct")
        self.algorithm = algorithm
        h = hasher(algorithm)
        self.levels: list[list[bytes]] = [list(leaves)]
        level = self.levels[0]
        while len(level) > 1:
            up = [h(a + b) if a <= b else h(b + a)
                  for a, b in zip(level[0::2], level[1::2], strict=False)]
            if len(level) % 2:
                up.append(level[-1])
            self.levels.append(up)
            level = up

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def __len__(self) -> int:
        return len(self.levels[0])

    def siblings(self, index: int) -> list[tuple[int, int]]:
        """(level, position) of each sibling on leaf `index`'s way to the root."""
        found = []
        j = index
        for depth, level in enumerate(self.levels[:-1]):
            if (j ^ 1) < len(level):
                found.append((depth, j ^ 1))
            j //= 2
        return found

    def reduced(self, index: int) -> list[list[bytes]] | None:
        """The reduced hash tree of leaf `index`; None for a one-leaf tree."""
        found = self.siblings(index)
        if not found:
            return None
        lists = [[self.levels[d][j]] for d, j in found]
        lists[0].insert(0, self.levels[0][index])
        return lists


def root_of(reduced: Sequence[Sequence[bytes]], h: Hasher) -> bytes:
    """RFC 4998 section 4.3 step 3: the root a reduced hash tree leads to."""
    current = node(h, reduced[0])
    for values in reduced[1:]:
        current = node(h, [*values, current])
    return current


def proves(reduced: Sequence[Sequence[bytes]] | None, value: bytes, imprint: bytes,
           h: Hasher) -> bool:
    """Whether `reduced` binds `value` to a timestamp over `imprint` (section 4.3)."""
    if not reduced:
        return value == imprint
    return value in reduced[0] and root_of(reduced, h) == imprint
