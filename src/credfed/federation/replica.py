"""Replicas of partner origins' status logs, guarded by the trust state.

Rules:

1. **Verified before stored.** Entries of origin X are stored only once they
   are proven part of a checkpoint signed by X (a key of X's pinned
   descriptor valid at the checkpoint's time): the last batch must rebuild
   the checkpoint's root, any earlier batch is tied to it by a consistency
   proof from the batch's end to the checkpoint's size.
2. **One tree.** A checkpoint larger than the latest accepted one L needs a
   consistency proof from L (``TrustState.observe``); older or equal ones
   are checked against the replica. Two checkpoints that cannot both be
   true are a fork: the evidence is kept (in the store), the origin's data is
   refused from then on, and ``on_fork`` raises the alarm and hands the
   evidence on.
3. **The replica checkpoint is L.** It is written in the same transaction as
   the batch that completes its tree, so the replica always covers it and a
   relay can serve every entry and proof up to it. During a long catch-up the
   replica may hold verified entries beyond L (each batch is proven part of
   the checkpoint being caught up to); they are never served before L covers
   them.
4. **One writer per origin.** A lock serialises the updates of one origin
   (the push stream and anti-entropy may deliver the same data twice).

Where the data came from does not matter to any rule: a relay is only
transport. Nothing here imports grpc; :class:`LogSource` is the port.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from credfed.clock import Clock
from credfed.errors import (
    CheckpointRollbackError,
    EquivocationError,
    ProofError,
    ValidationError,
)
from credfed.federation.descriptor import Descriptor
from credfed.federation.evidence import ForkEvidence, decode_evidence, encode_evidence
from credfed.federation.trust import TrustState
from credfed.models import Envelope, SignedCheckpoint
from credfed.statuslog import merkle
from credfed.statuslog.entries import entry_position
from credfed.statuslog.watch import LogWatch
from credfed.storage.base import ReplicaAppend, Store

log = structlog.get_logger("credfed.federation")

#: Entries per request and per stored batch.
BATCH = 1000
#: Verified batches are written this many entries to a transaction: one
#: synchronous commit per 1,000 entries was a third of a catch-up's time.
WRITE_GROUP = 10 * BATCH
#: Largest tree rebuilt in memory to prove a suspected fork (~100 B a node).
MAX_PROVE = 200_000


class LogSource(Protocol):
    """A partner that serves status logs: the origin itself or a relay."""

    @property
    def name(self) -> str:
        """The partner's country, for logs and status."""
        ...

    async def checkpoint(self, origin: str) -> Envelope: ...

    async def entries(self, origin: str, start: int, end: int) -> list[bytes]: ...

    async def consistency(self, origin: str, old_size: int, new_size: int) -> list[bytes]: ...


@dataclass(frozen=True, slots=True)
class Delivered:
    """Entries a push stream delivered with a checkpoint: leaves from ``start``."""

    start: int
    leaves: Sequence[bytes]


OnFork = Callable[[ForkEvidence], Awaitable[None]]


class Replicas:
    """The node's replicas of its partners' logs (see the module rules)."""

    def __init__(self, store: Store, trust: TrustState, clock: Clock) -> None:
        self._store = store
        self.trust = trust
        self._clock = clock
        #: Called once per fork recorded (the alarm, and handing the evidence on).
        self.on_fork: OnFork = _no_alarm
        self._locks: dict[str, asyncio.Lock] = {}
        self._watches: dict[str, LogWatch] = {}

    @classmethod
    async def load(cls, store: Store, descriptors: Sequence[Descriptor], clock: Clock) -> Replicas:
        """Rebuild the trust state from the pinned descriptors and what the
        store kept (replica checkpoints, fork evidence) of those origins."""
        pinned = {d.country for d in descriptors}
        latest = [cp for cp in await store.replica_checkpoints() if cp.checkpoint.origin in pinned]
        forks = [
            decode_evidence(data)
            for origin, data in await store.list_fork_evidence()
            if origin in pinned
        ]
        replicas = cls(store, TrustState(descriptors, latest, forks, clock=clock), clock)
        for cp in latest:
            await replicas.watch(cp.checkpoint.origin).published(cp.checkpoint.tree_size)
        return replicas

    def watch(self, origin: str) -> LogWatch:
        """Woken when the replica of ``origin`` covers a larger checkpoint."""
        return self._watches.setdefault(origin, LogWatch())

    async def close_watches(self) -> None:
        for watch in self._watches.values():
            await watch.close()

    def _lock(self, origin: str) -> asyncio.Lock:
        return self._locks.setdefault(origin, asyncio.Lock())

    # -- updates --------------------------------------------------------------

    async def apply(
        self,
        origin: str,
        envelope: Envelope,
        source: LogSource,
        delivered: Delivered | None = None,
    ) -> bool:
        """Take a checkpoint of ``origin`` from ``source`` (with the entries a
        stream delivered alongside, if any), fetch whatever else the replica
        needs from ``source`` and store it. Returns True if the replica's
        checkpoint changed. Raises TrustError (a bad signature, proof or
        rollback: the source's fault or an attack, logged by the caller) and
        EquivocationError after recording the fork."""
        async with self._lock(origin):
            try:
                return await self._apply(origin, envelope, source, delivered)
            except EquivocationError as exc:
                await self._recorded(exc.evidence)
                raise

    async def _apply(
        self, origin: str, envelope: Envelope, source: LogSource, delivered: Delivered | None
    ) -> bool:
        latest = self.trust.latest(origin)
        if latest is not None and envelope == latest.envelope and not self.trust.is_forked(origin):
            # The checkpoint we hold, again (a keepalive, another link's copy):
            # checked when accepted; no signature to verify twice.
            return False
        signed = self.trust.check_checkpoint(origin, envelope)
        size = signed.checkpoint.tree_size
        held = await self._store.replica_size(origin)
        if latest is None or size > latest.checkpoint.tree_size:
            proof: list[bytes] = []
            if latest is not None and latest.checkpoint.tree_size > 0:
                proof = await source.consistency(origin, latest.checkpoint.tree_size, size)
            try:
                self.trust.observe(origin, signed, self._no_root, proof=proof, advance=False)
            except ProofError:
                if latest is not None:
                    await self._prove_fork(origin, latest, signed, source)
                raise
            await self._catch_up(
                origin, signed, proof=proof, source=source, held=held, delivered=delivered
            )
            return True
        latest_size = latest.checkpoint.tree_size
        if size == latest_size:
            self.trust.observe(origin, signed, self._no_root, advance=False)  # a fork?
            if signed.checkpoint.timestamp <= latest.checkpoint.timestamp:
                return False
            # A fresher time for the same tree (a heartbeat): stored first, so
            # that trust never runs ahead of the store.
            await self._store.set_replica_checkpoint(signed)
            self.trust.observe(origin, signed, self._no_root)
            await self.watch(origin).refreshed()  # relay the fresher time now
            return True
        # Older than L: no news, unless it disagrees with the replica (a fork).
        ours = await self._root(origin, size)
        own_proof = await self._consistency(origin, size, latest_size) if size else []
        try:
            self.trust.observe(
                origin, signed, lambda s: ours if s == size else None, proof=own_proof
            )
        except CheckpointRollbackError:
            return False
        return False  # pragma: no cover - observe raises for an older checkpoint

    async def audit(self, origin: str, signed: SignedCheckpoint) -> None:
        """Check a checkpoint of ``origin`` seen elsewhere (a lookup answer)
        against the replica, without moving anything: one the replica
        already covers must agree with it, else the fork is recorded and
        EquivocationError raised. Larger ones are left to replication."""
        async with self._lock(origin):
            latest = self.trust.latest(origin)
            size = signed.checkpoint.tree_size
            if latest is None or size > latest.checkpoint.tree_size:
                return
            ours = await self._root(origin, size)
            proof = (
                await self._consistency(origin, size, latest.checkpoint.tree_size)
                if 0 < size < latest.checkpoint.tree_size
                else []
            )
            try:
                self.trust.observe(
                    origin,
                    signed,
                    lambda s: ours if s == size else None,
                    proof=proof,
                    advance=False,
                )
            except EquivocationError as exc:
                await self._recorded(exc.evidence)
                raise

    async def _catch_up(
        self,
        origin: str,
        signed: SignedCheckpoint,
        *,
        proof: Sequence[bytes],
        source: LogSource,
        held: int,
        delivered: Delivered | None,
    ) -> None:
        size = signed.checkpoint.tree_size
        if held >= size:
            await self._cover(origin, signed, proof)
            return
        frontier = await self._store.get_replica_nodes(origin, merkle.frontier_ids(held))

        async def fetch(start: int) -> tuple[list[bytes], list[bytes]]:
            """Entries [start, start + BATCH) and, unless they reach the
            checkpoint, the proof linking their end to it."""
            end = min(size, start + BATCH)
            leaves = _take(delivered, start, end)
            if end == size:
                return leaves or await source.entries(origin, start, end), []
            link = source.consistency(origin, end, size)
            if leaves is None:
                fetched, proof_to_size = await asyncio.gather(
                    source.entries(origin, start, end), link
                )
                return fetched, proof_to_size
            return leaves, await link

        # A pipeline: the next batch is fetched while this one is checked, and
        # written while the next one is checked; writes stay in order.
        start = held
        next_batch = asyncio.ensure_future(fetch(start))
        writing: asyncio.Future[None] | None = None
        group = _Group(start)
        try:
            while start < size:
                leaves, link = await next_batch
                end = min(size, start + BATCH)
                if len(leaves) != end - start:
                    raise ProofError(
                        f"{source.name} sent {len(leaves)} entries of {origin} for [{start}, {end})"
                    )
                if end < size:
                    next_batch = asyncio.ensure_future(fetch(end))
                statuses = _statuses(origin, start, leaves)
                nodes, known = verified_nodes(origin, source, signed, start, leaves, link, frontier)
                group.add(leaves, nodes, statuses)
                frontier = {node: known[node] for node in merkle.frontier_ids(end)}
                start = end
                if len(group.leaves) >= WRITE_GROUP or end == size:
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(
                        self._store.append_replica(
                            group.batch(origin, signed if end == size else None)
                        )
                    )
                    group = _Group(end)
        except Exception:
            # What was verified before the failure is kept (rule 3).
            if writing is not None:
                await writing
                writing = None
            if group.leaves:
                await self._store.append_replica(group.batch(origin, None))
            raise
        finally:
            if not next_batch.done():
                next_batch.cancel()
            # A verified batch already handed to the store is written (or fails) whole.
            if writing is not None:
                await writing
        # After the commit, so trust never runs ahead of the stored replica; it
        # passed with advance=False under this lock, so advancing succeeds.
        self.trust.observe(origin, signed, self._no_root, proof=proof)
        await self.watch(origin).published(size)

    async def _cover(self, origin: str, signed: SignedCheckpoint, proof: Sequence[bytes]) -> None:
        """A checkpoint within entries already verified during an earlier,
        interrupted catch-up: no fetch, only the root to compare."""
        size = signed.checkpoint.tree_size
        if await self._root(origin, size) != signed.checkpoint.root_hash:
            raise ProofError(
                f"checkpoint of {origin} at size {size} disagrees with verified entries"
            )
        await self._store.set_replica_checkpoint(signed)
        self.trust.observe(origin, signed, self._no_root, proof=proof)
        await self.watch(origin).published(size)

    async def _prove_fork(
        self,
        origin: str,
        latest: SignedCheckpoint,
        signed: SignedCheckpoint,
        source: LogSource,
    ) -> None:
        """A larger checkpoint whose consistency proof from L failed: the
        source may be lying, or the origin may have forked. Rebuild the
        source's tree from its entries; if it matches the signed root but not
        L's at L's size, the two checkpoints are a proven fork
        (EquivocationError, recorded by apply). Otherwise return and let the
        ProofError stand. Bounded: trees beyond MAX_PROVE are not rebuilt."""
        m, n = latest.checkpoint.tree_size, signed.checkpoint.tree_size
        if n > MAX_PROVE:
            log.warning("federation.fork_unproven", origin=origin, size=n, reason="tree too large")
            return
        nodes: dict[tuple[int, int], bytes] = {}
        for start in range(0, n, BATCH):
            end = min(n, start + BATCH)
            leaves = await source.entries(origin, start, end)
            if len(leaves) != end - start:
                return
            frontier = {i: nodes[i] for i in merkle.frontier_ids(start)}
            hashes = [merkle.leaf_hash(x) for x in leaves]
            nodes.update(
                ((lv, ix), h) for lv, ix, h in merkle.append_nodes(start, hashes, frontier)
            )
        if merkle.root_hash(n, nodes) != signed.checkpoint.root_hash:
            return  # the source's entries do not match its checkpoint: its own fault
        alt = merkle.root_hash(m, nodes)
        if alt == latest.checkpoint.root_hash:
            return  # one tree after all: only the proof was bad
        evidence = ForkEvidence(
            origin,
            latest.envelope,
            signed.envelope,
            tuple(merkle.consistency_proof(m, n, nodes)),
            alt,
        )
        self.trust.record_fork(evidence)  # checks it like a peer's
        raise EquivocationError(f"origin {origin} signed two inconsistent checkpoints", evidence)

    async def record_fork(self, data: bytes) -> bool:
        """A peer's fork evidence (ReportFork): check it, keep it, alarm.
        Returns False if this node already held evidence against the origin."""
        evidence = decode_evidence(data)
        if self.trust.descriptor(evidence.origin) is None:
            raise ValidationError("evidence", f"origin {evidence.origin} is not pinned here")
        async with self._lock(evidence.origin):
            if not self.trust.record_fork(evidence):
                return False
        await self._recorded(evidence)
        return True

    async def _recorded(self, evidence: ForkEvidence) -> None:
        await self._store.add_fork_evidence(evidence.origin, encode_evidence(evidence))
        await self.on_fork(evidence)

    # -- reads ----------------------------------------------------------------

    async def size(self, origin: str) -> int:
        return await self._store.replica_size(origin)

    async def checkpoint(self, origin: str) -> SignedCheckpoint | None:
        return await self._store.replica_checkpoint(origin)

    async def consistency(self, origin: str, old_size: int, new_size: int) -> list[bytes]:
        return await self._consistency(origin, old_size, new_size)

    async def _consistency(self, origin: str, old_size: int, new_size: int) -> list[bytes]:
        ranges = merkle.consistency_proof_ranges(old_size, new_size)
        nodes = await self._nodes(origin, merkle.nodes_for_ranges(ranges))
        return merkle.consistency_proof(old_size, new_size, nodes)

    async def _root(self, origin: str, size: int) -> bytes:
        if size == 0:
            return merkle.EMPTY_ROOT
        return merkle.root_hash(size, await self._nodes(origin, merkle.frontier_ids(size)))

    async def _nodes(
        self, origin: str, ids: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        nodes = await self._store.get_replica_nodes(origin, ids)
        if len(nodes) != len(set(ids)):
            raise ProofError(f"the replica of {origin} is missing Merkle nodes")
        return nodes

    @staticmethod
    def _no_root(size: int) -> bytes | None:
        return None


@dataclass(slots=True)
class _Group:
    """Verified batches gathered into one write."""

    start: int
    leaves: list[bytes] = field(default_factory=list)
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    statuses: list[tuple[str, int]] = field(default_factory=list)

    def add(
        self,
        leaves: Sequence[bytes],
        nodes: Sequence[tuple[int, int, bytes]],
        statuses: Sequence[tuple[str, int]],
    ) -> None:
        self.leaves.extend(leaves)
        self.nodes.extend(nodes)
        self.statuses.extend(statuses)

    def batch(self, origin: str, checkpoint: SignedCheckpoint | None) -> ReplicaAppend:
        return ReplicaAppend(origin, self.start, self.leaves, self.nodes, self.statuses, checkpoint)


def verified_nodes(  # noqa: PLR0917 - one batch's whole context
    origin: str,
    source: LogSource,
    signed: SignedCheckpoint,
    start: int,
    leaves: Sequence[bytes],
    link: Sequence[bytes],
    frontier: dict[tuple[int, int], bytes],
) -> tuple[list[tuple[int, int, bytes]], dict[tuple[int, int], bytes]]:
    """The Merkle nodes ``leaves`` complete after ``frontier``, once they are
    shown part of ``signed``: the last batch rebuilds its root, an earlier
    one is linked to it by ``link``, a consistency proof from its end."""
    size, root = signed.checkpoint.tree_size, signed.checkpoint.root_hash
    end = start + len(leaves)
    nodes = merkle.append_nodes(start, [merkle.leaf_hash(x) for x in leaves], frontier)
    known = dict(frontier)
    known.update(((level, index), h) for level, index, h in nodes)
    got = merkle.root_hash(end, known)
    if end == size:
        if got != root:
            raise ProofError(
                f"entries of {origin} from {source.name} do not rebuild the root"
                f" of its checkpoint at size {size}: refused"
            )
        return nodes, known
    try:
        merkle.verify_consistency(end, size, got, root, link)
    except ProofError as exc:
        raise ProofError(
            f"entries of {origin} [{start}, {end}) from {source.name} are not"
            f" part of its checkpoint at size {size}: {exc}"
        ) from None
    return nodes, known


async def _no_alarm(evidence: ForkEvidence) -> None:
    return None


def _statuses(origin: str, start: int, leaves: Sequence[bytes]) -> list[tuple[str, int]]:
    """The credential id of each leaf, after checking that the leaf is an
    entry of ``origin`` at its position (a leaf moved to another log or index
    is refused even though the Merkle proof would hold)."""
    out = []
    for offset, leaf in enumerate(leaves):
        try:
            credential_id, index, entry_origin = entry_position(leaf)
        except ValidationError as exc:
            raise ProofError(f"entry {start + offset} of {origin} is malformed: {exc}") from None
        if entry_origin != origin or index != start + offset:
            raise ProofError(
                f"entry {start + offset} of {origin} claims to be entry {index}"
                f" of {entry_origin}: refused"
            )
        out.append((credential_id, start + offset))
    return out


def _take(delivered: Delivered | None, start: int, end: int) -> list[bytes] | None:
    if delivered is None:
        return None
    lo = start - delivered.start
    if lo < 0 or delivered.start + len(delivered.leaves) < end:
        return None
    return list(delivered.leaves[lo : lo + end - start])


__all__ = ["BATCH", "Delivered", "LogSource", "Replicas"]
