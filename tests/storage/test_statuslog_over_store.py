"""The status log over a real SQLite store: appends and proofs read only
O(log n) stored subtree hashes, and what they produce verifies."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from credfed.crypto.keys import SigningKey
from credfed.models import Status, StatusState
from credfed.statuslog import log as statuslog
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import verify_checkpoint
from credfed.statuslog.log import StatusLog
from credfed.storage.base import NodeId
from credfed.storage.sqlite import SqliteStore

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


class Counting:
    """Wraps a store (or tx) and counts the node hashes it is asked for."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.node_reads = 0

    async def get_log_nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        self.node_reads += len(ids)
        return await self._inner.get_log_nodes(ids)  # type: ignore[attr-defined, no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "log.db")
    yield s
    await s.close()


def _state(n: int) -> StatusState:
    return StatusState(Status.SUSPENDED if n % 2 else Status.ACTIVE, "disciplinary", NOW)


async def test_appends_and_proofs_read_log_n_nodes(store: SqliteStore) -> None:
    key = SigningKey.generate()
    log = StatusLog("DE", key, lambda: NOW)
    leaves: list[bytes] = []
    checkpoints = []
    for batch in range(60):
        async with store.write() as tx:
            counting = Counting(tx)
            entries = await log.append(counting, [(f"C{batch}-{i}", _state(i)) for i in range(37)])  # type: ignore[arg-type]
            size = len(leaves) + len(entries)
            # The frontier of the tree before the append: at most log2(n) + 1 nodes.
            assert counting.node_reads <= math.log2(max(size, 2)) + 1
            leaves.extend(e.leaf for e in entries)
            checkpoints.append(await log.checkpoint(tx))
    n = len(leaves)
    assert n == 60 * 37

    # The checkpoint root equals a from-scratch computation over every leaf.
    nodes = {}
    for level, index, digest in merkle.append_nodes(0, [merkle.leaf_hash(x) for x in leaves], {}):
        nodes[(level, index)] = digest
    assert checkpoints[-1].checkpoint.root_hash == merkle.root_hash(n, nodes)
    signed = verify_checkpoint(checkpoints[-1].envelope, {key.key_id: key.verifying_key()}, "DE")
    assert signed.checkpoint.tree_size == n

    bound = 2 * math.log2(n) + 2
    root = signed.checkpoint.root_hash
    for index in (0, 1, 777, n // 2, n - 1):
        counting = Counting(store)
        proof = await statuslog.inclusion_proof(counting, index, n)  # type: ignore[arg-type]
        assert counting.node_reads <= bound
        merkle.verify_inclusion(merkle.leaf_hash(leaves[index]), index, n, proof, root)
    for old in checkpoints[::7]:
        counting = Counting(store)
        size = old.checkpoint.tree_size
        proof = await statuslog.consistency_proof(counting, size, n)  # type: ignore[arg-type]
        assert counting.node_reads <= bound
        merkle.verify_consistency(size, n, old.checkpoint.root_hash, root, proof)
