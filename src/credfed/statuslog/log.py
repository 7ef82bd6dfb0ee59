"""The status log over a store: append, checkpoint, prove.

Every operation reads only the O(log n) perfect-subtree hashes it needs
(``merkle.frontier_ids`` to append, ``merkle.nodes_for_ranges`` to prove);
the tree is never recomputed from its leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from credfed.crypto.keys import SigningKey
from credfed.errors import ProofError
from credfed.models import Checkpoint, SignedCheckpoint, StatusState
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import sign_checkpoint
from credfed.statuslog.entries import LogEntryData, encode_entry
from credfed.storage.base import LogReader, WriteTx


@dataclass(frozen=True, slots=True)
class LogEntry:
    index: int
    leaf: bytes


class StatusLog:
    """The append-only status log of this node (the origin ``origin``)."""

    def __init__(self, origin: str, key: SigningKey, clock: Callable[[], datetime]) -> None:
        self.origin = origin
        self._key = key
        self._clock = clock

    async def append(
        self, tx: WriteTx, changes: Sequence[tuple[str, StatusState]]
    ) -> list[LogEntry]:
        """Append one entry per (credential id, new state) inside ``tx``."""
        start = await tx.log_size()
        entries = [
            LogEntry(start + i, encode_entry(LogEntryData(self.origin, start + i, cid, state)))
            for i, (cid, state) in enumerate(changes)
        ]
        frontier = await tx.get_log_nodes(merkle.frontier_ids(start))
        hashes = [merkle.leaf_hash(entry.leaf) for entry in entries]
        await tx.append_log(
            start, [e.leaf for e in entries], merkle.append_nodes(start, hashes, frontier)
        )
        return entries

    async def checkpoint(self, tx: WriteTx) -> SignedCheckpoint:
        """Sign and record a checkpoint of the log as it stands in ``tx``."""
        size = await tx.log_size()
        root = await root_hash(tx, size)
        signed = sign_checkpoint(
            self._key,
            Checkpoint(origin=self.origin, tree_size=size, root_hash=root, timestamp=self._clock()),
        )
        await tx.add_checkpoint(signed)
        return signed


async def root_hash(reader: LogReader, size: int) -> bytes:
    if size == 0:
        return merkle.EMPTY_ROOT
    ids = merkle.subtrees(0, size)
    return merkle.range_hash(0, size, await _nodes(reader, ids))


async def inclusion_proof(reader: LogReader, index: int, size: int) -> list[bytes]:
    ranges = merkle.inclusion_proof_ranges(index, size)
    nodes = await _nodes(reader, merkle.nodes_for_ranges(ranges))
    return merkle.inclusion_proof(index, size, nodes)


async def consistency_proof(reader: LogReader, old_size: int, new_size: int) -> list[bytes]:
    ranges = merkle.consistency_proof_ranges(old_size, new_size)
    nodes = await _nodes(reader, merkle.nodes_for_ranges(ranges))
    return merkle.consistency_proof(old_size, new_size, nodes)


async def _nodes(reader: LogReader, ids: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    nodes = await reader.get_log_nodes(ids)
    if len(nodes) != len(set(ids)):
        raise ProofError("the store is missing Merkle nodes: the log is incomplete")
    return nodes
