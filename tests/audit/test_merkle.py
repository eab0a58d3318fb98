"""RFC 6962 / 9162 tree hashing and proofs: known vectors, and a naive reference over many sizes."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpaisec.audit import merkle as m
from gpaisec.errors import AuditIntegrityError

# The RFC 6962 test leaves used by certificate-transparency and Trillian, and their known roots/proofs.
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (leaf index, tree size, path)
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY = [  # (old size, new size, proof)
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
LEAF_HASHES = [m.leaf_hash(x) for x in LEAVES]
TREE = m.MemoryTree(LEAF_HASHES)


# A naive implementation written straight from the RFC's recursive definitions, as the reference.


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _k(n)
    return hashlib.sha256(b"\x01" + naive_mth(leaves[:k]) + naive_mth(leaves[k:])).digest()


def naive_path(index: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = _k(n)
    if index < k:
        return naive_path(index, leaves[:k]) + [naive_mth(leaves[k:])]
    return naive_path(index - k, leaves[k:]) + [naive_mth(leaves[:k])]


def naive_subproof(old: int, leaves: list[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if old == n:
        return [] if complete else [naive_mth(leaves)]
    k = _k(n)
    if old <= k:
        return naive_subproof(old, leaves[:k], complete) + [naive_mth(leaves[k:])]
    return naive_subproof(old - k, leaves[k:], False) + [naive_mth(leaves[:k])]


def naive_consistency(old: int, leaves: list[bytes]) -> list[bytes]:
    if old in (0, len(leaves)):
        return []
    return naive_subproof(old, leaves, True)


def data(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") for i in range(n)]


def test_empty_tree_root() -> None:
    assert m.EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert m.root([]) == m.EMPTY_ROOT
    assert m.root_at(0, m.MemoryTree()) == m.EMPTY_ROOT


def test_leaf_and_node_prefixes() -> None:
    assert m.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert m.node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()


@pytest.mark.parametrize("n", range(1, 9))
def test_known_roots(n: int) -> None:
    assert m.root(LEAF_HASHES[:n]).hex() == ROOTS[n - 1]
    assert m.root_at(n, TREE).hex() == ROOTS[n - 1]
    assert naive_mth(LEAVES[:n]).hex() == ROOTS[n - 1]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_known_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    proof = m.inclusion_proof(index, size, TREE)
    assert [h.hex() for h in proof] == path
    m.verify_inclusion(LEAF_HASHES[index], index, size, proof, bytes.fromhex(ROOTS[size - 1]))


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_known_consistency_proofs(old: int, new: int, path: list[str]) -> None:
    proof = m.consistency_proof(old, new, TREE)
    assert [h.hex() for h in proof] == path
    m.verify_consistency(old, new, bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1]), proof)


def test_flat_ids_round_trip_and_are_unique() -> None:
    seen = set()
    for level in range(8):
        for index in range(64):
            node = m.flat_id(level, index)
            assert m.from_flat_id(node) == (level, index)
            seen.add(node)
    assert len(seen) == 8 * 64


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 300), data_=st.data())
def test_proofs_match_naive_reference(size: int, data_: st.DataObject) -> None:
    raw = data(size)
    leaves = [m.leaf_hash(x) for x in raw]
    tree = m.MemoryTree(leaves)
    root = naive_mth(raw)
    assert m.root(leaves) == root == tree.root()
    index = data_.draw(st.integers(0, size - 1))
    path = m.inclusion_proof(index, size, tree)
    assert path == naive_path(index, raw)
    m.verify_inclusion(leaves[index], index, size, path, root)
    old = data_.draw(st.integers(0, size))
    proof = m.consistency_proof(old, size, tree)
    assert proof == naive_consistency(old, raw)
    m.verify_consistency(old, size, naive_mth(raw[:old]), root, proof)


def test_every_proof_for_small_trees() -> None:
    for size in range(1, 40):
        raw = data(size)
        leaves = [m.leaf_hash(x) for x in raw]
        tree = m.MemoryTree(leaves)
        for index in range(size):
            assert m.inclusion_proof(index, size, tree) == naive_path(index, raw)
        for old in range(size + 1):
            assert m.consistency_proof(old, size, tree) == naive_consistency(old, raw)


def test_compact_range_emits_every_interior_node_once() -> None:
    cr = m.CompactRange()
    tree = m.MemoryTree()
    nodes: dict[tuple[int, int], bytes] = {}
    for leaf in (m.leaf_hash(x) for x in data(100)):
        for level, index, h in cr.append(leaf):
            assert (level, index) not in nodes
            nodes[(level, index)] = h
        tree.append(leaf)
        assert cr.root() == tree.root()
    assert len(nodes) == 100 - (100).bit_count()
    assert all(tree.levels[level][index] == h for (level, index), h in nodes.items())
    again = m.CompactRange.from_bytes(cr.size, cr.to_bytes())
    assert again.root() == cr.root()


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


@settings(max_examples=150, deadline=None)
@given(size=st.integers(2, 200), data_=st.data())
def test_inclusion_verification_rejects_any_change(size: int, data_: st.DataObject) -> None:
    leaves = [m.leaf_hash(x) for x in data(size)]
    tree = m.MemoryTree(leaves)
    root = tree.root()
    index = data_.draw(st.integers(0, size - 1))
    path = m.inclusion_proof(index, size, tree)
    # (A different tree size alone is not tested: size and root always come together from a signed
    # checkpoint, and a path can be valid for two sizes, e.g. leaf 0 of sizes 3 and 4 with the same root.)
    kind = data_.draw(st.sampled_from(["leaf", "index", "root", "path", "drop", "extra"]))
    leaf, idx, bad_path, bad_root = leaves[index], index, path, root
    if kind == "leaf":
        leaf = _flip(leaf)
    elif kind == "index":
        idx = data_.draw(st.integers(0, size).filter(lambda i: i != index))
    elif kind == "root":
        bad_root = _flip(root)
    elif kind == "path" and path:
        i = data_.draw(st.integers(0, len(path) - 1))
        bad_path = [*path[:i], _flip(path[i]), *path[i + 1 :]]
    elif kind == "drop" and path:
        bad_path = path[:-1]
    else:
        bad_path = [*path, root]
    with pytest.raises(AuditIntegrityError):
        m.verify_inclusion(leaf, idx, size, bad_path, bad_root)


@settings(max_examples=150, deadline=None)
@given(size=st.integers(2, 200), data_=st.data())
def test_consistency_verification_rejects_any_change(size: int, data_: st.DataObject) -> None:
    leaves = [m.leaf_hash(x) for x in data(size)]
    tree = m.MemoryTree(leaves)
    old = data_.draw(st.integers(1, size - 1))
    proof = m.consistency_proof(old, size, tree)
    old_root, new_root = m.root_at(old, tree), tree.root()
    m.verify_consistency(old, size, old_root, new_root, proof)
    kind = data_.draw(st.sampled_from(["old_root", "new_root", "path", "drop", "extra", "empty"]))
    if kind == "old_root":
        bad = (old, size, _flip(old_root), new_root, proof)
    elif kind == "new_root":
        bad = (old, size, old_root, _flip(new_root), proof)
    elif kind == "path":
        i = data_.draw(st.integers(0, len(proof) - 1))
        bad = (old, size, old_root, new_root, [*proof[:i], _flip(proof[i]), *proof[i + 1 :]])
    elif kind == "drop":
        bad = (old, size, old_root, new_root, proof[:-1])
    elif kind == "extra":
        bad = (old, size, old_root, new_root, [*proof, new_root])
    else:
        bad = (old, size, old_root, new_root, [])
    with pytest.raises(AuditIntegrityError):
        m.verify_consistency(*bad)


def test_consistency_edge_cases() -> None:
    root = TREE.root()
    m.verify_consistency(8, 8, root, root, [])
    m.verify_consistency(0, 8, m.EMPTY_ROOT, root, [])
    with pytest.raises(AuditIntegrityError):
        m.verify_consistency(8, 8, root, _flip(root), [])
    with pytest.raises(AuditIntegrityError):
        m.verify_consistency(5, 4, root, root, [])
    with pytest.raises(AuditIntegrityError):
        m.verify_consistency(0, 8, root, root, [])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        m.inclusion_ranges(8, 8)
    with pytest.raises(ValueError, match="no consistency proof"):
        m.consistency_ranges(9, 8)
    with pytest.raises(ValueError, match="not aligned"):
        m.cover(1, 3)
    with pytest.raises(AuditIntegrityError, match="outside"):
        m.verify_inclusion(LEAF_HASHES[0], 8, 8, [], TREE.root())
    with pytest.raises(AuditIntegrityError, match="32 bytes"):
        m.verify_inclusion(LEAF_HASHES[0], 0, 8, [b"short"], TREE.root())


def test_large_tree_proof_is_logarithmic() -> None:
    # 2**20 + 3 leaves, only the nodes the proof needs are materialised.
    size = (1 << 20) + 3
    ranges = m.inclusion_ranges(123_456, size)
    assert len(ranges) == 21
    nodes = {node for a, b in ranges for node in m.cover(a, b)}
    assert len(nodes) <= 2 * 21
