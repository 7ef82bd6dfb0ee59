"""The replicator over fake links (pure logic; the store and signatures are
real): anti-entropy repairs what a stream missed, lookups are routed direct
first then through relays, relayed lookups go one hop only, fork evidence is
handed to every link once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_replica import StoreSource, World
from test_replica import world as world  # noqa: PLC0414 - re-export the fixture

from credfed.errors import (
    EquivocationError,
    NotFoundError,
    PreconditionError,
    UnavailableError,
)
from credfed.federation.crossborder import LookupAnswer
from credfed.federation.evidence import ForkEvidence
from credfed.federation.replica import Delivered
from credfed.federation.sync import Replicator
from credfed.models import Envelope
from credfed.verification import HolderAttribute

ATTR = HolderAttribute(family_name="Novák")
ANSWER = LookupAnswer(Envelope(b"{}", "t", "k", b"s"), 0, b"leaf", [], Envelope(b"", "", "", b""))


class FakeLink(StoreSource):
    """A partner link: the log from the origin's store; a subscription that
    never delivers anything (a stream that silently broke)."""

    def __init__(self, world: World, name: str, lookup: object = UnavailableError("down")):
        super().__init__(world.origin)
        self.name = name
        self._lookup = lookup
        self.lookups = 0
        self.reports: list[bytes] = []
        self.closed = False

    async def subscribe(
        self, origin: str, from_index: int
    ) -> AsyncIterator[tuple[Envelope, Delivered]]:
        await asyncio.Event().wait()  # never yields
        yield  # type: ignore[misc]  # pragma: no cover - makes this an async generator

    async def descriptor(self, origin: str) -> Envelope:
        raise UnavailableError("no descriptor here")

    async def lookup(self, credential_id: str, attribute: HolderAttribute) -> LookupAnswer:
        self.lookups += 1
        if isinstance(self._lookup, Exception):
            raise self._lookup
        assert isinstance(self._lookup, LookupAnswer)
        return self._lookup

    async def report_fork(self, evidence: bytes) -> bool:
        self.reports.append(evidence)
        return True

    async def recognition_rules(self, country: str) -> list[Envelope]:
        return []

    async def close(self) -> None:
        self.closed = True


def _replicator(world: World, *links: FakeLink) -> Replicator:
    return Replicator(
        world.node.replicas,
        {link.name: link for link in links},
        "FR",
        world.clock,
        interval=0.05,
        save_descriptor=lambda envelope: None,
    )


async def test_anti_entropy_repairs_what_a_broken_stream_missed(world: World) -> None:
    link = FakeLink(world, "DE")
    replicator = _replicator(world, link)
    replicator.start()
    try:
        await world.origin.issue(3)
        ids = await world.origin.issue(1)
        await world.origin.revoke(ids[0])
        size = (await world.origin.checkpoint()).checkpoint.tree_size

        async def caught_up() -> bool:
            return await world.node.store.replica_size("DE") == size

        for _ in range(100):
            if await caught_up():
                break
            await asyncio.sleep(0.02)
        assert await caught_up()
        assert await world.node.leaves() == await world.origin.leaves()
        (state,) = replicator.states()
        assert state.origin == "DE" and state.via == "DE" and state.last_error is None
    finally:
        await replicator.stop()
    assert link.closed


async def test_lookups_go_direct_first_then_through_relays(world: World) -> None:
    direct = FakeLink(world, "DE", lookup=UnavailableError("down"))
    relay = FakeLink(world, "AT", lookup=ANSWER)
    replicator = _replicator(world, direct, relay)
    assert await replicator.lookup("DE", "DE-X", ATTR) is ANSWER
    assert (direct.lookups, relay.lookups) == (1, 1)
    # A definite NOT_FOUND from the origin is the answer: no relay is asked.
    direct._lookup = NotFoundError("no such credential")
    with pytest.raises(NotFoundError):
        await replicator.lookup("DE", "DE-X", ATTR)
    assert relay.lookups == 1
    # Nobody answers: UNAVAILABLE.
    direct._lookup = UnavailableError("down")
    relay._lookup = PreconditionError("AT has no link to DE")
    with pytest.raises(UnavailableError):
        await replicator.lookup("DE", "DE-X", ATTR)


async def test_relayed_lookups_are_forwarded_over_a_direct_link_only(world: World) -> None:
    relay = FakeLink(world, "AT", lookup=ANSWER)
    replicator = _replicator(world, relay)
    with pytest.raises(PreconditionError, match="no link to DE"):
        await replicator.forward_lookup("DE", "DE-X", ATTR)
    assert relay.lookups == 0  # never passed on a second hop
    assert await replicator.forward_lookup("AT", "AT-X", ATTR) is ANSWER


async def test_fork_evidence_goes_to_every_link_once(world: World, tmp_path: Path) -> None:
    a, b = FakeLink(world, "AT"), FakeLink(world, "PL")
    replicator = _replicator(world, a, b)
    alarms: list[ForkEvidence] = []

    async def alarm(evidence: ForkEvidence) -> None:
        alarms.append(evidence)

    replicator.alarms.append(alarm)
    await world.origin.issue(1)
    await world.apply()
    twin = await world.twin(0, 1)  # same size, another tree, DE's key
    with pytest.raises(EquivocationError):
        await world.node.replicas.apply("DE", (await twin.checkpoint()).envelope, StoreSource(twin))
    await twin.store.close()
    assert len(alarms) == 1 and alarms[0].origin == "DE"
    assert len(a.reports) == len(b.reports) == 1
    await replicator.sync_once()  # already handed on: not sent again
    assert len(a.reports) == len(b.reports) == 1
