"""Cross-border verify, end to end over real SQLite files and real signatures.

The origin ``DE`` is a real Registry and Verifier over its own SqliteStore;
the asking node has its own SqliteStore, a ``Replicas`` that pinned DE and a
``CrossBorder`` whose lookup asks DE's Verifier (with tamper knobs). Time is
a controllable clock; the record cache's monotonic time is faked too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ISSUER
from fedkit import ADMIN, DE_DESCRIPTOR, DRAFT, FR_KEY, K1, OUTSIDER, START, FakeClock

from credfed import ids
from credfed.crypto.envelope import CREDENTIAL_TYPE, sign_envelope
from credfed.crypto.keys import SigningKey
from credfed.errors import (
    NotFoundError,
    PreconditionError,
    ProofError,
    TrustError,
    UnavailableError,
    UntrustedSignerError,
)
from credfed.federation import crossborder
from credfed.federation.crossborder import CrossBorder, LookupAnswer
from credfed.federation.evidence import ForkEvidence, encode_evidence
from credfed.federation.replica import Replicas
from credfed.federation.trust import TrustState
from credfed.models import (
    Checkpoint,
    Envelope,
    SignedCheckpoint,
    Status,
)
from credfed.registry import Registry
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import decode_checkpoint, sign_checkpoint
from credfed.statuslog.log import StatusLog, consistency_proof
from credfed.storage.sqlite import SqliteStore
from credfed.testing.factories import make_issuer
from credfed.verification import (
    NOT_FOUND_MESSAGE,
    HolderAttribute,
    StatusSource,
    Verification,
    Verifier,
)

BIRTH = date(1994, 3, 17)  # the birth date of conftest's draft
RIGHT = HolderAttribute(birth_date=BIRTH)
WRONG = HolderAttribute(birth_date=date(1994, 3, 18))
TTL = 60.0
MAX_STALENESS = 3600.0


# -- helpers ----------------------------------------------------------------------


class FakeMonotonic:
    """Stands in for ``time`` inside crossborder only (the event loop keeps
    the real monotonic clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@dataclass
class Origin:
    store: SqliteStore
    registry: Registry
    verifier: Verifier

    async def issue(self) -> str:
        return (await self.registry.issue(ADMIN, DRAFT)).credential.credential_id

    async def revoke(self, credential_id: str) -> None:
        await self.registry.revoke(ADMIN, credential_id, "obtained by fraud")

    async def checkpoint(self) -> SignedCheckpoint:
        return await self.verifier.checkpoint()


class OriginSource:
    """A LogSource reading the origin's store."""

    name = "DE"

    def __init__(self, origin: Origin) -> None:
        self.origin = origin

    async def checkpoint(self, origin: str) -> Envelope:
        return (await self.origin.checkpoint()).envelope

    async def entries(self, origin: str, start: int, end: int) -> list[bytes]:
        return await self.origin.store.get_log_entries(start, end)

    async def consistency(self, origin: str, old_size: int, new_size: int) -> list[bytes]:
        return await consistency_proof(self.origin.store, old_size, new_size)


def answer_of(v: Verification) -> LookupAnswer:
    return LookupAnswer(
        v.signed_record, v.entry_index, v.leaf, list(v.proof), v.checkpoint.envelope
    )


class OriginLookup:
    """The origin's answer, as the network would bring it."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.calls: list[str] = []
        #: Changes the answer before it is returned.
        self.tamper: Callable[[LookupAnswer], LookupAnswer] | None = None
        #: The origin answers whatever holder attribute it is given.
        self.lenient = False
        #: No route answers.
        self.down = False

    async def __call__(
        self, country: str, credential_id: str, attribute: HolderAttribute
    ) -> LookupAnswer:
        assert country == "DE"
        self.calls.append(credential_id)
        if self.down:
            raise UnavailableError("DE did not answer")
        v = await self.origin.verifier.verify(credential_id, RIGHT if self.lenient else attribute)
        answer = answer_of(v)
        return self.tamper(answer) if self.tamper else answer


@dataclass
class World:
    clock: FakeClock
    mono: FakeMonotonic
    origin: Origin
    node: SqliteStore
    replicas: Replicas
    lookup: OriginLookup
    cross: CrossBorder = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.cross = self.crossborder()

    async def sync(self) -> bool:
        """Bring the node's replica of DE up to the origin's checkpoint."""
        cp = await self.origin.checkpoint()
        return await self.replicas.apply("DE", cp.envelope, OriginSource(self.origin))

    def crossborder(self, *, ttl: float = TTL, max_records: int = 100) -> CrossBorder:
        return CrossBorder(
            self.replicas,
            self.node,
            self.lookup,
            self.clock,
            record_ttl=ttl,
            max_records=max_records,
            max_staleness=lambda origin: MAX_STALENESS if origin == "DE" else 0.0,
        )


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    mono = FakeMonotonic()
    monkeypatch.setattr(crossborder, "time", SimpleNamespace(monotonic=mono.monotonic))
    clock = FakeClock(START)
    store = await SqliteStore.open(tmp_path / "de.db")
    node = await SqliteStore.open(tmp_path / "node.db")
    try:
        await store.add_issuer(
            make_issuer(ISSUER, name="HWK München", sectors=("energy", "construction"))
        )
        registry = Registry(store, StatusLog("DE", K1, clock), K1, "DE", clock)
        origin = Origin(store, registry, Verifier(store, clock))
        replicas = Replicas(node, TrustState([DE_DESCRIPTOR]), clock)
        lookup = OriginLookup(origin)
        yield World(clock, mono, origin, node, replicas, lookup)
    finally:
        await node.close()
        await store.close()


def assert_proven(v: Verification) -> None:
    """The answer carries what an employer needs to check it independently."""
    cp = v.checkpoint.checkpoint
    merkle.verify_inclusion(
        merkle.leaf_hash(v.leaf), v.entry_index, cp.tree_size, v.proof, cp.root_hash
    )
    assert decode_checkpoint(v.checkpoint.envelope.payload) == cp


# -- answers --------------------------------------------------------------------------


async def test_first_verify_asks_the_origin_then_the_record_is_cached(world: World) -> None:
    await world.origin.issue()
    cid = await world.origin.issue()

    v = await world.cross.verify(cid, RIGHT)
    assert world.lookup.calls == [cid]
    assert v.signature_checked is True
    assert v.record_cached is False
    assert v.source is StatusSource.ORIGIN
    assert v.credential_id == cid
    assert (v.record.credential_id, v.record.origin, v.record.issuer_id) == (cid, "DE", ISSUER)
    assert v.record.holder.birth_date == BIRTH
    assert v.record.holder.family_name == "Novák"
    assert v.record.valid_until == date(2039, 6, 30)
    assert v.state.status is Status.ACTIVE
    assert v.status is Status.ACTIVE
    assert v.entry_index == 1
    assert v.checkpoint == await world.origin.checkpoint()
    assert v.data_age_seconds == 0
    assert_proven(v)
    assert world.cross.cached_records() == 1

    again = await world.cross.verify(cid, HolderAttribute(family_name="NOVÁK "))
    assert world.lookup.calls == [cid]  # not asked again
    assert again.record_cached is True
    assert again.source is StatusSource.CACHED_RECORD
    assert again.status is Status.ACTIVE
    assert again.signature_checked is True
    assert again.record == v.record
    assert_proven(again)


async def test_a_replica_as_fresh_as_the_answer_is_used(world: World) -> None:
    cid = await world.origin.issue()
    await world.origin.issue()
    assert await world.sync() is True

    v = await world.cross.verify(cid, RIGHT)
    assert v.source is StatusSource.REPLICA
    assert (v.status, v.record_cached, v.entry_index) == (Status.ACTIVE, False, 0)
    assert_proven(v)
    again = await world.cross.verify(cid, RIGHT)
    assert (again.source, again.record_cached) == (StatusSource.REPLICA, True)
    assert world.lookup.calls == [cid]


async def test_a_newer_replica_entry_overrides_a_cached_answer(world: World) -> None:
    cid = await world.origin.issue()
    assert (await world.cross.verify(cid, RIGHT)).status is Status.ACTIVE

    await world.origin.revoke(cid)
    assert await world.sync() is True
    v = await world.cross.verify(cid, RIGHT)
    assert world.lookup.calls == [cid]  # the record came from the cache
    assert v.record_cached is True
    assert v.source is StatusSource.REPLICA
    assert v.state.status is Status.REVOKED
    assert v.status is Status.REVOKED
    assert v.entry_index == 1
    assert v.checkpoint == await world.replicas.checkpoint("DE")
    assert_proven(v)


async def test_a_newer_answer_overrides_an_older_replica(world: World) -> None:
    cid = await world.origin.issue()
    assert await world.sync() is True
    await world.origin.revoke(cid)  # the replica has not seen this yet

    v = await world.cross.verify(cid, RIGHT)
    assert v.source is StatusSource.ORIGIN
    assert (v.status, v.entry_index) == (Status.REVOKED, 1)
    assert_proven(v)


# -- what is refused ---------------------------------------------------------------------


def _resign_record(
    key: SigningKey, change: Callable[[bytes], bytes] = lambda p: p
) -> Callable[[LookupAnswer, LookupAnswer], LookupAnswer]:
    def tamper(a: LookupAnswer, other: LookupAnswer) -> LookupAnswer:
        record = sign_envelope(key, CREDENTIAL_TYPE, change(a.signed_record.payload))
        return dataclasses.replace(a, signed_record=record)

    return tamper


def _resign_checkpoint(key: SigningKey) -> Callable[[LookupAnswer, LookupAnswer], LookupAnswer]:
    def tamper(a: LookupAnswer, other: LookupAnswer) -> LookupAnswer:
        cp = decode_checkpoint(a.checkpoint.payload)
        if key is FR_KEY:
            cp = dataclasses.replace(cp, origin="FR")
        return dataclasses.replace(a, checkpoint=sign_checkpoint(key, cp).envelope)

    return tamper


def _flip(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


REFUSED: dict[str, tuple[Callable[[LookupAnswer, LookupAnswer], LookupAnswer], type[Exception]]] = {
    "record signed by an outsider": (_resign_record(OUTSIDER), UntrustedSignerError),
    "record signed by another origin": (_resign_record(FR_KEY), UntrustedSignerError),
    "record payload altered": (
        lambda a, o: dataclasses.replace(
            a,
            signed_record=dataclasses.replace(
                a.signed_record,
                payload=a.signed_record.payload.replace(b"1994-03-17", b"1994-03-18"),
            ),
        ),
        UntrustedSignerError,
    ),
    "genuine record of another credential": (
        lambda a, o: dataclasses.replace(a, signed_record=o.signed_record),
        UntrustedSignerError,
    ),
    "record naming another origin, signed by DE": (
        _resign_record(K1, lambda p: p.replace(b'"origin":"DE"', b'"origin":"FR"')),
        UntrustedSignerError,
    ),
    "genuine status entry of another credential": (
        lambda a, o: dataclasses.replace(a, entry_index=o.entry_index, leaf=o.leaf, proof=o.proof),
        ProofError,
    ),
    "bad inclusion proof": (
        lambda a, o: dataclasses.replace(a, proof=[_flip(a.proof[0]), *a.proof[1:]]),
        ProofError,
    ),
    "inclusion proof cut short": (
        lambda a, o: dataclasses.replace(a, proof=a.proof[:-1]),
        ProofError,
    ),
    "entry at another index": (
        lambda a, o: dataclasses.replace(a, entry_index=a.entry_index + 1),
        ProofError,
    ),
    "status rewritten": (
        lambda a, o: dataclasses.replace(a, leaf=a.leaf.replace(b'"active"', b'"revoked"')),
        ProofError,
    ),
    "malformed leaf": (lambda a, o: dataclasses.replace(a, leaf=b"{"), ProofError),
    "checkpoint signed by an unknown key": (_resign_checkpoint(OUTSIDER), TrustError),
    "checkpoint of another origin": (_resign_checkpoint(FR_KEY), TrustError),
    "checkpoint with a bad signature": (
        lambda a, o: dataclasses.replace(
            a, checkpoint=dataclasses.replace(a.checkpoint, signature=_flip(a.checkpoint.signature))
        ),
        TrustError,
    ),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
async def test_an_answer_failing_any_check_is_refused(world: World, case: str) -> None:
    other_id = await world.origin.issue()
    cid = await world.origin.issue()
    await world.origin.issue()  # the proofs of both are non-empty
    other = answer_of(await world.origin.verifier.verify(other_id, RIGHT))
    tamper, error = REFUSED[case]
    world.lookup.tamper = lambda a: tamper(a, other)

    with pytest.raises(error):
        await world.cross.verify(cid, RIGHT)
    assert world.cross.cached_records() == 0

    # The genuine answer is then accepted (nothing bad was cached).
    world.lookup.tamper = None
    v = await world.cross.verify(cid, RIGHT)
    assert (v.status, v.source, v.record_cached) == (Status.ACTIVE, StatusSource.ORIGIN, False)
    assert len(world.lookup.calls) == 2


# -- not found --------------------------------------------------------------------------


async def test_wrong_attribute_and_unknown_id_are_indistinguishable(world: World) -> None:
    cid = await world.origin.issue()
    messages: list[str] = []

    async def refused(credential_id: str, attribute: HolderAttribute) -> None:
        with pytest.raises(NotFoundError) as info:
            await world.cross.verify(credential_id, attribute)
        messages.append(str(info.value))

    await refused(ids.new_credential_id("DE"), RIGHT)  # unknown id
    await refused(cid, WRONG)  # the origin refuses the wrong attribute
    await refused(cid, HolderAttribute(family_name="Müller"))
    await refused(cid, HolderAttribute())
    world.lookup.lenient = True
    await refused(cid, WRONG)  # the origin answers; this node checks the record itself
    await world.cross.verify(cid, RIGHT)
    calls = len(world.lookup.calls)
    await refused(cid, WRONG)  # a cached record is checked the same way
    await refused(cid, HolderAttribute(family_name="Müller"))
    assert len(world.lookup.calls) == calls
    assert messages == [NOT_FOUND_MESSAGE] * 7


# -- staleness --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "status"),
    [
        (0, Status.ACTIVE),
        (MAX_STALENESS, Status.ACTIVE),
        (MAX_STALENESS + 1, None),
        (30 * 86400, None),
    ],
)
@pytest.mark.parametrize("cached", [False, True], ids=["asked", "cached"])
async def test_past_the_maximum_staleness_the_status_is_unknown(
    world: World, age: float, status: Status | None, cached: bool
) -> None:
    cid = await world.origin.issue()
    revoked = await world.origin.issue()
    await world.origin.revoke(revoked)
    if cached:
        await world.cross.verify(cid, RIGHT)
        await world.cross.verify(revoked, RIGHT)
    world.clock.advance(age)

    v = await world.cross.verify(cid, RIGHT)
    assert v.record_cached is cached
    assert v.status is status
    assert v.state.status is Status.ACTIVE  # what the log said, never the answer
    assert v.data_age_seconds == int(age)
    gone = await world.cross.verify(revoked, RIGHT)
    assert gone.status is (Status.REVOKED if status else None)


async def test_a_stale_replica_never_makes_an_answer_valid(world: World) -> None:
    cid = await world.origin.issue()
    assert await world.sync() is True
    world.clock.advance(MAX_STALENESS + 60)
    v = await world.cross.verify(cid, RIGHT)
    assert v.source is StatusSource.REPLICA
    assert v.status is None


async def test_a_fresh_heartbeat_at_the_origin_makes_the_answer_fresh_again(
    world: World,
) -> None:
    cid = await world.origin.issue()
    world.clock.advance(MAX_STALENESS + 60)
    assert (await world.cross.verify(cid, RIGHT)).status is None
    cp = (await world.origin.checkpoint()).checkpoint
    world.origin.verifier.heartbeat(
        sign_checkpoint(K1, Checkpoint("DE", cp.tree_size, cp.root_hash, world.clock()))
    )
    world.cross.purge()
    v = await world.cross.verify(cid, RIGHT)
    assert (v.status, v.data_age_seconds) == (Status.ACTIVE, 0)


async def test_a_heartbeat_in_the_replica_keeps_a_cached_answer_fresh(world: World) -> None:
    cid = await world.origin.issue()
    assert await world.sync() is True
    await world.cross.verify(cid, RIGHT)
    world.clock.advance(MAX_STALENESS + 60)
    cp = (await world.origin.checkpoint()).checkpoint
    beat = sign_checkpoint(K1, Checkpoint("DE", cp.tree_size, cp.root_hash, world.clock()))
    await world.replicas.apply("DE", beat.envelope, OriginSource(world.origin))

    v = await world.cross.verify(cid, RIGHT)
    assert v.record_cached is True
    assert v.source is StatusSource.REPLICA
    assert v.checkpoint == beat
    assert (v.status, v.data_age_seconds) == (Status.ACTIVE, 0)


# -- the record cache ---------------------------------------------------------------------


async def test_a_cached_record_expires_after_its_ttl(world: World) -> None:
    cid = await world.origin.issue()
    await world.cross.verify(cid, RIGHT)

    world.mono.now += TTL - 0.001
    world.lookup.down = True  # a cached record answers while the origin is unreachable
    v = await world.cross.verify(cid, RIGHT)
    assert (v.record_cached, v.status) == (True, Status.ACTIVE)
    assert world.lookup.calls == [cid]

    world.mono.now += 0.001  # expired: never used again
    with pytest.raises(UnavailableError):
        await world.cross.verify(cid, RIGHT)
    assert world.cross.cached_records() == 0
    world.lookup.down = False
    v = await world.cross.verify(cid, RIGHT)
    assert v.record_cached is False
    assert world.lookup.calls == [cid] * 3


async def test_the_cache_is_bounded_and_evicts_the_oldest(world: World) -> None:
    cross = world.crossborder(max_records=2)
    a, b, c = [await world.origin.issue() for _ in range(3)]
    for cid in (a, b, c):
        await cross.verify(cid, RIGHT)
    assert cross.cached_records() == 2
    assert (await cross.verify(c, RIGHT)).record_cached is True
    assert (await cross.verify(b, RIGHT)).record_cached is True
    assert world.lookup.calls == [a, b, c]
    assert (await cross.verify(a, RIGHT)).record_cached is False
    assert world.lookup.calls == [a, b, c, a]
    assert cross.cached_records() == 2


async def test_purge_empties_the_cache(world: World) -> None:
    a, b = await world.origin.issue(), await world.origin.issue()
    await world.cross.verify(a, RIGHT)
    await world.cross.verify(b, RIGHT)
    assert world.cross.purge() == 2
    assert world.cross.cached_records() == 0
    assert (await world.cross.verify(a, RIGHT)).record_cached is False
    assert world.lookup.calls == [a, b, a]


@pytest.mark.parametrize(("ttl", "max_records"), [(0.0, 100), (TTL, 0)])
async def test_no_cache_when_disabled(world: World, ttl: float, max_records: int) -> None:
    cross = world.crossborder(ttl=ttl, max_records=max_records)
    cid = await world.origin.issue()
    await cross.verify(cid, RIGHT)
    assert (await cross.verify(cid, RIGHT)).record_cached is False
    assert cross.cached_records() == 0
    assert world.lookup.calls == [cid, cid]


# -- who is asked ---------------------------------------------------------------------------


async def test_an_unpinned_country_is_not_asked(world: World) -> None:
    for cid in (ids.new_credential_id("FR"), ids.new_credential_id("XX")):
        with pytest.raises(PreconditionError, match="no partnership"):
            await world.cross.verify(cid, RIGHT)
    assert world.lookup.calls == []


async def test_a_forked_origin_is_not_believed(world: World) -> None:
    cid = await world.origin.issue()
    await world.cross.verify(cid, RIGHT)  # cached
    one = sign_checkpoint(K1, Checkpoint("DE", 1, bytes(32), START))
    two = sign_checkpoint(K1, Checkpoint("DE", 1, bytes([7]) * 32, START))
    evidence = ForkEvidence("DE", one.envelope, two.envelope, (), two.checkpoint.root_hash)
    assert await world.replicas.record_fork(encode_evidence(evidence)) is True

    with pytest.raises(PreconditionError, match="forked"):
        await world.cross.verify(cid, RIGHT)  # not even from the cache
    with pytest.raises(PreconditionError, match="forked"):
        await world.cross.verify(await world.origin.issue(), RIGHT)
    assert world.lookup.calls == [cid]
