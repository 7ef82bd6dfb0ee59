from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credfed.errors import ProofError
from credfed.statuslog.merkle import (
    EMPTY_ROOT,
    NodeId,
    append_nodes,
    consistency_proof,
    consistency_proof_ranges,
    frontier_ids,
    inclusion_proof,
    inclusion_proof_ranges,
    leaf_hash,
    node_hash,
    nodes_for_ranges,
    range_hash,
    root_hash,
    subtrees,
    verify_consistency,
    verify_inclusion,
)

# Test vectors of the RFC 6962 hasher published by transparency-dev/merkle:
# leaves and tree hashes from testonly/constants.go (LeafInputs, NodeHashes,
# RootHashes), proofs from proof/verify_test.go (inclusionProofs, which index
# leaves from 1, and consistencyProofs). The same vectors are used by
# google/certificate-transparency-go.
LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
NODE_HASHES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index from 0, tree size, audit path)
INCLUSION_VECTORS = [
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
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (0, 1, []),
]
# (old size, new size, proof)
CONSISTENCY_VECTORS = [
    (1, 1, []),
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
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _h(hexes: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(x) for x in hexes]


def reference_mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH straight from RFC 6962 section 2.1, recursion and all."""
    n = len(leaf_hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(reference_mth(leaf_hashes[:k]), reference_mth(leaf_hashes[k:]))


def build(leaf_hashes: Sequence[bytes], batches: Sequence[int] = ()) -> dict[NodeId, bytes]:
    """All stored nodes of a tree, appended batch by batch; each append sees
    only the frontier, as a store would hand it over."""
    nodes: dict[NodeId, bytes] = {}
    size = 0
    for batch in [*batches, len(leaf_hashes)]:
        chunk = leaf_hashes[size : size + batch]
        frontier = _only(nodes, frontier_ids(size))
        for level, index, h in append_nodes(size, chunk, frontier):
            assert (level, index) not in nodes
            nodes[(level, index)] = h
        size += len(chunk)
    return nodes


def _only(nodes: Mapping[NodeId, bytes], ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
    return {node_id: nodes[node_id] for node_id in ids}


def _flip(h: bytes, bit: int = 0) -> bytes:
    return bytes([h[0] ^ (1 << bit)]) + h[1:]


# -- published vectors ------------------------------------------------------


def test_vector_tree_nodes_and_roots() -> None:
    hashes = [leaf_hash(x) for x in LEAVES]
    nodes = build(hashes)
    for level, row in enumerate(NODE_HASHES):
        for index, expected in enumerate(row):
            assert nodes[(level, index)].hex() == expected
    assert len(nodes) == sum(len(row) for row in NODE_HASHES)
    assert EMPTY_ROOT.hex() == ROOTS[0]
    for size, expected in enumerate(ROOTS):
        assert root_hash(size, nodes).hex() == expected
        assert reference_mth(hashes[:size]).hex() == expected


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION_VECTORS)
def test_vector_inclusion(index: int, size: int, path: list[str]) -> None:
    nodes = build([leaf_hash(x) for x in LEAVES])
    proof = inclusion_proof(index, size, nodes)
    assert proof == _h(path)
    root, leaf = bytes.fromhex(ROOTS[size]), leaf_hash(LEAVES[index])
    verify_inclusion(leaf, index, size, proof, root)
    # The corruptions transparency-dev's verifier is tested against.
    probes = [
        (index - 1, size, leaf, proof, root),
        (index + 1, size, leaf, proof, root),
        (index ^ 2, size, leaf, proof, root),
        (index, size * 2, leaf, proof, root),
        (index, size // 2, leaf, proof, root),
        (index, size, leaf_hash(b"WrongLeaf"), proof, root),
        (index, size, leaf, proof, EMPTY_ROOT),
        (index, size, leaf, proof, SOME_HASH),
        (index, size, leaf, [*proof, root], root),
        (index, size, leaf, [root, *proof], root),
        (index, size, leaf, [*proof, b""], root),
    ]
    probes += [
        (index, size, leaf, [*proof[:i], _flip(p, 3), *proof[i + 1 :]], root)
        for i, p in enumerate(proof)
    ]
    if proof:
        probes.append((index, size, leaf, proof[:-1], root))
    if len(proof) > 1:
        probes.append((index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], root))
    for i, n, lf, pr, rt in probes:
        with pytest.raises(ProofError):
            verify_inclusion(lf, i, n, pr, rt)


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY_VECTORS)
def test_vector_consistency(old: int, new: int, path: list[str]) -> None:
    nodes = build([leaf_hash(x) for x in LEAVES])
    proof = consistency_proof(old, new, nodes)
    assert proof == _h(path)
    r1, r2 = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
    verify_consistency(old, new, r1, r2, proof)
    if not proof:
        return
    probes = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, SOME_HASH, r2, proof),
        (old, new, r1, SOME_HASH, proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]),
        (old, new, r1, r2, [*proof, b""]),
        (old, new, r1, r2, [r1, *proof]),
        (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    probes += [
        (old, new, r1, r2, [*proof[:i], _flip(p, 4), *proof[i + 1 :]]) for i, p in enumerate(proof)
    ]
    for m, n, a, b, pr in probes:
        with pytest.raises(ProofError):
            verify_consistency(m, n, a, b, pr)


# -- structure --------------------------------------------------------------


def test_subtrees() -> None:
    assert subtrees(0, 0) == []
    assert subtrees(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert subtrees(0, 8) == [(3, 0)]
    assert subtrees(4, 7) == [(1, 2), (0, 6)]
    # General ranges still split into aligned pieces (no MTH meaning).
    assert subtrees(3, 9) == [(0, 3), (2, 1), (0, 8)]
    with pytest.raises(ProofError):
        subtrees(5, 4)


def test_range_hash_refuses_ranges_that_are_not_rfc_subtrees() -> None:
    nodes = build([leaf_hash(x) for x in LEAVES])
    with pytest.raises(ProofError, match="not a subtree range"):
        range_hash(1, 3, nodes)
    with pytest.raises(ProofError, match="missing"):
        range_hash(0, 8, {})


def test_out_of_range_arguments() -> None:
    with pytest.raises(ProofError):
        inclusion_proof_ranges(3, 3)
    with pytest.raises(ProofError):
        inclusion_proof_ranges(-1, 3)
    with pytest.raises(ProofError):
        consistency_proof_ranges(0, 3)
    with pytest.raises(ProofError):
        consistency_proof_ranges(4, 3)
    with pytest.raises(ProofError):
        root_hash(-1, {})
    root = bytes.fromhex(ROOTS[3])
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(b""), 3, 3, [], root)
    with pytest.raises(ProofError):
        verify_consistency(0, 3, EMPTY_ROOT, root, [])
    with pytest.raises(ProofError):
        verify_consistency(3, 2, root, root, [root])


def test_equal_sizes_need_equal_roots_and_an_empty_proof() -> None:
    root = bytes.fromhex(ROOTS[3])
    verify_consistency(3, 3, root, root, [])
    with pytest.raises(ProofError, match="two different roots"):
        verify_consistency(3, 3, root, SOME_HASH, [])
    with pytest.raises(ProofError, match="must be empty"):
        verify_consistency(3, 3, root, root, [root])


def test_append_needs_the_frontier() -> None:
    hashes = [leaf_hash(x) for x in LEAVES]
    with pytest.raises(ProofError, match="missing"):
        append_nodes(3, hashes[3:], {})
    with pytest.raises(ProofError):
        append_nodes(0, [b"short"], {})


def test_hashes_must_be_32_bytes() -> None:
    root = bytes.fromhex(ROOTS[1])
    with pytest.raises(ProofError):
        verify_inclusion(root[:31], 0, 1, [], root)
    with pytest.raises(ProofError):
        verify_inclusion(root, 0, 1, [], root + b"\x00")


# -- properties -------------------------------------------------------------

_leaf_lists = st.lists(st.binary(max_size=8), min_size=1, max_size=70)


@settings(max_examples=60, deadline=None)
@given(_leaf_lists, st.data())
def test_incremental_append_matches_reference(leaves: list[bytes], data: st.DataObject) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    batches = data.draw(st.lists(st.integers(1, 9), max_size=10))
    nodes = build(hashes, batches)
    # Exactly the perfect subtrees exist, each with its MTH.
    n = len(hashes)
    expected_ids = {
        (level, index) for level in range(n.bit_length()) for index in range(n >> level)
    }
    assert set(nodes) == expected_ids
    for level, index in expected_ids:
        lo = index << level
        assert nodes[(level, index)] == reference_mth(hashes[lo : lo + (1 << level)])
    for size in range(n + 1):
        assert root_hash(size, _only(nodes, frontier_ids(size))) == reference_mth(hashes[:size])


@settings(max_examples=80, deadline=None)
@given(_leaf_lists, st.data())
def test_inclusion_proofs_verify_and_tampering_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    n = len(hashes)
    nodes = build(hashes)
    index = data.draw(st.integers(0, n - 1))
    ranges = inclusion_proof_ranges(index, n)
    proof = inclusion_proof(index, n, _only(nodes, nodes_for_ranges(ranges)))
    root = reference_mth(hashes)
    leaf = hashes[index]
    verify_inclusion(leaf, index, n, proof, root)

    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, n, proof, _flip(root))
    with pytest.raises(ProofError):
        verify_inclusion(_flip(leaf), index, n, proof, root)
    for i in range(len(proof)):
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, n, [*proof[:i], _flip(proof[i]), *proof[i + 1 :]], root)
    if proof:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, n, proof[:-1], root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, n, [*proof, root], root)
    if n > 1:
        other = data.draw(st.integers(0, n - 1).filter(lambda i: hashes[i] != leaf))
        with pytest.raises(ProofError):
            verify_inclusion(hashes[other], index, n, proof, root)

    # A wrong size fails unless its audit path has the same length and the
    # same left/right pattern: then the proof is the same computation, which is
    # why the size must come from a signed checkpoint.
    wrong = data.draw(st.integers(1, 2 * n + 2).filter(lambda s: s != n))

    def shape(size: int) -> list[bool]:
        return [end <= index for _, end in inclusion_proof_ranges(index, size)]

    if index < wrong and shape(wrong) == shape(n):
        verify_inclusion(leaf, index, wrong, proof, root)
    else:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, wrong, proof, root)


@settings(max_examples=80, deadline=None)
@given(_leaf_lists, st.data())
def test_consistency_proofs_verify_and_tampering_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    hashes = [leaf_hash(x) for x in leaves]
    n = len(hashes)
    nodes = build(hashes)
    m = data.draw(st.integers(1, n))
    ranges = consistency_proof_ranges(m, n)
    proof = consistency_proof(m, n, _only(nodes, nodes_for_ranges(ranges)))
    old_root, new_root = reference_mth(hashes[:m]), reference_mth(hashes)
    verify_consistency(m, n, old_root, new_root, proof)

    with pytest.raises(ProofError):
        verify_consistency(m, n, _flip(old_root), new_root, proof)
    with pytest.raises(ProofError):
        verify_consistency(m, n, old_root, _flip(new_root), proof)
    for i in range(len(proof)):
        with pytest.raises(ProofError):
            verify_consistency(
                m, n, old_root, new_root, [*proof[:i], _flip(proof[i]), *proof[i + 1 :]]
            )
    if proof:
        with pytest.raises(ProofError):
            verify_consistency(m, n, old_root, new_root, proof[:-1])
    with pytest.raises(ProofError):
        verify_consistency(m, n, old_root, new_root, [*proof, new_root])
    with pytest.raises(ProofError):
        verify_consistency(m, n, old_root, new_root, [old_root, *proof])

    # Sizes whose proof has another length can never verify this proof.
    m2 = data.draw(st.integers(0, n + 2))
    n2 = data.draw(st.integers(0, 2 * n + 2))
    if (m2, n2) != (m, n) and (
        not 0 < m2 <= n2 or len(consistency_proof_ranges(m2, n2)) != len(proof)
    ):
        with pytest.raises(ProofError):
            verify_consistency(m2, n2, old_root, new_root, proof)


@given(st.integers(1, 2**40), st.data())
def test_proofs_touch_logarithmically_many_nodes(n: int, data: st.DataObject) -> None:
    bound = 2 * math.log2(n) + 2
    index = data.draw(st.integers(0, n - 1))
    old = data.draw(st.integers(1, n))
    assert len(nodes_for_ranges(inclusion_proof_ranges(index, n))) <= bound
    assert len(nodes_for_ranges(consistency_proof_ranges(old, n))) <= bound
    assert len(frontier_ids(n)) <= math.log2(n) + 1
