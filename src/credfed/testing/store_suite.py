"""The storage suite: every backend must pass it.

It checks the rules of :mod:`credfed.storage.base` through the public
protocol only. To run it against a backend, subclass :class:`StoreSuite` in a
test module (the subclass name must start with ``Test``) and provide:

* an async fixture ``store`` yielding an open store over *empty*, private
  storage, closing it afterwards;
* :meth:`StoreSuite.reopen`: close the given store and open a new handle on
  the same data. The ``store`` fixture's teardown still closes the original
  handle, so ``close()`` must be idempotent.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from credfed import audit
from credfed.errors import AlreadyExistsError, NotFoundError, StorageError
from credfed.models import Envelope, IssuerStatus, Role, RoleKind, Status, StoredCredential
from credfed.statuslog import merkle
from credfed.statuslog.log import consistency_proof, inclusion_proof, root_hash
from credfed.storage.base import RecoveredEntries, ReplicaAppend, Store, StoredRule
from credfed.testing.factories import (
    T0,
    completed_nodes,
    digest,
    leaf,
    make_checkpoint,
    make_client,
    make_credential,
    make_issuer,
    make_signed_checkpoint,
    make_state,
)

ISSUER = "ISS-1"


class _Boom(Exception):
    """Raised inside a write block to force a rollback."""


def _fully_populated(credential_id: str = "XX-FULL") -> StoredCredential:
    """A credential with every optional field set, and a non-UTC offset."""
    return make_credential(
        credential_id,
        supersedes="XX-OLD",
        valid_until=date(2031, 1, 1),
        state=make_state(
            Status.SUSPENDED,
            reason="investigation",
            effective_at=datetime(2025, 6, 1, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
            suspended_until=date(2025, 12, 31),
            appeal_case_ref="APPEAL-7",
            superseded_by="XX-NEW",
        ),
        last_entry_index=41,
    )


async def _seed(store: Store, *credentials: StoredCredential) -> None:
    """Register the default issuer and commit ``credentials``."""
    await store.add_issuer(make_issuer(ISSUER))
    if credentials:
        async with store.write() as tx:
            await tx.insert_credentials(credentials)


async def _append(store: Store, count: int) -> int:
    """Commit ``count`` more leaves (with their nodes); returns the new size."""
    async with store.write() as tx:
        start = await tx.log_size()
        end = start + count
        await tx.append_log(
            start, [leaf(i) for i in range(start, end)], completed_nodes(start, end)
        )
    return end


def _replica_leaf(origin: str, index: int) -> bytes:
    """Distinct leaf bytes per origin and index, including a NUL."""
    return origin.encode() + b"\x00" + index.to_bytes(8, "big")


def _replica_leaves(origin: str, start: int, end: int) -> list[bytes]:
    return [_replica_leaf(origin, i) for i in range(start, end)]


def _replica_nodes(origin: str, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """Stand-in nodes completed by leaves [start, end), distinct per origin."""
    return [(level, index, digest(origin, h)) for level, index, h in completed_nodes(start, end)]


def _replica_node_map(origin: str, start: int, end: int) -> dict[tuple[int, int], bytes]:
    return {(level, index): h for level, index, h in _replica_nodes(origin, start, end)}


async def _replicate(
    store: Store,
    origin: str,
    start: int,
    end: int,
    *,
    statuses: list[tuple[str, int]] | None = None,
    checkpoint: bool = False,
) -> None:
    """Append leaves [start, end) of ``origin`` to its replica, with their
    nodes, and (if asked) the checkpoint ``make_signed_checkpoint(origin, end)``."""
    await store.append_replica(
        ReplicaAppend(
            origin=origin,
            start=start,
            leaves=_replica_leaves(origin, start, end),
            nodes=_replica_nodes(origin, start, end),
            statuses=statuses or [],
            checkpoint=make_signed_checkpoint(origin, end) if checkpoint else None,
        )
    )


async def _append_real(store: Store, count: int) -> int:
    """Commit ``count`` more leaves with their real Merkle nodes, as the
    status log appends them; returns the new size."""
    async with store.write() as tx:
        start = await tx.log_size()
        leaves = [leaf(i) for i in range(start, start + count)]
        frontier = await tx.get_log_nodes(merkle.frontier_ids(start))
        nodes = merkle.append_nodes(start, [merkle.leaf_hash(x) for x in leaves], frontier)
        await tx.append_log(start, leaves, nodes)
    return start + count


def _root_of(leaves: list[bytes]) -> bytes:
    """RFC 6962 root, from the definition (not from stored nodes)."""
    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return merkle.leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(_root_of(leaves[:k]), _root_of(leaves[k:]))


def _proof_ids(index: int, size: int) -> list[tuple[int, int]]:
    return [(0, index)]


class StoreSuite:
    """Backend-independent tests of the :class:`credfed.storage.base.Store`
    contract. See the module docstring for what a subclass provides."""

    async def reopen(self, store: Store) -> Store:
        """Close ``store`` and return a new handle on the same data."""
        raise NotImplementedError

    # -- an empty store ------------------------------------------------------------

    async def test_new_store_is_empty(self, store: Store) -> None:
        assert await store.log_size() == 0
        assert await store.get_log_entries(0, 10) == []
        assert await store.get_log_nodes([(0, 0), (1, 0)]) == {}
        assert await store.latest_checkpoint() is None
        assert await store.get_checkpoint(0) is None
        assert await store.get_credential("XX-0001") is None
        assert await store.get_issuer(ISSUER) is None
        assert await store.list_issuers() == []
        assert await store.list_clients() == []
        assert await store.get_client_by_token_hash(b"\x00" * 32) is None

    # -- issuers ---------------------------------------------------------------------

    async def test_issuers_round_trip(self, store: Store) -> None:
        first = make_issuer("ISS-A", sectors=("health", "care", "aviation"))
        second = make_issuer("ISS-B", sectors=(), status=IssuerStatus.SUSPENDED)
        await store.add_issuer(first)
        await store.add_issuer(second)
        assert await store.get_issuer("ISS-A") == first
        assert await store.get_issuer("ISS-B") == second
        assert sorted(await store.list_issuers(), key=lambda i: i.issuer_id) == [first, second]
        async with store.write() as tx:
            assert await tx.get_issuer("ISS-B") == second
            assert await tx.get_issuer("ISS-C") is None

    async def test_duplicate_issuer_is_refused(self, store: Store) -> None:
        await store.add_issuer(make_issuer("ISS-A"))
        with pytest.raises(AlreadyExistsError, match="ISS-A"):
            await store.add_issuer(make_issuer("ISS-A", name="Another name"))
        assert await store.list_issuers() == [make_issuer("ISS-A")]

    async def test_set_issuer_status(self, store: Store) -> None:
        await store.add_issuer(make_issuer("ISS-A"))
        updated = await store.set_issuer_status("ISS-A", IssuerStatus.SUSPENDED)
        assert updated == make_issuer("ISS-A", status=IssuerStatus.SUSPENDED)
        assert await store.get_issuer("ISS-A") == updated
        again = await store.set_issuer_status("ISS-A", IssuerStatus.ACTIVE)
        assert again == make_issuer("ISS-A")

    async def test_set_status_of_missing_issuer_is_not_found(self, store: Store) -> None:
        with pytest.raises(NotFoundError, match="ISS-NONE"):
            await store.set_issuer_status("ISS-NONE", IssuerStatus.SUSPENDED)
        assert await store.list_issuers() == []

    # -- clients -------------------------------------------------------------------------

    async def test_clients_round_trip_with_every_role(self, store: Store) -> None:
        clients = [
            make_client("c-admin", role=Role(RoleKind.ADMIN)),
            make_client("c-verifier", role=Role(RoleKind.VERIFIER)),
            make_client("c-peer", role=Role(RoleKind.PEER)),  # legacy: no partner
            replace(make_client("c-peer-fr", role=Role(RoleKind.PEER)), partner="FR"),
            make_client(
                "c-issuer",
                role=Role(RoleKind.ISSUER, "de-hwk-muenchen"),
                created_at=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
            ),
        ]
        for client in clients:
            await store.add_client(client)
        for client in clients:
            assert await store.get_client_by_token_hash(client.token_hash) == client
        peers = [await store.get_client_by_token_hash(c.token_hash) for c in clients[2:4]]
        assert [p.partner if p else "?" for p in peers] == [None, "FR"]
        issuer_client = await store.get_client_by_token_hash(clients[4].token_hash)
        assert issuer_client is not None
        assert issuer_client.role.issuer_id == "de-hwk-muenchen"
        assert issuer_client.created_at.utcoffset() is not None
        listed = sorted(await store.list_clients(), key=lambda c: c.client_id)
        assert listed == sorted(clients, key=lambda c: c.client_id)
        assert await store.get_client_by_token_hash(b"\x01" * 32) is None

    async def test_duplicate_client_is_refused(self, store: Store) -> None:
        await store.add_client(make_client("c-1"))
        with pytest.raises(AlreadyExistsError, match="c-1"):
            await store.add_client(make_client("c-1", token_hash=b"\x02" * 32))
        # The token hash is a key too: two clients cannot share a token.
        with pytest.raises(AlreadyExistsError):
            await store.add_client(make_client("c-2", token_hash=make_client("c-1").token_hash))
        assert await store.list_clients() == [make_client("c-1")]

    async def test_client_lifetimes_round_trip(self, store: Store) -> None:
        plus_two = timezone(timedelta(hours=2))
        clients = [
            make_client("c-forever"),
            replace(
                make_client("c-expiring"),
                expires_at=datetime(2026, 3, 14, 11, 26, 53, 1, tzinfo=plus_two),
            ),
            replace(
                make_client("c-revoked"),
                expires_at=T0 + timedelta(days=90),
                revoked_at=T0 + timedelta(microseconds=1),
            ),
        ]
        for client in clients:
            await store.add_client(client)
        for client in clients:
            got = await store.get_client_by_token_hash(client.token_hash)
            assert got == client
            assert got is not None
            for moment in (got.expires_at, got.revoked_at):
                assert moment is None or moment.utcoffset() is not None
        by_id = sorted(clients, key=lambda c: c.client_id)
        assert await store.list_clients() == by_id  # ordered by client id

    async def test_revoke_client(self, store: Store) -> None:
        await store.add_client(make_client("c-1"))
        await store.add_client(make_client("c-2"))
        revoked = await store.revoke_client("c-1", T0 + timedelta(hours=1))
        assert revoked == replace(make_client("c-1"), revoked_at=T0 + timedelta(hours=1))
        assert await store.get_client_by_token_hash(revoked.token_hash) == revoked
        # Idempotent: revoking again keeps the first time.
        again = await store.revoke_client("c-1", T0 + timedelta(hours=2))
        assert again == revoked
        # Revoked clients are still listed; the others are untouched.
        assert await store.list_clients() == [revoked, make_client("c-2")]

    async def test_revoke_unknown_client_is_not_found(self, store: Store) -> None:
        await store.add_client(make_client("c-1"))
        with pytest.raises(NotFoundError, match="c-none"):
            await store.revoke_client("c-none", T0)
        assert await store.list_clients() == [make_client("c-1")]

    async def test_revocation_survives_reopen(self, store: Store) -> None:
        await store.add_client(replace(make_client("c-1"), expires_at=T0 + timedelta(days=1)))
        revoked = await store.revoke_client("c-1", T0 + timedelta(hours=1))
        again = await self.reopen(store)
        try:
            assert await again.get_client_by_token_hash(revoked.token_hash) == revoked
        finally:
            await again.close()

    # -- credentials --------------------------------------------------------------------

    async def test_credential_round_trips_every_field(self, store: Store) -> None:
        full = _fully_populated()
        sparse = make_credential("XX-SPARSE", valid_until=None, supersedes=None)
        await _seed(store, full, sparse)
        got = await store.get_credential(full.credential_id)
        assert got == full
        assert got is not None
        assert got.record.payload == full.record.payload  # exact bytes
        assert got.state.effective_at == full.state.effective_at
        assert got.state.effective_at.utcoffset() is not None
        assert await store.get_credential("XX-SPARSE") == sparse
        assert await store.get_credential("XX-NONE") is None

    async def test_insert_many_credentials(self, store: Store) -> None:
        batch = [make_credential(f"XX-{i:04d}", last_entry_index=i) for i in range(250)]
        await _seed(store, *batch)
        for credential in (batch[0], batch[123], batch[-1]):
            assert await store.get_credential(credential.credential_id) == credential

    async def test_duplicate_credential_is_refused(self, store: Store) -> None:
        await _seed(store, make_credential("XX-0001"))
        with pytest.raises(AlreadyExistsError, match=re.escape("XX-0001")):
            async with store.write() as tx:
                await tx.insert_credentials(
                    [make_credential("XX-0002"), make_credential("XX-0001")]
                )
        with pytest.raises(AlreadyExistsError, match=re.escape("XX-0003")):
            async with store.write() as tx:
                await tx.insert_credentials(
                    [make_credential("XX-0003"), make_credential("XX-0003")]
                )

        async def insert_twice() -> None:
            async with store.write() as tx:
                await tx.insert_credentials([make_credential("XX-0004")])
                await tx.insert_credentials([make_credential("XX-0004")])

        with pytest.raises(AlreadyExistsError, match=re.escape("XX-0004")):
            await insert_twice()
        for missing in ("XX-0002", "XX-0003", "XX-0004"):
            assert await store.get_credential(missing) is None

    async def test_update_credential_state(self, store: Store) -> None:
        credential = make_credential("XX-0001")
        await _seed(store, credential)
        revoked = make_state(
            Status.REVOKED, reason="fraud", effective_at=T0 + timedelta(days=3, microseconds=7)
        )
        async with store.write() as tx:
            await tx.update_credential_state("XX-0001", revoked, 17)
            assert await tx.get_credential("XX-0001") == replace(
                credential, state=revoked, last_entry_index=17
            )
        assert await store.get_credential("XX-0001") == replace(
            credential, state=revoked, last_entry_index=17
        )
        # Optional fields are cleared as well as set.
        async with store.write() as tx:
            await tx.update_credential_state("XX-0001", make_state(), 18)
        assert await store.get_credential("XX-0001") == replace(credential, last_entry_index=18)

    async def test_update_of_missing_credential_is_not_found(self, store: Store) -> None:
        await _seed(store)
        with pytest.raises(NotFoundError, match="XX-NONE"):
            async with store.write() as tx:
                await tx.update_credential_state("XX-NONE", make_state(Status.REVOKED), 1)

    # -- the log -------------------------------------------------------------------------

    async def test_leaves_and_nodes_round_trip_exactly(self, store: Store) -> None:
        leaves = [b"", b"\x00", bytes(range(256)), b"x" * 10_000, leaf(4)]
        nodes = [
            (0, 0, b"\x00" * 32),
            (0, 4, bytes(range(32))),
            (2, 1, b"\xff" * 32),
            (40, 0, b"high level"),
        ]
        async with store.write() as tx:
            await tx.append_log(0, leaves, nodes)
        assert await store.log_size() == 5
        assert await store.get_log_entries(0, 5) == leaves
        got = await store.get_log_nodes([(level, index) for level, index, _ in nodes])
        assert got == {(level, index): digest for level, index, digest in nodes}

    async def test_get_log_entries_clamps(self, store: Store) -> None:
        size = await _append(store, 7)
        everything = [leaf(i) for i in range(size)]
        assert await store.get_log_entries(0, 7) == everything
        assert await store.get_log_entries(0, 1000) == everything
        assert await store.get_log_entries(2, 5) == everything[2:5]
        assert await store.get_log_entries(6, 1000) == [leaf(6)]
        assert await store.get_log_entries(3, 3) == []
        assert await store.get_log_entries(5, 2) == []
        assert await store.get_log_entries(7, 10) == []
        assert await store.get_log_entries(100, 200) == []

    async def test_get_log_nodes_omits_absent_ids(self, store: Store) -> None:
        await _append(store, 5)
        expected = {(level, index): h for level, index, h in completed_nodes(0, 5)}
        wanted = [*expected, (0, 5), (1, 2), (3, 0), (60, 7)]
        assert await store.get_log_nodes(wanted) == expected
        assert await store.get_log_nodes([]) == {}
        assert await store.get_log_nodes([(0, 1), (0, 1)]) == {(0, 1): expected[(0, 1)]}

    async def test_get_log_nodes_answers_a_proof_sized_batch(self, store: Store) -> None:
        size = await _append(store, 300)
        everything = {(level, index): h for level, index, h in completed_nodes(0, size)}
        wanted = sorted(everything)[::5][:60]
        assert len(wanted) == 60
        assert await store.get_log_nodes(wanted) == {i: everything[i] for i in wanted}

    async def test_credential_proof_reads_one_snapshot(self, store: Store) -> None:
        size = await _append(store, 40)
        credential = make_credential("XX-PROOF", last_entry_index=17)
        await _seed(store, credential)
        everything = {(level, index): h for level, index, h in completed_nodes(0, size)}
        asked: list[int] = []

        def ids_for(index: int) -> list[tuple[int, int]]:
            asked.append(index)
            return [(0, index), (2, 3), (5, 0), (9, 9)]  # the last one does not exist

        read = await store.get_credential_proof("XX-PROOF", ids_for)
        assert read is not None
        assert asked == [17]
        assert read.credential == credential
        assert read.leaf == leaf(17)
        assert read.nodes == {i: everything[i] for i in [(0, 17), (2, 3), (5, 0)]}
        assert await store.get_credential_proof("XX-NONE", ids_for) is None

    async def test_credential_proof_sees_only_committed_data(self, store: Store) -> None:
        await _append(store, 4)
        await _seed(store)
        async with store.write() as tx:
            await tx.insert_credentials([make_credential("XX-OPEN", last_entry_index=2)])
            assert await store.get_credential_proof("XX-OPEN", lambda i: []) is None
        assert await store.get_credential_proof("XX-OPEN", lambda i: []) is not None

    async def test_append_at_the_wrong_index_is_refused(self, store: Store) -> None:
        with pytest.raises(StorageError):
            async with store.write() as tx:
                await tx.append_log(1, [leaf(1)], [])
        await _append(store, 3)
        for wrong in (0, 2, 4):
            with pytest.raises(StorageError):
                async with store.write() as tx:
                    await tx.append_log(wrong, [leaf(wrong)], [])
        assert await store.log_size() == 3
        assert await store.get_log_entries(0, 10) == [leaf(0), leaf(1), leaf(2)]

    async def test_appends_accumulate(self, store: Store) -> None:
        for _ in range(4):
            await _append(store, 3)
        assert await store.log_size() == 12
        assert await store.get_log_entries(0, 12) == [leaf(i) for i in range(12)]
        expected = {(level, index): h for level, index, h in completed_nodes(0, 12)}
        assert await store.get_log_nodes(list(expected)) == expected

    # -- checkpoints -----------------------------------------------------------------------

    async def test_checkpoints_round_trip(self, store: Store) -> None:
        ones = make_checkpoint(1)
        threes = make_checkpoint(
            3, timestamp=datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-5)))
        )
        twos = make_checkpoint(2)
        for checkpoint in (ones, threes, twos):
            async with store.write() as tx:
                await tx.add_checkpoint(checkpoint)
        assert await store.latest_checkpoint() == threes
        assert await store.get_checkpoint(1) == ones
        assert await store.get_checkpoint(2) == twos
        got = await store.get_checkpoint(3)
        assert got == threes
        assert got is not None
        assert got.envelope.payload == threes.envelope.payload
        assert got.checkpoint.timestamp.utcoffset() is not None
        assert await store.get_checkpoint(4) is None

    async def test_one_checkpoint_per_tree_size(self, store: Store) -> None:
        async with store.write() as tx:
            await tx.add_checkpoint(make_checkpoint(5))
        with pytest.raises(AlreadyExistsError, match="5"):
            async with store.write() as tx:
                await tx.add_checkpoint(make_checkpoint(5, root_hash=b"\x01" * 32))
        assert await store.get_checkpoint(5) == make_checkpoint(5)

    # -- transactions ----------------------------------------------------------------------

    async def test_transaction_sees_its_own_writes(self, store: Store) -> None:
        await _seed(store, make_credential("XX-0001"))
        suspended = make_state(Status.SUSPENDED, reason="audit")
        async with store.write() as tx:
            assert await tx.log_size() == 0
            await tx.insert_credentials([make_credential("XX-0002")])
            assert await tx.get_credential("XX-0002") == make_credential("XX-0002")
            await tx.update_credential_state("XX-0001", suspended, 2)
            got = await tx.get_credential("XX-0001")
            assert got is not None
            assert got.state == suspended
            await tx.append_log(0, [leaf(0), leaf(1)], completed_nodes(0, 2))
            assert await tx.log_size() == 2
            assert await tx.get_log_nodes([(1, 0)]) == {(1, 0): completed_nodes(0, 2)[-1][2]}
            await tx.append_log(2, [leaf(2)], completed_nodes(2, 3))
            assert await tx.log_size() == 3

    async def test_reads_see_only_committed_data(self, store: Store) -> None:
        await _seed(store, make_credential("XX-0001"))
        inside = asyncio.Event()
        release = asyncio.Event()

        async def writer() -> None:
            async with store.write() as tx:
                await tx.insert_credentials([make_credential("XX-0002")])
                await tx.update_credential_state("XX-0001", make_state(Status.REVOKED), 1)
                await tx.append_log(0, [leaf(0), leaf(1)], completed_nodes(0, 2))
                await tx.add_checkpoint(make_checkpoint(2))
                inside.set()
                await release.wait()

        task = asyncio.create_task(writer())
        try:
            await inside.wait()
            # The open transaction neither shows through nor blocks readers.
            async with asyncio.timeout(5):
                assert await store.get_credential("XX-0002") is None
                assert await store.get_credential("XX-0001") == make_credential("XX-0001")
                assert await store.log_size() == 0
                assert await store.get_log_entries(0, 10) == []
                assert await store.get_log_nodes([(0, 0), (1, 0)]) == {}
                assert await store.latest_checkpoint() is None
        finally:
            release.set()
            await task
        assert await store.get_credential("XX-0002") == make_credential("XX-0002")
        got = await store.get_credential("XX-0001")
        assert got is not None
        assert got.state.status is Status.REVOKED
        assert await store.log_size() == 2
        assert await store.get_log_entries(0, 10) == [leaf(0), leaf(1)]
        assert await store.latest_checkpoint() == make_checkpoint(2)

    async def test_exception_rolls_back_everything(self, store: Store) -> None:
        original = make_credential("XX-0001")
        await _seed(store, original)
        await _append(store, 1)
        async with store.write() as tx:
            await tx.add_checkpoint(make_checkpoint(1))

        async def failing_write() -> None:
            async with store.write() as tx:
                await tx.insert_credentials([make_credential("XX-0002")])
                await tx.update_credential_state("XX-0001", make_state(Status.REVOKED), 3)
                await tx.append_log(1, [leaf(1), leaf(2), leaf(3)], completed_nodes(1, 4))
                await tx.add_checkpoint(make_checkpoint(4))
                raise _Boom

        with pytest.raises(_Boom):
            await failing_write()

        assert await store.get_credential("XX-0002") is None
        assert await store.get_credential("XX-0001") == original
        assert await store.log_size() == 1
        assert await store.get_log_entries(0, 10) == [leaf(0)]
        new_nodes = [(level, index) for level, index, _ in completed_nodes(1, 4)]
        assert await store.get_log_nodes(new_nodes) == {}
        assert await store.latest_checkpoint() == make_checkpoint(1)
        assert await store.get_checkpoint(4) is None
        # The store goes on: the log continues where the committed data ends.
        assert await _append(store, 3) == 4

    async def test_cancellation_rolls_back_and_frees_the_writer(self, store: Store) -> None:
        await _seed(store)
        inside = asyncio.Event()

        async def doomed() -> None:
            async with store.write() as tx:
                await tx.insert_credentials([make_credential("XX-0001")])
                await tx.append_log(0, [leaf(0)], completed_nodes(0, 1))
                inside.set()
                await asyncio.Event().wait()  # until cancelled

        task = asyncio.create_task(doomed())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.get_credential("XX-0001") is None
        assert await store.log_size() == 0
        async with asyncio.timeout(5):
            assert await _append(store, 1) == 1

    async def test_write_transactions_do_not_interleave(self, store: Store) -> None:
        events: list[str] = []

        async def writer(name: str) -> None:
            async with store.write() as tx:
                events.append(f"{name} begin")
                start = await tx.log_size()
                await asyncio.sleep(0.01)  # give the others every chance to cut in
                await tx.append_log(start, [leaf(start)], completed_nodes(start, start + 1))
                await asyncio.sleep(0.01)
                events.append(f"{name} end")

        names = ["a", "b", "c"]
        await asyncio.gather(*(writer(n) for n in names))
        assert len(events) == 6
        for pos in range(0, 6, 2):
            name = events[pos].split()[0]
            assert events[pos : pos + 2] == [f"{name} begin", f"{name} end"], events
        assert await store.log_size() == 3

    async def test_admin_writes_wait_for_an_open_transaction(self, store: Store) -> None:
        events: list[str] = []
        inside = asyncio.Event()

        async def long_write() -> None:
            async with store.write() as tx:
                inside.set()
                await tx.append_log(0, [leaf(0)], completed_nodes(0, 1))
                await asyncio.sleep(0.05)
                events.append("write committed")

        async def add_issuer() -> None:
            await inside.wait()
            await store.add_issuer(make_issuer("ISS-A"))
            events.append("issuer added")

        await asyncio.gather(long_write(), add_issuer())
        assert events == ["write committed", "issuer added"]
        assert await store.get_issuer("ISS-A") == make_issuer("ISS-A")

    # -- entries of the own log recovered from a partner (credfed recover) ---------------

    async def test_recovered_entries_continue_the_log_for_proofs_and_appends(
        self, store: Store
    ) -> None:
        await _seed(
            store,
            make_credential("XX-HELD", last_entry_index=0),
            make_credential("XX-KEPT", last_entry_index=1),
        )
        await _append_real(store, 3)
        leaves = [leaf(i) for i in range(3, 7)]
        frontier = await store.get_log_nodes(merkle.frontier_ids(3))
        nodes = merkle.append_nodes(3, [merkle.leaf_hash(x) for x in leaves], frontier)
        tree = {**frontier, **{(level, index): h for level, index, h in nodes}}
        checkpoint = make_signed_checkpoint("XX", 7, root_hash=merkle.root_hash(7, tree))
        revoked = make_state(Status.REVOKED, reason="fraud", effective_at=T0 + timedelta(days=1))
        missing = await store.append_recovered(
            RecoveredEntries(
                start=3,
                leaves=leaves,
                nodes=nodes,
                states=[("XX-HELD", revoked, 5), ("XX-GONE", make_state(), 6)],
                checkpoint=checkpoint,
            )
        )
        assert missing == ["XX-GONE"]
        assert await store.log_size() == 7
        assert await store.get_log_entries(0, 7) == [leaf(i) for i in range(7)]
        assert await store.latest_checkpoint() == checkpoint
        assert await store.get_checkpoint(7) == checkpoint
        held = await store.get_credential("XX-HELD")
        assert held is not None
        assert (held.state, held.last_entry_index) == (revoked, 5)
        kept = await store.get_credential("XX-KEPT")
        assert kept == make_credential("XX-KEPT", last_entry_index=1)
        assert await store.get_credential("XX-GONE") is None
        read = await store.get_credential_proof("XX-HELD", lambda i: [(0, i)])
        assert read is not None
        assert read.leaf == leaf(5)

        # The normal path appends after them; every proof checks out against
        # roots computed from the leaves alone.
        await _append_real(store, 2)
        every = [leaf(i) for i in range(9)]
        assert await store.get_log_entries(0, 9) == every
        for size in (1, 3, 7, 9):
            assert await root_hash(store, size) == _root_of(every[:size])
        for index in (0, 2, 3, 5, 6, 8):
            proof = await inclusion_proof(store, index, 9)
            merkle.verify_inclusion(
                merkle.leaf_hash(every[index]), index, 9, proof, _root_of(every)
            )
        for old in (1, 3, 5, 7):
            proof = await consistency_proof(store, old, 9)
            merkle.verify_consistency(old, 9, _root_of(every[:old]), _root_of(every), proof)

    async def test_recovered_entries_are_written_whole_or_not_at_all(self, store: Store) -> None:
        await _seed(store, make_credential("XX-HELD", last_entry_index=0))
        await _append_real(store, 2)
        nodes = completed_nodes(2, 4)
        revoked = make_state(Status.REVOKED, reason="fraud")

        def batch(
            start: int = 2, size: int = 4, index: int = 3, leaves: int = 2
        ) -> RecoveredEntries:
            return RecoveredEntries(
                start=start,
                leaves=[leaf(i) for i in range(start, start + leaves)],
                nodes=nodes,
                states=[("XX-HELD", revoked, index)],
                checkpoint=make_signed_checkpoint("XX", size),
            )

        with pytest.raises(StorageError, match="append at index 1"):
            await store.append_recovered(batch(start=1, size=3, index=2))
        with pytest.raises(StorageError, match="size 5"):
            await store.append_recovered(batch(size=5))
        with pytest.raises(StorageError, match="entry 1 is not among"):
            await store.append_recovered(batch(index=1))
        # A failure at the last statement (the checkpoint) undoes the others.
        async with store.write() as tx:
            await tx.add_checkpoint(make_checkpoint(4))
        with pytest.raises(AlreadyExistsError):
            await store.append_recovered(batch())
        assert await store.log_size() == 2
        assert await store.get_log_nodes([(0, 2), (0, 3), (1, 1)]) == {}
        assert await store.get_credential("XX-HELD") == make_credential(
            "XX-HELD", last_entry_index=0
        )
        assert await store.latest_checkpoint() == make_checkpoint(4)

    # -- durability across handles ------------------------------------------------------

    async def test_data_survives_reopen(self, store: Store) -> None:
        full = _fully_populated()
        client = make_client("c-issuer", role=Role(RoleKind.ISSUER, ISSUER))
        await _seed(store, full)
        await store.add_client(client)
        await store.set_issuer_status(ISSUER, IssuerStatus.SUSPENDED)
        size = await _append(store, 5)
        async with store.write() as tx:
            await tx.add_checkpoint(make_checkpoint(size))

        again = await self.reopen(store)
        try:
            assert await again.get_credential(full.credential_id) == full
            assert await again.get_client_by_token_hash(client.token_hash) == client
            assert await again.list_issuers() == [
                make_issuer(ISSUER, status=IssuerStatus.SUSPENDED)
            ]
            assert await again.log_size() == size
            assert await again.get_log_entries(0, size) == [leaf(i) for i in range(size)]
            nodes = {(level, index): h for level, index, h in completed_nodes(0, size)}
            assert await again.get_log_nodes(list(nodes)) == nodes
            assert await again.latest_checkpoint() == make_checkpoint(size)
            # And it keeps working.
            async with again.write() as tx:
                await tx.append_log(size, [leaf(size)], completed_nodes(size, size + 1))
            assert await again.log_size() == size + 1
        finally:
            await again.close()

    # -- replicas of other origins' logs --------------------------------------------------

    async def test_new_replica_is_empty(self, store: Store) -> None:
        assert await store.replica_size("DE") == 0
        assert await store.replica_checkpoint("DE") is None
        assert await store.replica_checkpoints() == []
        assert await store.get_replica_entries("DE", 0, 10) == []
        assert await store.get_replica_nodes("DE", [(0, 0), (1, 0)]) == {}
        assert await store.get_replica_proof("DE", "DE-0001", _proof_ids) is None
        assert await store.list_fork_evidence() == []

    async def test_replica_appends_accumulate_per_origin(self, store: Store) -> None:
        await _replicate(store, "DE", 0, 5)
        await _replicate(store, "FR", 0, 3)
        await _replicate(store, "DE", 5, 8)
        await _replicate(store, "FR", 3, 10)
        assert await store.replica_size("DE") == 8
        assert await store.replica_size("FR") == 10
        assert await store.replica_size("AT") == 0
        assert await store.get_replica_entries("DE", 0, 100) == _replica_leaves("DE", 0, 8)
        assert await store.get_replica_entries("FR", 0, 100) == _replica_leaves("FR", 0, 10)
        for origin, size in (("DE", 8), ("FR", 10)):
            expected = _replica_node_map(origin, 0, size)
            assert await store.get_replica_nodes(origin, list(expected)) == expected
        # FR's log is longer: DE has none of its extra nodes.
        fr_only = [
            i for i in _replica_node_map("FR", 0, 10) if i not in _replica_node_map("DE", 0, 8)
        ]
        assert await store.get_replica_nodes("DE", fr_only) == {}
        # The node's own log is a different thing.
        assert await store.log_size() == 0
        assert await store.get_log_entries(0, 10) == []

    async def test_replica_append_at_the_wrong_start_writes_nothing(self, store: Store) -> None:
        with pytest.raises(StorageError):
            await _replicate(store, "DE", 1, 3, statuses=[("DE-A", 2)], checkpoint=True)
        assert await store.replica_size("DE") == 0
        assert await store.replica_checkpoint("DE") is None
        await _replicate(store, "DE", 0, 4, statuses=[("DE-A", 1)], checkpoint=True)
        before = make_signed_checkpoint("DE", 4)
        for wrong in (0, 3, 5):
            with pytest.raises(StorageError):
                await _replicate(
                    store,
                    "DE",
                    wrong,
                    wrong + 4,
                    statuses=[("DE-A", wrong + 3), ("DE-B", wrong + 2)],
                    checkpoint=True,
                )
        assert await store.replica_size("DE") == 4
        assert await store.get_replica_entries("DE", 0, 100) == _replica_leaves("DE", 0, 4)
        # Only the nodes of the first batch, none of the refused ones.
        wanted = list(_replica_node_map("DE", 0, 9))
        assert await store.get_replica_nodes("DE", wanted) == _replica_node_map("DE", 0, 4)
        assert await store.replica_checkpoint("DE") == before
        read = await store.get_replica_proof("DE", "DE-A", _proof_ids)
        assert read is not None
        assert read.index == 1
        assert await store.get_replica_proof("DE", "DE-B", _proof_ids) is None
        # And the replica goes on where it ended.
        await _replicate(store, "DE", 4, 6)
        assert await store.replica_size("DE") == 6

    async def test_replica_statuses_keep_the_newest_index(self, store: Store) -> None:
        await _replicate(store, "DE", 0, 4, statuses=[("DE-A", 1), ("DE-B", 3)])
        # A later batch moves DE-A on; the same id twice in one batch keeps
        # the larger index whatever the order.
        await _replicate(store, "DE", 4, 10, statuses=[("DE-A", 8), ("DE-A", 6), ("DE-C", 9)])
        await store.set_replica_checkpoint(make_signed_checkpoint("DE", 10))
        indexes: dict[str, int] = {}
        for credential_id in ("DE-A", "DE-B", "DE-C"):
            read = await store.get_replica_proof("DE", credential_id, _proof_ids)
            assert read is not None
            assert read.leaf == _replica_leaf("DE", read.index)
            indexes[credential_id] = read.index
        assert indexes == {"DE-A": 8, "DE-B": 3, "DE-C": 9}

    async def test_replica_checkpoint_is_replaced(self, store: Store) -> None:
        await _replicate(store, "DE", 0, 4, checkpoint=True)
        assert await store.replica_checkpoint("DE") == make_signed_checkpoint("DE", 4)
        later = make_signed_checkpoint(
            "DE", 4, timestamp=datetime(2025, 6, 1, 8, 0, 0, 123000, tzinfo=UTC)
        )
        await store.set_replica_checkpoint(later)
        got = await store.replica_checkpoint("DE")
        assert got == later
        assert got is not None
        assert got.envelope.payload == later.envelope.payload  # exact bytes
        assert got.envelope.signature == later.envelope.signature
        await _replicate(store, "DE", 4, 9, checkpoint=True)
        assert await store.replica_checkpoint("DE") == make_signed_checkpoint("DE", 9)
        # An append without a checkpoint leaves the current one alone.
        await _replicate(store, "DE", 9, 12)
        assert await store.replica_checkpoint("DE") == make_signed_checkpoint("DE", 9)
        # A smaller size the replica holds may replace it too.
        await store.set_replica_checkpoint(make_signed_checkpoint("DE", 12))
        assert await store.replica_checkpoint("DE") == make_signed_checkpoint("DE", 12)
        assert await store.replica_checkpoints() == [make_signed_checkpoint("DE", 12)]

    async def test_replica_checkpoints_are_ordered_by_origin(self, store: Store) -> None:
        for origin in ("FR", "AT", "PL", "DE"):
            await _replicate(store, origin, 0, 2, checkpoint=True)
        await _replicate(store, "IT", 0, 2)  # no checkpoint: not listed
        assert await store.replica_checkpoints() == [
            make_signed_checkpoint(origin, 2) for origin in ("AT", "DE", "FR", "PL")
        ]

    async def test_replica_checkpoint_covers_only_held_leaves(self, store: Store) -> None:
        await _replicate(store, "DE", 0, 3, checkpoint=True)
        with pytest.raises(StorageError):
            await store.set_replica_checkpoint(make_signed_checkpoint("DE", 4))
        with pytest.raises(StorageError):
            await store.set_replica_checkpoint(make_signed_checkpoint("FR", 1))
        with pytest.raises(StorageError):
            await store.append_replica(
                ReplicaAppend(
                    "DE", 3, [_replica_leaf("DE", 3)], [], [], make_signed_checkpoint("DE", 5)
                )
            )
        with pytest.raises(StorageError):
            await store.append_replica(
                ReplicaAppend(
                    "DE", 3, [_replica_leaf("DE", 3)], [], [], make_signed_checkpoint("FR", 4)
                )
            )
        assert await store.replica_size("DE") == 3
        assert await store.replica_checkpoint("DE") == make_signed_checkpoint("DE", 3)
        assert await store.replica_checkpoint("FR") is None

    async def test_get_replica_entries_clamps_and_keeps_bytes(self, store: Store) -> None:
        leaves = [b"", b"\x00", bytes(range(256)), b"x" * 10_000, _replica_leaf("DE", 4)]
        await store.append_replica(
            ReplicaAppend("DE", 0, leaves, _replica_nodes("DE", 0, 5), [], None)
        )
        await _replicate(store, "FR", 0, 9)
        assert await store.get_replica_entries("DE", 0, 5) == leaves
        assert await store.get_replica_entries("DE", 0, 1000) == leaves
        assert await store.get_replica_entries("DE", 2, 4) == leaves[2:4]
        assert await store.get_replica_entries("DE", -3, 2) == leaves[:2]
        assert await store.get_replica_entries("DE", 4, 1000) == leaves[4:]
        assert await store.get_replica_entries("DE", 3, 3) == []
        assert await store.get_replica_entries("DE", 4, 2) == []
        assert await store.get_replica_entries("DE", 5, 9) == []
        assert await store.get_replica_entries("AT", 0, 9) == []

    async def test_replica_append_needs_a_leaf_hash_per_leaf_in_order(self, store: Store) -> None:
        leaves = _replica_leaves("DE", 0, 4)
        nodes = _replica_nodes("DE", 0, 4)
        level0 = [n for n in nodes if n[0] == 0]
        for bad in (
            [n for n in nodes if n[0] != 0],  # none
            [n for n in nodes if n != level0[-1]],  # one missing
            [level0[1], level0[0], *[n for n in nodes if n[0] != 0]],  # out of order
        ):
            with pytest.raises(StorageError):
                await store.append_replica(ReplicaAppend("DE", 0, leaves, bad, [], None))
            assert await store.replica_size("DE") == 0
        await store.append_replica(ReplicaAppend("DE", 0, leaves, nodes, [], None))
        got = await store.get_replica_nodes("DE", [(lv, ix) for lv, ix, _ in nodes])
        assert got == {(lv, ix): h for lv, ix, h in nodes}
        assert len([n for n in got if n[0] == 0]) == 4

    async def test_replica_proof_reads_one_snapshot(self, store: Store) -> None:
        await _replicate(store, "DE", 0, 40, statuses=[("DE-P", 17), ("DE-Q", 39)], checkpoint=True)
        await _replicate(store, "FR", 0, 40, statuses=[("FR-P", 17)], checkpoint=True)
        everything = _replica_node_map("DE", 0, 40)
        asked: list[tuple[int, int]] = []

        def ids_for(index: int, size: int) -> list[tuple[int, int]]:
            asked.append((index, size))
            return [(0, index), (2, 3), (5, 0), (9, 9)]  # the last one does not exist

        read = await store.get_replica_proof("DE", "DE-P", ids_for)
        assert read is not None
        assert asked == [(17, 40)]
        assert read.checkpoint == make_signed_checkpoint("DE", 40)
        assert read.index == 17
        assert read.leaf == _replica_leaf("DE", 17)
        assert read.nodes == {i: everything[i] for i in [(0, 17), (2, 3), (5, 0)]}
        assert await store.get_replica_proof("DE", "DE-NONE", ids_for) is None
        assert await store.get_replica_proof("DE", "FR-P", ids_for) is None
        assert await store.get_replica_proof("AT", "DE-P", ids_for) is None
        # A newer entry beyond the checkpoint cannot be proved yet.
        await _replicate(store, "DE", 40, 44, statuses=[("DE-P", 42)])
        assert await store.get_replica_proof("DE", "DE-P", ids_for) is None
        read = await store.get_replica_proof("DE", "DE-Q", ids_for)
        assert read is not None
        assert read.index == 39
        await store.set_replica_checkpoint(make_signed_checkpoint("DE", 44))
        read = await store.get_replica_proof("DE", "DE-P", ids_for)
        assert read is not None
        assert (read.index, read.checkpoint.checkpoint.tree_size) == (42, 44)
        # Entries without a checkpoint at all are not provable.
        await _replicate(store, "AT", 0, 3, statuses=[("AT-P", 1)])
        assert await store.get_replica_proof("AT", "AT-P", ids_for) is None

    async def test_replica_merkle_nodes_rebuild_the_root(self, store: Store) -> None:
        origin = "DE"
        data = [_replica_leaf(origin, i) for i in range(53)]
        hashes = [merkle.leaf_hash(d) for d in data]
        reference = merkle.append_nodes(0, hashes, {})
        reference_nodes = {(level, index): h for level, index, h in reference}
        start = 0
        for end in (1, 2, 7, 8, 20, 33, 53):
            frontier = await store.get_replica_nodes(origin, merkle.frontier_ids(start))
            nodes = merkle.append_nodes(start, hashes[start:end], frontier)
            root = merkle.root_hash(end, reference_nodes)
            await store.append_replica(
                ReplicaAppend(
                    origin,
                    start,
                    data[start:end],
                    nodes,
                    [(f"DE-{i}", i) for i in range(start, end)],
                    make_signed_checkpoint(origin, end, root_hash=root),
                )
            )
            stored = await store.get_replica_nodes(origin, merkle.frontier_ids(end))
            assert merkle.root_hash(end, stored) == root
            start = end
        size = start

        def proof_ids(index: int, tree_size: int) -> list[tuple[int, int]]:
            return merkle.nodes_for_ranges(merkle.inclusion_proof_ranges(index, tree_size))

        for index in (0, 17, 32, 52):
            read = await store.get_replica_proof(origin, f"DE-{index}", proof_ids)
            assert read is not None
            cp = read.checkpoint.checkpoint
            assert cp.tree_size == size
            merkle.verify_inclusion(
                merkle.leaf_hash(read.leaf),
                read.index,
                cp.tree_size,
                merkle.inclusion_proof(read.index, cp.tree_size, read.nodes),
                cp.root_hash,
            )

    async def test_fork_evidence_keeps_the_first_per_origin(self, store: Store) -> None:
        first = b"evidence\x00one" + bytes(range(256))
        assert await store.add_fork_evidence("FR", first) is True
        assert await store.add_fork_evidence("FR", b"evidence two") is False
        assert await store.add_fork_evidence("DE", b"evidence three") is True
        assert await store.add_fork_evidence("DE", b"evidence three") is False
        assert await store.list_fork_evidence() == [("DE", b"evidence three"), ("FR", first)]

    async def test_replicas_survive_reopen(self, store: Store) -> None:
        await _replicate(store, "DE", 0, 6, statuses=[("DE-A", 5)], checkpoint=True)
        await store.add_fork_evidence("FR", b"forked")
        again = await self.reopen(store)
        try:
            assert await again.replica_size("DE") == 6
            assert await again.get_replica_entries("DE", 0, 10) == _replica_leaves("DE", 0, 6)
            expected = _replica_node_map("DE", 0, 6)
            assert await again.get_replica_nodes("DE", list(expected)) == expected
            assert await again.replica_checkpoint("DE") == make_signed_checkpoint("DE", 6)
            read = await again.get_replica_proof("DE", "DE-A", _proof_ids)
            assert read is not None
            assert read.index == 5
            assert await again.list_fork_evidence() == [("FR", b"forked")]
            await _replicate(again, "DE", 6, 7)
            assert await again.replica_size("DE") == 7
        finally:
            await again.close()

    # -- recognition rules -----------------------------------------------------------

    async def test_recognition_rules_keep_every_version_and_serve_the_newest(
        self, store: Store
    ) -> None:
        def rule(country: str, rule_id: str, version: int) -> StoredRule:
            payload = f"{country}/{rule_id}/v{version}".encode()
            return StoredRule(
                country, rule_id, version, Envelope(payload, "t", "k", b"sig" + payload)
            )

        assert await store.current_recognition_rules("FR") == []
        assert await store.recognition_countries() == []
        first = [rule("FR", "elec", 1), rule("FR", "nurse", 1), rule("PL", "elec", 3)]
        assert await store.add_recognition_rules(first) == 3
        # Receiving the same versions again (a partner's rules, twice) adds nothing.
        assert await store.add_recognition_rules([rule("FR", "elec", 1)]) == 0
        assert (
            await store.add_recognition_rules([rule("FR", "elec", 2), rule("FR", "elec", 1)]) == 1
        )
        assert await store.current_recognition_rules("FR") == [
            rule("FR", "elec", 2),
            rule("FR", "nurse", 1),
        ]
        assert await store.current_recognition_rules("PL") == [rule("PL", "elec", 3)]
        assert await store.current_recognition_rules("DE") == []
        assert await store.recognition_countries() == ["FR", "PL"]
        # An older version arriving late never replaces the newest.
        assert await store.add_recognition_rules([rule("PL", "elec", 2)]) == 1
        assert await store.current_recognition_rules("PL") == [rule("PL", "elec", 3)]

    # -- the audit trail ---------------------------------------------------------------

    async def test_audit_trail_is_empty_at_first(self, store: Store) -> None:
        assert await store.audit_records() == []
        assert await store.audit_records_about("DE-7K3F-Q9XM-2PLA-8") == []
        assert await store.audit_index_problem() is None
        assert await store.append_audit([]) == []

    async def test_audit_appends_chain_from_genesis_and_read_back_exactly(
        self, store: Store
    ) -> None:
        first = await store.append_audit([_audit_entry(0), _audit_entry(1)])
        assert [r.seq for r in first] == [1, 2]
        assert first[0].prev_hash == audit.GENESIS
        # A later transaction continues the chain from the newest record.
        second = await store.append_audit([_audit_entry(2, subject=("A", "B", "A"))])
        assert second[0].seq == 3
        assert second[0].prev_hash == first[1].hash
        stored = await store.audit_records()
        assert stored == [*first, *second]
        assert audit.verify_chain(stored) is None
        # Every field survives the round trip, the time to the microsecond.
        assert stored[2].subject == ("A", "B", "A")
        assert stored[0].at == T0
        assert stored[0].at.utcoffset() == timedelta(0)
        assert stored[1].country is None

    async def test_audit_records_page_by_seq(self, store: Store) -> None:
        await store.append_audit([_audit_entry(n) for n in range(7)])
        assert [r.seq for r in await store.audit_records(0, 3)] == [1, 2, 3]
        assert [r.seq for r in await store.audit_records(3, 3)] == [4, 5, 6]
        assert [r.seq for r in await store.audit_records(6, 3)] == [7]
        assert await store.audit_records(7, 3) == []

    async def test_audit_records_about_a_subject(self, store: Store) -> None:
        await store.append_audit(
            [
                _audit_entry(0, subject=("DE-1",)),
                _audit_entry(1, subject=("DE-2",)),
                _audit_entry(2, subject=("DE-2", "DE-1", "DE-1")),
                _audit_entry(3, subject=()),
            ]
        )
        assert [r.seq for r in await store.audit_records_about("DE-1")] == [1, 3]
        assert [r.seq for r in await store.audit_records_about("DE-2")] == [2, 3]
        assert await store.audit_records_about("DE-3") == []
        assert await store.audit_index_problem() is None

    async def test_concurrent_audit_appends_stay_one_chain(self, store: Store) -> None:
        batches = [[_audit_entry(10 * b + n) for n in range(5)] for b in range(12)]
        await asyncio.gather(*(store.append_audit(batch) for batch in batches))
        stored = await store.audit_records(0, 1000)
        assert [r.seq for r in stored] == list(range(1, 61))
        assert audit.verify_chain(stored) is None

    async def test_audit_trail_survives_reopen_and_continues(self, store: Store) -> None:
        before = await store.append_audit([_audit_entry(0), _audit_entry(1)])
        again = await self.reopen(store)
        try:
            assert await again.audit_records() == before
            more = await again.append_audit([_audit_entry(2)])
            assert more[0].seq == 3
            assert more[0].prev_hash == before[-1].hash
            assert audit.verify_chain(await again.audit_records()) is None
        finally:
            await again.close()


def _audit_entry(n: int, subject: tuple[str, ...] = ("DE-7K3F-Q9XM-2PLA-8",)) -> audit.AuditEntry:
    return audit.AuditEntry(
        at=T0 + timedelta(microseconds=n),
        client_id=f"c-{n}",
        client_name=f"Employer {n} GmbH",
        role="verifier",
        country=None if n % 2 else "DE",
        action="Verify",
        subject=subject,
        outcome="OK" if n % 3 else "NOT_FOUND",
        count=1 + n % 4,
    )
