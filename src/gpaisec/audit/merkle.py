"""RFC 6962 / RFC 9162 Merkle tree hashing and proofs. Pure: bytes and integers in, bytes out.

Hashing (RFC 9162 section 2.1.1)::

    leaf hash  = SHA-256(0x00 || entry bytes)
    node hash  = SHA-256(0x01 || left || right)
    empty tree = SHA-256("")  (e3b0c442...)

The tree over ``n`` leaves splits at ``k``, the largest power of two smaller than ``n``: the left
subtree holds ``k`` leaves and is always *perfect*; the right subtree holds the rest.

Proofs are built from stored hashes of *perfect, aligned subtrees* (node ``(level, index)`` covers
leaves ``index * 2**level`` up to ``(index + 1) * 2**level - 1``), never by rehashing the tree. Building
a proof has two steps so that a database can serve each step with one query:

1. :func:`inclusion_ranges` / :func:`consistency_ranges` name the leaf ranges whose tree hashes make
   the proof, and :func:`cover` splits each range into perfect subtrees (about 2·log2(n) nodes);
2. :func:`hash_range` folds the fetched node hashes into each range's tree hash.

:class:`NodeSource` is what a store implements (``nodes(ids) -> {id: hash}``); :class:`MemoryTree` is
the in-memory one. Verification functions raise :class:`~gpaisec.errors.AuditIntegrityError`; they
never return a bool.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

from gpaisec.errors import AuditIntegrityError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MemoryTree",
    "NodeId",
    "NodeSource",
    "consistency_proof",
    "consistency_ranges",
    "cover",
    "flat_id",
    "from_flat_id",
    "hash_range",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "root",
    "root_at",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeId = tuple[int, int]
"""``(level, index)`` of a perfect, aligned subtree; level 0 is a leaf."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf: SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def flat_id(level: int, index: int) -> int:
    """A single integer for node ``(level, index)`` (in-order numbering: leaves even, parents between).

    Node ``(level, index)`` gets ``index * 2**(level+1) + 2**level - 1``; every node of an unbounded tree
    has its own number, so one integer column can key all stored subtree hashes.
    """
    return (index << (level + 1)) + (1 << level) - 1


def from_flat_id(node: int) -> NodeId:
    """Inverse of :func:`flat_id`."""
    level = (~node & (node + 1)).bit_length() - 1  # number of trailing one bits
    return level, node >> (level + 1)


class CompactRange:
    """The hashes of the perfect subtrees that make up the tree ``[0, size)``, largest first.

    Appending a leaf merges equal-sized subtrees as a binary counter does; each merge completes one
    interior node, which :meth:`append` returns so that a store can keep it for proofs.
    """

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a compact range of size {size} has {size.bit_count()} hashes, not {len(hashes)}"
            )
        self.size = size
        self.hashes = list(hashes)

    @classmethod
    def from_bytes(cls, size: int, blob: bytes) -> CompactRange:
        """From the concatenated hashes, as :meth:`to_bytes` stores them."""
        if len(blob) != HASH_SIZE * size.bit_count():
            raise ValueError("stored compact range has the wrong length")
        return cls(size, [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)])

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return the interior nodes it completes as ``(level, index, hash)``."""
        completed: list[tuple[int, int, bytes]] = []
        index = self.size
        h = leaf
        level = 0
        hashes = self.hashes
        while index & 1:
            h = _sha256(b"\x01" + hashes.pop() + h).digest()
            level += 1
            index >>= 1
            completed.append((level, index, h))
        hashes.append(h)
        self.size += 1
        return completed

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add leaf hashes, discarding the completed nodes."""
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """The tree hash of ``[0, size)``."""
        if not self.hashes:
            return EMPTY_ROOT
        hashes = self.hashes
        h = hashes[-1]
        for left in reversed(hashes[:-1]):
            h = _sha256(b"\x01" + left + h).digest()
        return h


def root(leaves: Iterable[bytes]) -> bytes:
    """The tree hash over ``leaves`` (leaf hashes, in order). The empty tree hashes to EMPTY_ROOT."""
    cr = CompactRange()
    cr.extend(leaves)
    return cr.root()


def cover(start: int, end: int) -> list[NodeId]:
    """The perfect, aligned subtrees whose tree hashes fold into MTH(D[start:end]), left to right.

    ``[start, end)`` must be a range whose RFC 6962 split points are aligned, as every range in an
    inclusion or consistency proof is (and every prefix ``[0, n)``).
    """
    if not 0 <= start < end:
        raise ValueError(f"empty or negative leaf range [{start}, {end})")
    out: list[NodeId] = []
    while True:
        n = end - start
        if n & (n - 1) == 0:  # a power of two: one perfect subtree
            level = n.bit_length() - 1
            if start & (n - 1):
                raise ValueError(f"leaf range [{start}, {end}) is not aligned")
            out.append((level, start >> level))
            return out
        k = _split(n)
        level = k.bit_length() - 1
        if start & (k - 1):
            raise ValueError(f"leaf range [{start}, {end}) is not aligned")
        out.append((level, start >> level))
        start += k


def hash_range(start: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH(D[start:end]) from the hashes of the subtrees that :func:`cover` names."""
    return _fold([nodes[node] for node in cover(start, end)])


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose tree hashes form PATH(index, D[size]) (RFC 9162 2.1.3.1), leaf end first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    out: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            lo += k
    out.reverse()
    return out


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose tree hashes form PROOF(old_size, D[new_size]) (RFC 9162 2.1.4.1).

    Empty when ``old_size`` is 0 or equals ``new_size`` (nothing to prove beyond comparing roots).
    """
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    out: list[tuple[int, int]] = []
    # SUBPROOF(m, D[lo:hi], b), unrolled: the recursion only ever descends into one side.
    m, lo, hi, complete = old_size, 0, new_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            out.append((lo + k, hi))
            hi = lo + k
        else:
            out.append((lo, lo + k))
            m -= k
            lo += k
            complete = False
    if not complete:
        out.append((lo, hi))
    out.reverse()
    return out


class NodeSource(Protocol):
    """Anything that returns stored perfect-subtree hashes by :data:`NodeId`."""

    def nodes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        """The hashes of ``ids``; a missing id is an error of the source."""
        ...


def _fold(parts: list[bytes]) -> bytes:
    h = parts[-1]
    for left in reversed(parts[:-1]):
        h = _sha256(b"\x01" + left + h).digest()
    return h


def _prove(ranges: list[tuple[int, int]], source: NodeSource) -> list[bytes]:
    covers = [cover(a, b) for a, b in ranges]
    got = source.nodes({node for c in covers for node in c})
    return [_fold([got[node] for node in c]) for c in covers]


def inclusion_proof(index: int, size: int, source: NodeSource) -> list[bytes]:
    """The audit path for leaf ``index`` in the tree of ``size`` leaves."""
    return _prove(inclusion_ranges(index, size), source)


def consistency_proof(old_size: int, new_size: int, source: NodeSource) -> list[bytes]:
    """The proof that the tree of ``old_size`` leaves is a prefix of the tree of ``new_size`` leaves."""
    return _prove(consistency_ranges(old_size, new_size), source)


def root_at(size: int, source: NodeSource) -> bytes:
    """The tree hash of the first ``size`` leaves, from stored subtrees."""
    if size == 0:
        return EMPTY_ROOT
    return hash_range(0, size, source.nodes(cover(0, size)))


def _fail(message: str) -> AuditIntegrityError:
    return AuditIntegrityError(message)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> None:
    """Check that ``leaf`` (a leaf hash) is leaf ``index`` of the tree of ``size`` with ``root_hash``.

    RFC 9162 section 2.1.3.2; each numbered step is labelled below. Raises AuditIntegrityError.
    """
    # 1. The index must lie inside the tree.
    if not 0 <= index < size:
        raise _fail(f"inclusion proof: leaf {index} is outside a tree of size {size}")
    # 2. fn is the leaf's index, sn the last index; r starts as the leaf hash.
    fn, sn = index, size - 1
    r = leaf
    # 3. Fold each proof element in on the side the index says.
    for p in proof:
        if len(p) != HASH_SIZE:
            raise _fail("inclusion proof: a proof hash does not have 32 bytes")
        if sn == 0:
            raise _fail("inclusion proof: too many hashes for the tree size")
        if fn & 1 or fn == sn:
            r = _sha256(b"\x01" + p + r).digest()
            while fn and not fn & 1:  # climb while the node is a right-edge left child
                fn >>= 1
                sn >>= 1
        else:
            r = _sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    # 4. All levels consumed, and the result is the signed root.
    if sn != 0:
        raise _fail("inclusion proof: too few hashes for the tree size")
    if r != root_hash:
        raise _fail(f"inclusion proof: leaf {index} does not lead to the root of the tree of size {size}")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (old_size, old_root) is a prefix of the tree (new_size, new_root).

    RFC 9162 section 2.1.4.2; each numbered step is labelled below. Raises AuditIntegrityError.
    """
    # 0. Trivial cases: sizes in order; equal sizes need equal roots; the empty tree is a prefix of all.
    if not 0 <= old_size <= new_size:
        raise _fail(f"consistency proof: size {old_size} cannot be a prefix of size {new_size}")
    if old_size == new_size:
        if proof:
            raise _fail("consistency proof: must be empty for equal sizes")
        if old_root != new_root:
            raise _fail(f"consistency proof: two different roots for size {old_size}")
        return
    if old_size == 0:
        if proof:
            raise _fail("consistency proof: must be empty from the empty tree")
        if old_root != EMPTY_ROOT:
            raise _fail("consistency proof: the empty tree has a different root")
        return
    # 1. A proof between different non-empty sizes is never empty.
    if not proof or any(len(p) != HASH_SIZE for p in proof):
        raise _fail("consistency proof: empty, or a proof hash does not have 32 bytes")
    path = list(proof)
    # 2. If old_size is a power of two, the old root is the first node of the path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. fn is the old tree's last index, sn the new tree's.
    fn, sn = old_size - 1, new_size - 1
    # 4. Skip the levels where the old tree's last node is a right child.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. fr rebuilds the old root, sr the new root.
    fr = sr = path[0]
    # 6. Fold in each remaining node.
    for c in path[1:]:
        if sn == 0:
            raise _fail("consistency proof: too many hashes for the tree sizes")
        if fn & 1 or fn == sn:
            fr = _sha256(b"\x01" + c + fr).digest()
            sr = _sha256(b"\x01" + c + sr).digest()
            while fn and not fn & 1:  # climb while the node is a right-edge left child
                fn >>= 1
                sn >>= 1
        else:
            sr = _sha256(b"\x01" + sr + c).digest()
        fn >>= 1
        sn >>= 1
    # 7. Both roots rebuilt, all levels consumed.
    if sn != 0:
        raise _fail("consistency proof: too few hashes for the tree sizes")
    if fr != old_root:
        raise _fail(f"consistency proof: does not rebuild the root of the tree of size {old_size}")
    if sr != new_root:
        raise _fail(f"consistency proof: does not rebuild the root of the tree of size {new_size}")


class MemoryTree:
    """Every perfect-subtree hash of a tree, kept in lists by level; a :class:`NodeSource`."""

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self.levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self.levels[0])

    def append(self, leaf: bytes) -> None:
        levels = self.levels
        levels[0].append(leaf)
        level = 0
        while len(levels[level]) % 2 == 0:
            row = levels[level]
            parent = _sha256(b"\x01" + row[-2] + row[-1]).digest()
            level += 1
            if level == len(levels):
                levels.append([])
            levels[level].append(parent)

    def nodes(self, ids: Collection[NodeId]) -> Mapping[NodeId, bytes]:
        levels = self.levels
        return {(level, index): levels[level][index] for level, index in ids}

    def root(self) -> bytes:
        return root_at(self.size, self)
