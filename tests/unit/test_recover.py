"""credfed.recover.recover_log against a partner serving this node's own log
from a real store: entries fetched in batches and applied, and everything a
partner could get wrong refused before anything is written."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from credfed import runstate
from credfed.crypto.keys import SigningKey
from credfed.errors import PreconditionError
from credfed.models import Envelope, SignedCheckpoint, Status, StatusState
from credfed.recover import RecoverError, recover_log, refuse_if_serving
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import sign_checkpoint
from credfed.statuslog.entries import LogEntryData, encode_entry
from credfed.statuslog.log import StatusLog, consistency_proof
from credfed.storage.sqlite import SqliteStore
from credfed.testing.factories import make_credential, make_issuer

KEY = SigningKey.from_seed(b"\x11" * 32)
OUTSIDER = SigningKey.from_seed(b"\x99" * 32)
KEYS = {KEY.key_id: KEY.verifying_key()}
T0 = datetime(2025, 5, 1, tzinfo=UTC)
HELD = ("DE-A", "DE-B")


def _leaf(index: int, credential_id: str, status: Status, *, at: int | None = None) -> bytes:
    """Entry ``index`` of DE's log (claiming position ``at`` if given)."""
    state = StatusState(status, "test", T0 + timedelta(seconds=index))
    return encode_entry(LogEntryData("DE", index if at is None else at, credential_id, state))


async def _append(store: SqliteStore, leaves: list[bytes], when: datetime = T0) -> SignedCheckpoint:
    """Append ``leaves`` as the status log does and sign a checkpoint."""
    async with store.write() as tx:
        start = await tx.log_size()
        frontier = await tx.get_log_nodes(merkle.frontier_ids(start))
        hashes = [merkle.leaf_hash(x) for x in leaves]
        await tx.append_log(start, leaves, merkle.append_nodes(start, hashes, frontier))
        return await StatusLog("DE", KEY, lambda: when).checkpoint(tx)


async def _node(path: Path) -> SqliteStore:
    """DE's store holding A and B (issued at entries 0 and 1)."""
    store = await SqliteStore.open(path)
    await store.add_issuer(make_issuer("ISS-1"))
    async with store.write() as tx:
        await tx.insert_credentials(
            [make_credential(cid, last_entry_index=n) for n, cid in enumerate(HELD)]
        )
    await _append(store, [_leaf(n, cid, Status.ACTIVE) for n, cid in enumerate(HELD)])
    return store


class Partner:
    """A partner serving what it holds of DE's log (a store), with knobs."""

    name = "FR"

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.entry_calls: list[tuple[int, int]] = []
        self.serve: Envelope | None = None
        self.tamper: Callable[[int, list[bytes]], list[bytes]] | None = None

    async def checkpoint(self, origin: str) -> Envelope:
        assert origin == "DE"
        if self.serve is not None:
            return self.serve
        latest = await self.store.latest_checkpoint()
        assert latest is not None
        return latest.envelope

    async def entries(self, origin: str, start: int, end: int) -> list[bytes]:
        self.entry_calls.append((start, end))
        leaves = await self.store.get_log_entries(start, end)
        return self.tamper(start, leaves) if self.tamper else leaves

    async def consistency(self, origin: str, old_size: int, new_size: int) -> list[bytes]:
        return await consistency_proof(self.store, old_size, new_size)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, Partner]]:
    """The restored node (log size 2) and a partner holding its log at 2."""
    restored = await _node(tmp_path / "restored.db")
    full = await _node(tmp_path / "full.db")
    try:
        yield restored, Partner(full)
    finally:
        await restored.close()
        await full.close()


async def _unchanged(store: SqliteStore, size: int, checkpoint: SignedCheckpoint | None) -> None:
    assert await store.log_size() == size
    assert await store.latest_checkpoint() == checkpoint
    for n, cid in enumerate(HELD):
        assert await store.get_credential(cid) == make_credential(cid, last_entry_index=n)


async def test_recovers_in_batches_applying_the_newest_state(
    pair: tuple[SqliteStore, Partner],
) -> None:
    restored, partner = pair
    # After the backup: A suspended and reinstated 1,200 times, 30 credentials
    # issued (lost here), B revoked.
    later: list[bytes] = []
    for n in range(1200):
        later.append(_leaf(2 + 2 * n, "DE-A", Status.SUSPENDED))
        later.append(_leaf(3 + 2 * n, "DE-A", Status.REINSTATED))
    lost = [f"DE-L{n:02d}" for n in range(30)]
    later += [_leaf(2402 + n, cid, Status.ACTIVE) for n, cid in enumerate(lost)]
    later.append(_leaf(2432, "DE-B", Status.REVOKED))
    signed = await _append(partner.store, later, T0 + timedelta(days=1))

    done = await recover_log("DE", restored, KEYS, {"FR": partner})

    assert (done.partner, done.size_before, done.size_after) == ("FR", 2, 2433)
    assert done.applied == {"suspended": 1200, "reinstated": 1200, "revoked": 1}
    assert done.lost == lost
    assert [(v.partner, v.size, v.problem) for v in done.views] == [("FR", 2433, None)]
    assert partner.entry_calls == [(2, 1002), (1002, 2002), (2002, 2433)]
    assert await restored.get_log_entries(0, 2433) == await partner.store.get_log_entries(0, 2433)
    assert await restored.latest_checkpoint() == signed
    a, b = [await restored.get_credential(cid) for cid in HELD]
    assert a is not None
    assert b is not None
    assert (a.state.status, a.last_entry_index) == (Status.REINSTATED, 2401)
    assert (b.state.status, b.last_entry_index) == (Status.REVOKED, 2432)
    # The next normal append continues the recovered tree.
    await _append(restored, [_leaf(2433, "DE-A", Status.REVOKED)])
    await _append(partner.store, [_leaf(2433, "DE-A", Status.REVOKED)])
    nodes = await restored.get_log_nodes(merkle.frontier_ids(2434))
    assert merkle.root_hash(2434, nodes) == (
        merkle.root_hash(2434, await partner.store.get_log_nodes(merkle.frontier_ids(2434)))
    )


async def test_nothing_to_do_when_no_partner_holds_more(
    pair: tuple[SqliteStore, Partner],
) -> None:
    restored, partner = pair
    before = await restored.latest_checkpoint()
    done = await recover_log("DE", restored, KEYS, {"FR": partner})
    assert (done.partner, done.size_before, done.size_after) == (None, 2, 2)
    assert partner.entry_calls == []
    await _unchanged(restored, 2, before)


async def test_entries_that_do_not_rebuild_the_checkpoint_are_refused(
    pair: tuple[SqliteStore, Partner],
) -> None:
    restored, partner = pair
    await _append(partner.store, [_leaf(2 + n, "DE-A", Status.REVOKED) for n in range(5)])
    partner.tamper = lambda start, leaves: [_leaf(start, "DE-B", Status.REVOKED), *leaves[1:]]
    before = await restored.latest_checkpoint()
    with pytest.raises(RecoverError, match=r"partner FR: entries of DE from FR do not rebuild"):
        await recover_log("DE", restored, KEYS, {"FR": partner})
    await _unchanged(restored, 2, before)


async def test_an_entry_signed_at_another_position_is_refused(
    pair: tuple[SqliteStore, Partner],
) -> None:
    restored, partner = pair
    await _append(partner.store, [_leaf(2, "DE-A", Status.REVOKED, at=7)])
    before = await restored.latest_checkpoint()
    with pytest.raises(RecoverError, match="entry 2 claims to be entry 7 of DE"):
        await recover_log("DE", restored, KEYS, {"FR": partner})
    await _unchanged(restored, 2, before)


async def test_a_checkpoint_this_node_did_not_sign_is_not_used(
    pair: tuple[SqliteStore, Partner],
) -> None:
    restored, partner = pair
    latest = await _append(partner.store, [_leaf(2, "DE-A", Status.REVOKED)])
    # The same tree, but signed by a key this node never had.
    partner.serve = sign_checkpoint(OUTSIDER, latest.checkpoint).envelope
    before = await restored.latest_checkpoint()
    done = await recover_log("DE", restored, KEYS, {"FR": partner})
    assert done.partner is None
    assert [v.partner for v in done.unchecked] == ["FR"]
    assert (done.unchecked[0].problem or "").startswith("its checkpoint does not verify")
    await _unchanged(restored, 2, before)


async def test_a_smaller_checkpoint_of_another_log_is_a_fork(
    pair: tuple[SqliteStore, Partner], tmp_path: Path
) -> None:
    """FR holds more; PL holds a checkpoint at 3 this node signed over another entry 2."""
    restored, partner = pair
    await _append(partner.store, [_leaf(2 + n, "DE-A", Status.REVOKED) for n in range(3)])
    other = await _node(tmp_path / "other.db")
    try:
        await _append(other, [_leaf(2, "DE-B", Status.REVOKED)])
        before = await restored.latest_checkpoint()
        pl = Partner(other)
        pl.name = "PL"
        with pytest.raises(RecoverError, match="partner PL holds DE's log at size 3, signed"):
            await recover_log("DE", restored, KEYS, {"FR": partner, "PL": pl})
        await _unchanged(restored, 2, before)
    finally:
        await other.close()


def test_a_serving_node_is_refused(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    refuse_if_serving(tmp_path, now)  # never served
    runstate.write(tmp_path, runstate.snapshot(now, {}, [], None))
    with pytest.raises(PreconditionError, match="is serving"):
        refuse_if_serving(tmp_path, now + timedelta(seconds=2))
    refuse_if_serving(tmp_path, now + timedelta(seconds=runstate.STALE_AFTER + 1))  # gone
    runstate.write(tmp_path, runstate.snapshot(now, {}, [], None, stopped=True))
    refuse_if_serving(tmp_path, now)
