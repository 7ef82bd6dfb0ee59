"""RFC 6962 / RFC 9162 Merkle trees over stored perfect subtrees.

A node id ``(level, index)`` names the perfect subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; level 0 holds leaf hashes.
The store keeps the hash of every perfect subtree once it is complete, and
never changes it afterwards (the log is append-only). Any MTH this module
needs -- a root, an audit-path element -- is a range of leaves that splits
into O(log n) such subtrees, so appending and proving read O(log n) stored
hashes and never recompute the tree.

Functions here are pure: callers fetch ``nodes_for_ranges(...)`` (or
``frontier_ids(...)``) from storage and pass the hashes in as a mapping.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from credfed.errors import ProofError

NodeId = tuple[int, int]
Range = tuple[int, int]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    # The 0x00 / 0x01 prefixes keep a leaf from being passed off as a node.
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def subtrees(start: int, end: int) -> list[NodeId]:
    """Split ``[start, end)`` into maximal aligned perfect subtrees, left to right.

    Defined for any ``0 <= start <= end``. The right fold of their hashes is
    MTH(D[start:end]) only when the range is one that RFC 6962's recursion
    produces: ``start`` a multiple of the smallest power of two >= the range
    length (see :func:`range_hash`). Then the pieces strictly shrink from left
    to right, exactly like the RFC's left-balanced split.
    """
    if not 0 <= start <= end:
        raise ProofError(f"invalid leaf range [{start}, {end})")
    out: list[NodeId] = []
    while start < end:
        level = (end - start).bit_length() - 1  # the largest piece that fits
        if start:
            level = min(level, (start & -start).bit_length() - 1)  # ...and is aligned
        out.append((level, start >> level))
        start += 1 << level
    return out


def frontier_ids(size: int) -> list[NodeId]:
    """The nodes that summarise a tree of ``size`` leaves (what appends need)."""
    return subtrees(0, size)


def range_hash(start: int, end: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """MTH(D[start:end]) from the stored subtrees of that range."""
    if not 0 <= start < end or start % (1 << (end - start - 1).bit_length()):
        raise ProofError(f"[{start}, {end}) is not a subtree range of an RFC 6962 tree")
    ids = subtrees(start, end)
    acc = _node(nodes, ids[-1])
    for node_id in reversed(ids[:-1]):
        acc = node_hash(_node(nodes, node_id), acc)
    return acc


def root_hash(size: int, nodes: Mapping[NodeId, bytes]) -> bytes:
    """The root of the tree of the first ``size`` leaves."""
    if size < 0:
        raise ProofError(f"invalid tree size {size}")
    return EMPTY_ROOT if size == 0 else range_hash(0, size, nodes)


def inclusion_proof_ranges(index: int, size: int) -> list[Range]:
    """Leaf ranges whose MTHs form the audit path of leaf ``index`` (RFC 6962
    PATH), ordered from the leaf's sibling up to the root's other child."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    path: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split(end - start)
        if index < mid:
            path.append((mid, end))
            end = mid
        else:
            path.append((start, mid))
            start = mid
    path.reverse()
    return path


def consistency_proof_ranges(old_size: int, new_size: int) -> list[Range]:
    """Leaf ranges whose MTHs form the RFC 6962 consistency proof (SUBPROOF)
    from ``old_size`` to ``new_size``; empty when the sizes are equal."""
    if not 0 < old_size <= new_size:
        raise ProofError(
            f"no consistency proof from size {old_size} to {new_size}"
            " (needs 0 < old size <= new size)"
        )
    proof: list[Range] = []
    start, end, m = 0, new_size, old_size
    # RFC 6962's flag b: the current subtree is a prefix the verifier already
    # holds (its hash is the old root), so it need not be sent.
    known = True
    while m != end - start:
        mid = start + _split(end - start)
        if m <= mid - start:
            proof.append((mid, end))
            end = mid
        else:
            proof.append((start, mid))
            m -= mid - start
            start = mid
            known = False
    if not known:
        proof.append((start, end))
    proof.reverse()
    return proof


def nodes_for_ranges(ranges: Sequence[Range]) -> list[NodeId]:
    """The distinct stored nodes needed to hash ``ranges``, in first-use order."""
    seen: dict[NodeId, None] = {}
    for start, end in ranges:
        for node_id in subtrees(start, end):
            seen.setdefault(node_id)
    return list(seen)


def inclusion_proof(index: int, size: int, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    return [range_hash(a, b, nodes) for a, b in inclusion_proof_ranges(index, size)]


def consistency_proof(old_size: int, new_size: int, nodes: Mapping[NodeId, bytes]) -> list[bytes]:
    return [range_hash(a, b, nodes) for a, b in consistency_proof_ranges(old_size, new_size)]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf hash ``leaf`` is entry ``index`` of the tree of ``size``
    leaves with root ``root`` (RFC 9162 section 2.1.3.2). Raises ProofError.

    The sizes are not bound by the proof itself: they must come from a
    signed checkpoint together with ``root``.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of size {size}")
    _check_hashes(leaf, root, *proof)
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # Skip the levels where this node is a lone right-edge child.
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != root:
        raise ProofError(f"inclusion proof for leaf {index} does not match the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree with ``new_root`` extends the one with ``old_root``
    (RFC 9162 section 2.1.4.2). Raises ProofError on any mismatch."""
    if not 0 < old_size <= new_size:
        raise ProofError(
            f"no consistency proof from size {old_size} to {new_size}"
            " (needs 0 < old size <= new size)"
        )
    _check_hashes(old_root, new_root, *proof)
    if old_size == new_size:
        if proof:
            raise ProofError("consistency proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"two different roots for the same size {old_size}")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a perfect subtree of the new one; its root is not sent.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != old_root:
        raise ProofError(f"consistency proof does not match the root of size {old_size}")
    if sr != new_root:
        raise ProofError(f"consistency proof does not match the root of size {new_size}")


def append_nodes(
    start_index: int, leaf_hashes: Sequence[bytes], frontier: Mapping[NodeId, bytes]
) -> list[tuple[int, int, bytes]]:
    """The ``(level, index, hash)`` nodes completed by appending ``leaf_hashes``
    at ``start_index``, leaves included, in creation order.

    ``frontier`` must hold the nodes ``frontier_ids(start_index)``: those are
    the only left siblings a new node can need.
    """
    if start_index < 0:
        raise ProofError(f"invalid tree size {start_index}")
    _check_hashes(*leaf_hashes)
    # A stack of the maximal perfect subtrees so far, levels strictly falling;
    # pushing a leaf merges equal-level neighbours like a binary counter.
    stack = [
        (level, index, _node(frontier, (level, index)))
        for level, index in frontier_ids(start_index)
    ]
    created: list[tuple[int, int, bytes]] = []
    for offset, h in enumerate(leaf_hashes):
        stack.append((0, start_index + offset, h))
        created.append(stack[-1])
        while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
            level, index, right = stack.pop()
            _, _, left = stack.pop()
            stack.append((level + 1, index >> 1, node_hash(left, right)))
            created.append(stack[-1])
    return created


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n > 1): RFC 6962's k."""
    return 1 << ((n - 1).bit_length() - 1)


def _node(nodes: Mapping[NodeId, bytes], node_id: NodeId) -> bytes:
    try:
        h = nodes[node_id]
    except KeyError:
        raise ProofError(f"Merkle node {node_id} is missing") from None
    if len(h) != HASH_SIZE:
        raise ProofError(f"Merkle node {node_id} is not a {HASH_SIZE}-byte hash")
    return h


def _check_hashes(*hashes: bytes) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise ProofError(f"expected a {HASH_SIZE}-byte hash, got {len(h)} bytes")
