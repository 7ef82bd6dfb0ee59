"""Replicas of a partner's status log, end to end over real SQLite files.

The origin ``DE`` is a real Registry over its own SqliteStore, signing with
its own Ed25519 key; the replicating node has its own SqliteStore and a
``Replicas`` whose trust state pinned DE's descriptor. The log source reads
the origin's store, with knobs to tamper and counters to see what was fetched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import ISSUER
from fedkit import (
    ADMIN,
    DE_DESCRIPTOR,
    DRAFT,
    FR_KEY,
    K1,
    OUTSIDER,
    START,
    FakeClock,
    descriptor,
    entry,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credfed.crypto.envelope import CREDENTIAL_TYPE
from credfed.crypto.keys import SigningKey
from credfed.errors import (
    EquivocationError,
    ForkedOriginError,
    ProofError,
    TrustError,
    UntrustedSignerError,
    ValidationError,
)
from credfed.federation.descriptor import Descriptor
from credfed.federation.evidence import (
    ForkEvidence,
    check_fork_evidence,
    encode_evidence,
)
from credfed.federation.replica import BATCH, Delivered, LogSource, Replicas
from credfed.federation.trust import TrustState
from credfed.models import (
    CredentialDraft,
    Envelope,
    SignedCheckpoint,
    Status,
)
from credfed.registry import Registry
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import sign_checkpoint
from credfed.statuslog.entries import decode_entry
from credfed.statuslog.log import StatusLog, consistency_proof
from credfed.storage.sqlite import SqliteStore
from credfed.testing.factories import make_issuer
from credfed.verification import proof_node_ids

FR_DESCRIPTOR = descriptor(entry(FR_KEY), country="FR", node_id="fr-node-1")


# -- helpers ----------------------------------------------------------------------


@dataclass
class Origin:
    """A real registry (SQLite file, Ed25519 key) publishing a status log."""

    store: SqliteStore
    registry: Registry
    log: StatusLog
    country: str

    @classmethod
    async def open(
        cls, path: Path, clock: FakeClock, *, country: str = "DE", key: SigningKey = K1
    ) -> Origin:
        store = await SqliteStore.open(path)
        await store.add_issuer(
            make_issuer(ISSUER, name="HWK München", sectors=("energy", "construction"))
        )
        log = StatusLog(country, key, clock)
        return cls(store, Registry(store, log, key, country, clock), log, country)

    async def issue(self, count: int = 1) -> list[str]:
        if count == 1:
            receipt = await self.registry.issue(ADMIN, DRAFT)
            return [receipt.credential.credential_id]

        async def batches() -> AsyncIterator[list[CredentialDraft]]:
            for start in range(0, count, 500):
                yield [DRAFT] * min(500, count - start)

        return (await self.registry.bulk_issue(ADMIN, batches())).credential_ids

    async def revoke(self, credential_id: str) -> None:
        await self.registry.revoke(ADMIN, credential_id, "obtained by fraud")

    async def checkpoint(self) -> SignedCheckpoint:
        latest = await self.store.latest_checkpoint()
        assert latest is not None
        return latest

    async def checkpoint_at(self, size: int) -> SignedCheckpoint:
        cp = await self.store.get_checkpoint(size)
        assert cp is not None
        return cp

    async def leaves(self) -> list[bytes]:
        return await self.store.get_log_entries(0, await self.store.log_size())

    async def copy_leaves(self, leaves: Sequence[bytes]) -> None:
        """Append exact leaves and sign a checkpoint over them (a twin, or an
        origin signing whatever it likes)."""
        async with self.store.write() as tx:
            start = await tx.log_size()
            frontier = await tx.get_log_nodes(merkle.frontier_ids(start))
            hashes = [merkle.leaf_hash(x) for x in leaves]
            await tx.append_log(start, leaves, merkle.append_nodes(start, hashes, frontier))
            await self.log.checkpoint(tx)


Tamper = Callable[[int, list[bytes]], list[bytes]]


class StoreSource:
    """A LogSource reading an origin's store, with tamper knobs and counters."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.name = f"source-of-{origin.country}"
        self.checkpoint_calls = 0
        self.entry_calls: list[tuple[int, int]] = []
        self.consistency_calls: list[tuple[int, int]] = []
        #: (start, leaves) -> the leaves served instead.
        self.tamper: Tamper | None = None
        #: Serve the entries of this (other) origin's log instead.
        self.entries_from: Origin | None = None
        #: Corrupt every consistency proof.
        self.bad_proof = False
        #: Serve this checkpoint instead of the latest.
        self.serve: SignedCheckpoint | None = None
        #: Called before each entries request (to look at the node mid catch-up).
        self.on_entries: Callable[[int, int], object] | None = None

    async def checkpoint(self, origin: str) -> Envelope:
        self.checkpoint_calls += 1
        if self.serve is not None:
            return self.serve.envelope
        return (await self.origin.checkpoint()).envelope

    async def entries(self, origin: str, start: int, end: int) -> list[bytes]:
        assert origin == "DE"
        self.entry_calls.append((start, end))
        if self.on_entries is not None:
            result = self.on_entries(start, end)
            if asyncio.iscoroutine(result):
                await result
        source = self.entries_from or self.origin
        leaves = await source.store.get_log_entries(start, end)
        return self.tamper(start, leaves) if self.tamper else leaves

    async def consistency(self, origin: str, old_size: int, new_size: int) -> list[bytes]:
        assert origin == "DE"
        self.consistency_calls.append((old_size, new_size))
        proof = await consistency_proof(self.origin.store, old_size, new_size)
        if self.bad_proof:
            proof = [flip(h) for h in proof] or [bytes(32)]
        return proof


def flip(data: bytes, at: int = -1) -> bytes:
    """``data`` with one bit of the byte at ``at`` flipped."""
    i = at % len(data)
    return data[:i] + bytes([data[i] ^ 1]) + data[i + 1 :]


@dataclass
class Node:
    """The replicating node: its own store and replicas, pinned to DE."""

    store: SqliteStore
    replicas: Replicas
    alarms: list[ForkEvidence] = field(default_factory=list)

    @classmethod
    async def open(
        cls, path: Path, clock: FakeClock, pinned: Sequence[Descriptor] = (DE_DESCRIPTOR,)
    ) -> Node:
        store = await SqliteStore.open(path)
        node = cls(store, Replicas(store, TrustState(pinned), clock))
        node.replicas.on_fork = node._alarm
        return node

    async def _alarm(self, evidence: ForkEvidence) -> None:
        self.alarms.append(evidence)

    async def leaves(self, origin: str = "DE") -> list[bytes]:
        return await self.store.get_replica_entries(
            origin, 0, await self.store.replica_size(origin)
        )

    async def root_of_replica(self, size: int, origin: str = "DE") -> bytes:
        nodes = await self.store.get_replica_nodes(origin, merkle.frontier_ids(size))
        return merkle.root_hash(size, nodes)


@dataclass
class World:
    clock: FakeClock
    origin: Origin
    node: Node
    source: StoreSource
    tmp: Path

    async def apply(
        self,
        checkpoint: SignedCheckpoint | None = None,
        source: LogSource | None = None,
        delivered: Delivered | None = None,
    ) -> bool:
        cp = checkpoint if checkpoint is not None else await self.origin.checkpoint()
        return await self.node.replicas.apply("DE", cp.envelope, source or self.source, delivered)

    async def another_origin(self, name: str, country: str = "DE", key: SigningKey = K1) -> Origin:
        return await Origin.open(self.tmp / f"{name}.db", self.clock, country=country, key=key)

    async def twin(self, shared: int, size: int) -> Origin:
        """Another DE log signed with DE's key: the origin's first ``shared``
        entries, then its own, up to ``size`` entries."""
        twin = await self.another_origin(f"twin-{shared}-{size}")
        if shared:
            await twin.copy_leaves((await self.origin.leaves())[:shared])
        if size > shared:
            await twin.issue(size - shared)
        return twin


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = FakeClock(START)
    origin = await Origin.open(tmp_path / "de.db", clock)
    node = await Node.open(tmp_path / "node.db", clock)
    try:
        yield World(clock, origin, node, StoreSource(origin), tmp_path)
    finally:
        await node.store.close()
        await origin.store.close()


async def assert_unchanged(world: World, size: int, checkpoint: SignedCheckpoint | None) -> None:
    assert await world.node.store.replica_size("DE") == size
    assert await world.node.store.replica_checkpoint("DE") == checkpoint
    latest = world.node.replicas.trust.latest("DE")
    assert (latest.envelope if latest else None) == (checkpoint.envelope if checkpoint else None)
    assert await world.node.store.list_fork_evidence() == []
    assert not world.node.replicas.trust.is_forked("DE")


# -- applying checkpoints -----------------------------------------------------------


async def test_fresh_checkpoint_stores_exactly_the_origins_leaves(world: World) -> None:
    a, b = await world.origin.issue(2)
    await world.origin.issue()
    await world.origin.revoke(a)

    assert await world.apply() is True

    origin_cp = await world.origin.checkpoint()
    assert await world.node.leaves() == await world.origin.leaves()
    assert await world.node.store.replica_size("DE") == await world.origin.store.log_size() == 4
    assert await world.node.store.replica_checkpoint("DE") == origin_cp
    assert world.node.replicas.trust.latest("DE") == origin_cp
    assert await world.node.replicas.checkpoint("DE") == origin_cp
    assert await world.node.root_of_replica(4) == origin_cp.checkpoint.root_hash
    assert await world.node.replicas.watch("DE").wait_beyond(0, 1) == 4

    # The newest entry of a revoked credential is its revocation, proven.
    read = await world.node.store.get_replica_proof("DE", a, proof_node_ids)
    assert read is not None
    assert read.index == 3
    assert read.checkpoint == origin_cp
    entry_a = decode_entry(read.leaf)
    assert (entry_a.credential_id, entry_a.state.status) == (a, Status.REVOKED)
    proof = merkle.inclusion_proof(read.index, 4, read.nodes)
    merkle.verify_inclusion(
        merkle.leaf_hash(read.leaf), 3, 4, proof, origin_cp.checkpoint.root_hash
    )
    read_b = await world.node.store.get_replica_proof("DE", b, proof_node_ids)
    assert read_b is not None
    assert read_b.index == 1
    assert decode_entry(read_b.leaf).state.status is Status.ACTIVE


async def test_revoke_after_apply_moves_the_replica_proof_to_the_newest_entry(world: World) -> None:
    (cid,) = await world.origin.issue()
    assert await world.apply() is True
    first = await world.node.store.get_replica_proof("DE", cid, proof_node_ids)
    assert first is not None
    assert (first.index, decode_entry(first.leaf).state.status) == (0, Status.ACTIVE)

    await world.origin.revoke(cid)
    assert await world.apply() is True
    read = await world.node.store.get_replica_proof("DE", cid, proof_node_ids)
    assert read is not None
    assert (read.index, decode_entry(read.leaf).state.status) == (1, Status.REVOKED)
    assert read.checkpoint == await world.origin.checkpoint()


@pytest.mark.parametrize(
    ("steps", "entry_calls", "consistency_calls"),
    [
        # (entries issued (+n) or revoked (-1) before each apply)
        ([2, -1], [[(0, 2)], [(2, 3)]], [[], [(2, 3)]]),
        ([1, 1, 1], [[(0, 1)], [(1, 2)], [(2, 3)]], [[], [(1, 2)], [(2, 3)]]),
        ([3, 4, -1], [[(0, 3)], [(3, 7)], [(7, 8)]], [[], [(3, 7)], [(7, 8)]]),
        ([2, 0], [[(0, 2)], []], [[], []]),
    ],
    ids=["issue-revoke", "one-by-one", "batches", "nothing-new"],
)
async def test_incremental_applies_fetch_only_the_new_entries(
    world: World,
    steps: list[int],
    entry_calls: list[list[tuple[int, int]]],
    consistency_calls: list[list[tuple[int, int]]],
) -> None:
    issued: list[str] = []
    for step, want_entries, want_consistency in zip(
        steps, entry_calls, consistency_calls, strict=True
    ):
        if step > 0:
            issued += await world.origin.issue(step)
        elif step < 0:
            await world.origin.revoke(issued.pop(0))
        world.source.entry_calls.clear()
        world.source.consistency_calls.clear()
        changed = await world.apply()
        assert changed is (step != 0)
        assert world.source.entry_calls == want_entries
        assert world.source.consistency_calls == want_consistency
        assert await world.node.leaves() == await world.origin.leaves()
        assert await world.node.store.replica_checkpoint("DE") == await world.origin.checkpoint()


async def test_catch_up_beyond_one_batch_links_each_batch_to_the_checkpoint(world: World) -> None:
    assert BATCH == 1000
    await world.origin.issue(2500)
    cp = await world.origin.checkpoint()
    assert cp.checkpoint.tree_size == 2500
    seen: list[tuple[int, SignedCheckpoint | None]] = []

    async def look(start: int, end: int) -> None:
        seen.append(
            (
                await world.node.store.replica_size("DE"),
                await world.node.store.replica_checkpoint("DE"),
            )
        )

    world.source.on_entries = look
    assert await world.apply(cp) is True

    assert world.source.entry_calls == [(0, 1000), (1000, 2000), (2000, 2500)]
    # Intermediate batches are tied to the checkpoint by a consistency proof.
    assert world.source.consistency_calls == [(1000, 2500), (2000, 2500)]
    # Each batch is stored as it is verified, while the next ones are being
    # fetched and checked (a pipeline at most two batches deep); the
    # checkpoint comes with the last.
    starts = [0, 1000, 2000]
    assert all(
        start - 2 * BATCH <= size <= start for (size, _), start in zip(seen, starts, strict=True)
    )
    assert [checkpoint for _, checkpoint in seen] == [None, None, None]
    assert await world.node.store.replica_checkpoint("DE") == cp
    assert await world.node.leaves() == await world.origin.leaves()
    assert await world.node.root_of_replica(2500) == cp.checkpoint.root_hash


async def test_interrupted_catch_up_keeps_verified_batches_and_resumes(world: World) -> None:
    await world.origin.issue(1500)
    await world.origin.issue(1000)
    cp1500, cp2500 = await world.origin.checkpoint_at(1500), await world.origin.checkpoint()

    def forge_2100(start: int, leaves: list[bytes]) -> list[bytes]:
        return [
            x.replace(b'"active"', b'"revoked"') if start + i == 2100 else x
            for i, x in enumerate(leaves)
        ]

    world.source.tamper = forge_2100
    with pytest.raises(ProofError, match="do not rebuild the root"):
        await world.apply(cp2500)
    # Two verified batches are kept, but no checkpoint covers them yet (rule 3).
    await assert_unchanged(world, 2000, None)

    world.source.tamper = None
    world.source.entry_calls.clear()
    # A checkpoint within what is held needs no fetch.
    assert await world.apply(cp1500) is True
    assert world.source.entry_calls == []
    assert await world.node.store.replica_checkpoint("DE") == cp1500
    assert await world.node.store.replica_size("DE") == 2000

    world.source.consistency_calls.clear()
    assert await world.apply(cp2500) is True
    assert world.source.entry_calls == [(2000, 2500)]
    assert world.source.consistency_calls == [(1500, 2500)]
    assert await world.node.leaves() == await world.origin.leaves()
    assert await world.node.store.replica_checkpoint("DE") == cp2500


class _NoEntries(StoreSource):
    async def entries(self, origin: str, start: int, end: int) -> list[bytes]:
        raise AssertionError(f"fetched entries [{start}, {end}) although they were delivered")


async def test_delivered_entries_are_used_without_fetching(world: World) -> None:
    source = _NoEntries(world.origin)
    await world.origin.issue(3)
    leaves = await world.origin.leaves()
    assert await world.apply(source=source, delivered=Delivered(0, leaves)) is True

    (cid,) = await world.origin.issue()
    await world.origin.revoke(cid)
    leaves = await world.origin.leaves()
    # A stream may deliver more than is new: only what is missing is taken.
    assert await world.apply(source=source, delivered=Delivered(2, leaves[2:])) is True
    assert await world.node.leaves() == leaves
    assert await world.node.store.replica_checkpoint("DE") == await world.origin.checkpoint()


async def test_delivered_entries_that_do_not_cover_the_gap_are_fetched(world: World) -> None:
    await world.origin.issue(2)
    assert await world.apply() is True
    await world.origin.issue(3)
    leaves = await world.origin.leaves()
    world.source.entry_calls.clear()
    # The stream delivered only the last entries: [2, 5) must be fetched.
    assert await world.apply(delivered=Delivered(4, leaves[4:])) is True
    assert world.source.entry_calls == [(2, 5)]
    assert await world.node.leaves() == leaves


async def test_delivered_forged_entries_are_refused(world: World) -> None:
    await world.origin.issue(3)
    leaves = await world.origin.leaves()
    forged = [leaves[0], leaves[1].replace(b'"active"', b'"revoked"'), leaves[2]]
    with pytest.raises(ProofError):
        await world.apply(delivered=Delivered(0, forged))
    await assert_unchanged(world, 0, None)
    assert world.source.entry_calls == []


# -- forged data ------------------------------------------------------------------


def _at(index: int, change: Callable[[bytes], bytes]) -> Tamper:
    def tamper(start: int, leaves: list[bytes]) -> list[bytes]:
        return [change(x) if start + i == index else x for i, x in enumerate(leaves)]

    return tamper


def _flip_id_bit(leaf: bytes) -> bytes:
    # A letter or digit of the credential id: the leaf still parses.
    return flip(leaf, leaf.index(b'"credential_id":"') + len(b'"credential_id":"') + 5)


def _swap(i: int, j: int) -> Tamper:
    def tamper(start: int, leaves: list[bytes]) -> list[bytes]:
        out = list(leaves)
        out[i - start], out[j - start] = out[j - start], out[i - start]
        return out

    return tamper


def _drop_last(start: int, leaves: list[bytes]) -> list[bytes]:
    return leaves[:-1]


TAMPERS: dict[str, Tamper] = {
    "one bit of a leaf": _at(3, _flip_id_bit),
    "last byte of a leaf": _at(4, flip),
    "status rewritten": _at(3, lambda x: x.replace(b'"active"', b'"revoked"')),
    "leaf moved to another index": _swap(3, 4),
    "leaf duplicated": lambda start, leaves: [*leaves[:-1], leaves[-2]],
    "an entry missing": _drop_last,
    "malformed leaf": _at(3, lambda x: b"not json"),
}


@pytest.mark.parametrize("held", [0, 2], ids=["fresh", "incremental"])
@pytest.mark.parametrize("tamper", list(TAMPERS), ids=list(TAMPERS))
async def test_forged_entries_are_refused_and_nothing_is_stored(
    world: World, tamper: str, held: int
) -> None:
    if held:
        await world.origin.issue(held)
        assert await world.apply() is True
    before = await world.node.store.replica_checkpoint("DE")
    await world.origin.issue(5 - held)
    world.source.tamper = TAMPERS[tamper]
    with pytest.raises(ProofError):
        await world.apply()
    await assert_unchanged(world, held, before)

    world.source.tamper = None
    assert await world.apply() is True
    assert await world.node.leaves() == await world.origin.leaves()


async def test_entries_of_another_origin_are_refused(world: World) -> None:
    fr = await world.another_origin("fr", country="FR", key=FR_KEY)
    try:
        await fr.issue(3)
        await world.origin.issue(3)
        world.source.entries_from = fr
        with pytest.raises(ProofError, match="of FR"):
            await world.apply()
        await assert_unchanged(world, 0, None)
    finally:
        await fr.store.close()


async def _signed_log(world: World, name: str, leaves: Sequence[bytes]) -> Origin:
    log = await world.another_origin(name)
    await log.copy_leaves(leaves)
    return log


@pytest.mark.parametrize("case", ["another origin", "moved"])
async def test_leaves_signed_by_the_origin_but_misplaced_are_refused(
    world: World, case: str
) -> None:
    """The Merkle proofs hold (DE signed this very tree), yet a leaf naming
    another log or another position is refused."""
    fr = await world.another_origin("fr", country="FR", key=FR_KEY)
    try:
        await fr.issue(3)
        await world.origin.issue(3)
        de = await world.origin.leaves()
        leaves = await fr.leaves() if case == "another origin" else [de[1], de[0], de[2]]
        rogue = await _signed_log(world, "rogue", leaves)
        try:
            with pytest.raises(ProofError, match="claims to be entry"):
                await world.apply(await rogue.checkpoint(), StoreSource(rogue))
            await assert_unchanged(world, 0, None)
        finally:
            await rogue.store.close()
    finally:
        await fr.store.close()


def _resigned(
    key: SigningKey, at: timedelta = timedelta(0)
) -> Callable[[SignedCheckpoint], Envelope]:
    def make(cp: SignedCheckpoint) -> Envelope:
        body = dataclasses.replace(cp.checkpoint, timestamp=cp.checkpoint.timestamp + at)
        return sign_checkpoint(key, body).envelope

    return make


UNTRUSTED: dict[str, Callable[[SignedCheckpoint], Envelope]] = {
    "an unpinned key": _resigned(OUTSIDER),
    "another origin's key": _resigned(FR_KEY),
    "DE's key before its validity": _resigned(K1, timedelta(days=-365)),
    "a bad signature": lambda cp: dataclasses.replace(
        cp.envelope, signature=flip(cp.envelope.signature)
    ),
    "another payload type": lambda cp: dataclasses.replace(
        cp.envelope, payload_type=CREDENTIAL_TYPE
    ),
}


@pytest.mark.parametrize("held", [0, 2], ids=["fresh", "incremental"])
@pytest.mark.parametrize("how", list(UNTRUSTED), ids=list(UNTRUSTED))
async def test_checkpoint_not_signed_by_the_origin_is_refused(
    world: World, how: str, held: int
) -> None:
    if held:
        await world.origin.issue(held)
        assert await world.apply() is True
    before = await world.node.store.replica_checkpoint("DE")
    await world.origin.issue(3)
    envelope = UNTRUSTED[how](await world.origin.checkpoint())
    world.source.entry_calls.clear()
    with pytest.raises(UntrustedSignerError):
        await world.node.replicas.apply("DE", envelope, world.source)
    assert world.source.entry_calls == []
    await assert_unchanged(world, held, before)


async def test_checkpoint_of_an_unpinned_origin_is_refused(world: World) -> None:
    fr = await world.another_origin("fr", country="FR", key=FR_KEY)
    try:
        await fr.issue(2)
        with pytest.raises(UntrustedSignerError):
            await world.node.replicas.apply("FR", (await fr.checkpoint()).envelope, StoreSource(fr))
        assert await world.node.store.replica_size("FR") == 0
    finally:
        await fr.store.close()


# -- one tree -----------------------------------------------------------------------


async def test_bad_consistency_proof_of_the_same_tree_is_no_fork(world: World) -> None:
    await world.origin.issue(3)
    assert await world.apply() is True
    before = await world.node.store.replica_checkpoint("DE")
    await world.origin.issue(4)
    world.source.bad_proof = True
    world.source.entry_calls.clear()
    with pytest.raises(ProofError, match="not shown consistent"):
        await world.apply()
    # The source's tree was rebuilt to look for a fork, and is the same tree.
    assert world.source.entry_calls == [(0, 7)]
    assert world.node.alarms == []
    await assert_unchanged(world, 3, before)

    world.source.bad_proof = False
    assert await world.apply() is True
    assert await world.node.leaves() == await world.origin.leaves()


async def test_bad_proof_with_entries_not_matching_the_checkpoint_is_no_fork(
    world: World,
) -> None:
    """A lying source (bad proof and forged entries) proves nothing about the origin."""
    await world.origin.issue(3)
    assert await world.apply() is True
    before = await world.node.store.replica_checkpoint("DE")
    await world.origin.issue(4)
    world.source.bad_proof = True
    world.source.tamper = _at(1, _flip_id_bit)
    with pytest.raises(ProofError):
        await world.apply()
    await assert_unchanged(world, 3, before)


async def test_rollback_to_an_older_genuine_checkpoint_changes_nothing(world: World) -> None:
    await world.origin.issue(2)
    old = await world.origin.checkpoint()
    await world.origin.issue(3)
    latest = await world.origin.checkpoint()
    assert await world.apply(latest) is True

    world.source.entry_calls.clear()
    world.source.consistency_calls.clear()
    assert await world.apply(old) is False
    assert await world.apply(latest) is False  # the same one again: no news
    assert world.source.entry_calls == world.source.consistency_calls == []
    await assert_unchanged(world, 5, latest)
    assert world.node.alarms == []


async def test_same_size_with_a_fresher_timestamp_replaces_the_checkpoint(world: World) -> None:
    await world.origin.issue(3)
    cp = await world.origin.checkpoint()
    assert await world.apply(cp) is True

    later = sign_checkpoint(
        K1,
        dataclasses.replace(cp.checkpoint, timestamp=cp.checkpoint.timestamp + timedelta(hours=1)),
    )
    assert await world.apply(later) is True
    assert await world.node.store.replica_checkpoint("DE") == later
    assert world.node.replicas.trust.latest("DE") == later

    # The older one of the same size is no news now.
    assert await world.apply(cp) is False
    assert await world.node.store.replica_checkpoint("DE") == later

    # And the log goes on from there.
    await world.origin.issue()
    assert await world.apply() is True
    assert await world.node.store.replica_checkpoint("DE") == await world.origin.checkpoint()


async def test_concurrent_applies_of_one_checkpoint_store_it_once(world: World) -> None:
    await world.origin.issue(4)
    results = await asyncio.gather(world.apply(), world.apply())
    assert sorted(results) == [False, True]
    assert world.source.entry_calls == [(0, 4)]
    assert await world.node.leaves() == await world.origin.leaves()


# -- equivocation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "shared", "twin_size"),
    [(3, 2, 3), (3, 2, 5), (3, 0, 4), (5, 2, 3), (5, 0, 2)],
    ids=["same-size", "twin-larger", "twin-larger-nothing-shared", "twin-smaller", "twin-tiny"],
)
async def test_a_twin_log_signed_with_the_same_key_is_a_proven_fork(
    world: World, held: int, shared: int, twin_size: int
) -> None:
    await world.origin.issue(held)
    ours = await world.origin.checkpoint()
    assert await world.apply(ours) is True
    twin = await world.twin(shared, twin_size)
    try:
        theirs = await twin.checkpoint()
        assert theirs.checkpoint.tree_size == twin_size
        source = StoreSource(twin)
        with pytest.raises(EquivocationError) as info:
            await world.apply(theirs, source)
        evidence = info.value.evidence

        # The evidence convinces a third party and names both checkpoints.
        first, second = check_fork_evidence(evidence, world.node.replicas.trust.keys_for("DE"))
        assert {first.envelope, second.envelope} == {ours.envelope, theirs.envelope}
        assert first.checkpoint.tree_size <= second.checkpoint.tree_size
        # Kept in the store, alarmed once.
        assert await world.node.store.list_fork_evidence() == [("DE", encode_evidence(evidence))]
        assert world.node.alarms == [evidence]
        assert world.node.replicas.trust.is_forked("DE")
        # Nothing of the twin was stored.
        assert await world.node.store.replica_checkpoint("DE") == ours
        assert await world.node.leaves() == (await world.origin.leaves())[:held]
        if twin_size > held:
            # Proven by rebuilding the twin's tree from its own entries.
            assert source.entry_calls == [(0, twin_size)]
        else:
            # Proven with our replica's own root and proof.
            assert source.entry_calls == source.consistency_calls == []

        # From now on the origin's data is refused, from anyone.
        await world.origin.issue()
        with pytest.raises(ForkedOriginError):
            await world.apply()
        with pytest.raises(ForkedOriginError):
            await world.apply(theirs, source)
        assert len(world.node.alarms) == 1
        assert len(await world.node.store.list_fork_evidence()) == 1
    finally:
        await twin.store.close()


async def test_a_twin_extending_what_we_hold_is_no_fork(world: World) -> None:
    """Only two checkpoints that cannot both be true are a fork."""
    await world.origin.issue(3)
    assert await world.apply() is True
    twin = await world.twin(3, 6)
    try:
        assert await world.apply(await twin.checkpoint(), StoreSource(twin)) is True
        assert world.node.alarms == []
        assert await world.node.leaves() == await twin.leaves()
    finally:
        await twin.store.close()


# -- fork evidence from peers ----------------------------------------------------------


async def _fork_evidence(world: World) -> ForkEvidence:
    """Evidence found by the world's node (a same-size twin)."""
    await world.origin.issue(3)
    assert await world.apply() is True
    twin = await world.twin(1, 3)
    try:
        with pytest.raises(EquivocationError) as info:
            await world.apply(await twin.checkpoint(), StoreSource(twin))
    finally:
        await twin.store.close()
    return info.value.evidence


async def test_record_fork_from_a_peer(world: World) -> None:
    evidence = await _fork_evidence(world)
    peer = await Node.open(world.tmp / "peer.db", world.clock)
    try:
        assert await peer.replicas.record_fork(encode_evidence(evidence)) is True
        assert peer.replicas.trust.is_forked("DE")
        assert peer.alarms == [evidence]
        assert await peer.store.list_fork_evidence() == [("DE", encode_evidence(evidence))]

        assert await peer.replicas.record_fork(encode_evidence(evidence)) is False
        assert peer.alarms == [evidence]
        assert len(await peer.store.list_fork_evidence()) == 1

        await world.origin.issue()
        with pytest.raises(ForkedOriginError):
            await peer.replicas.apply(
                "DE", (await world.origin.checkpoint()).envelope, world.source
            )
    finally:
        await peer.store.close()


def _same_twice(cp: SignedCheckpoint) -> ForkEvidence:
    return ForkEvidence("DE", cp.envelope, cp.envelope, (), cp.checkpoint.root_hash)


def _outsider_pair(cp: SignedCheckpoint) -> ForkEvidence:
    other = sign_checkpoint(OUTSIDER, dataclasses.replace(cp.checkpoint, root_hash=bytes(32)))
    return ForkEvidence("DE", cp.envelope, other.envelope, (), bytes(32))


def _consistent_pair(cp: SignedCheckpoint) -> ForkEvidence:
    later = sign_checkpoint(
        K1, dataclasses.replace(cp.checkpoint, timestamp=cp.checkpoint.timestamp + timedelta(1))
    )
    return ForkEvidence("DE", cp.envelope, later.envelope, (), cp.checkpoint.root_hash)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda cp: b"garbage", ValidationError),
        (lambda cp: b"{}", ValidationError),
        (lambda cp: encode_evidence(_same_twice(cp)) + b" ", ValidationError),
        (
            lambda cp: encode_evidence(dataclasses.replace(_same_twice(cp), origin="FR")),
            ValidationError,
        ),
        (lambda cp: encode_evidence(_same_twice(cp)), TrustError),
        (lambda cp: encode_evidence(_consistent_pair(cp)), TrustError),
        (lambda cp: encode_evidence(_outsider_pair(cp)), TrustError),
    ],
    ids=[
        "garbage",
        "empty object",
        "not canonical",
        "unpinned origin",
        "two identical checkpoints",
        "two consistent checkpoints",
        "signed by an outsider",
    ],
)
async def test_record_fork_refuses_what_proves_nothing(
    world: World, make: Callable[[SignedCheckpoint], bytes], error: type[Exception]
) -> None:
    await world.origin.issue(2)
    assert await world.apply() is True
    with pytest.raises(error):
        await world.node.replicas.record_fork(make(await world.origin.checkpoint()))
    assert not world.node.replicas.trust.is_forked("DE")
    assert world.node.alarms == []
    assert await world.node.store.list_fork_evidence() == []
    await world.origin.issue()
    assert await world.apply() is True


# -- restart ---------------------------------------------------------------------------


async def test_restart_restores_the_latest_checkpoint(world: World) -> None:
    await world.origin.issue()
    await world.origin.issue(2)
    cp = await world.origin.checkpoint()
    assert await world.apply(cp) is True
    path = world.node.store.path
    await world.node.store.close()

    store = await SqliteStore.open(path)
    try:
        replicas = await Replicas.load(store, [DE_DESCRIPTOR], world.clock)
        assert replicas.trust.latest("DE") == cp
        assert await replicas.watch("DE").wait_beyond(0, 1) == 3
        # An older checkpoint is still a rollback; the next one is incremental.
        assert (
            await replicas.apply("DE", (await world.origin.checkpoint_at(1)).envelope, world.source)
            is False
        )
        await world.origin.issue(2)
        world.source.entry_calls.clear()
        world.source.consistency_calls.clear()
        assert await replicas.apply("DE", (await world.origin.checkpoint()).envelope, world.source)
        assert world.source.entry_calls == [(3, 5)]
        assert world.source.consistency_calls == [(3, 5)]

        # A node that no longer pins DE restores nothing of it.
        bare = await Replicas.load(store, [FR_DESCRIPTOR], world.clock)
        assert bare.trust.latest("DE") is None
    finally:
        await store.close()


async def test_restart_restores_the_fork(world: World) -> None:
    evidence = await _fork_evidence(world)
    path = world.node.store.path
    await world.node.store.close()

    store = await SqliteStore.open(path)
    try:
        replicas = await Replicas.load(store, [DE_DESCRIPTOR], world.clock)
        assert replicas.trust.is_forked("DE")
        assert replicas.trust.evidence("DE") == evidence
        with pytest.raises(ForkedOriginError):
            await replicas.apply("DE", (await world.origin.checkpoint()).envelope, world.source)
        assert await replicas.record_fork(encode_evidence(evidence)) is False
    finally:
        await store.close()


# -- property -----------------------------------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("issue"), st.integers(1, 5)),
        st.tuples(st.just("revoke"), st.integers(0, 100)),
        st.tuples(st.just("apply"), st.just(0)),
        st.tuples(st.just("deliver"), st.just(0)),
    ),
    max_size=12,
)


async def _replay(ops: list[tuple[str, int]], tmp: Path) -> None:
    clock = FakeClock(START)
    origin = await Origin.open(tmp / "de.db", clock)
    node = await Node.open(tmp / "node.db", clock)
    source = StoreSource(origin)
    active: list[str] = []
    try:
        for op, arg in [*ops, ("apply", 0)]:
            clock.advance(1)
            if op == "issue":
                active += await origin.issue(arg)
            elif op == "revoke" and active:
                await origin.revoke(active.pop(arg % len(active)))
            elif op in ("apply", "deliver") and await origin.store.latest_checkpoint():
                cp = await origin.checkpoint()
                delivered = Delivered(0, await origin.leaves()) if op == "deliver" else None
                await node.replicas.apply("DE", cp.envelope, source, delivered)
            # The invariant, at every step.
            size = await node.store.replica_size("DE")
            assert await node.leaves() == (await origin.leaves())[:size]
            held = await node.store.replica_checkpoint("DE")
            if held is not None:
                n = held.checkpoint.tree_size
                assert n <= size
                assert await node.root_of_replica(n) == held.checkpoint.root_hash
                assert held == await origin.store.get_checkpoint(n)
        # At the end the replica has caught up and tells every status.
        assert await node.leaves() == await origin.leaves()
        for cid in active:
            read = await node.store.get_replica_proof("DE", cid, proof_node_ids)
            credential = await origin.store.get_credential(cid)
            assert read is not None
            assert credential is not None
            assert read.index == credential.last_entry_index
            assert decode_entry(read.leaf).state.status is credential.state.status
    finally:
        await node.store.close()
        await origin.store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_replica_is_always_a_verified_prefix_of_the_origin(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_replay(ops, Path(tmp)))
