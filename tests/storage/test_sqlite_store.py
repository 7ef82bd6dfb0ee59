"""SqliteStore: the shared storage suite plus SQLite-specific guarantees."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from credfed.errors import AlreadyExistsError, NotFoundError, StorageError
from credfed.models import Role, RoleKind
from credfed.storage.base import ReplicaAppend, Store
from credfed.storage.sqlite import SqliteStore, load_migrations
from credfed.testing.factories import (
    completed_nodes,
    leaf,
    make_checkpoint,
    make_client,
    make_credential,
    make_issuer,
    make_signed_checkpoint,
)
from credfed.testing.store_suite import StoreSuite


def _worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    before = _worker_threads()
    yield
    assert _worker_threads() - before == set()


def _raw(path: Path) -> closing[sqlite3.Connection]:
    """A plain sqlite3 connection, as another tool on the file would open it."""
    return closing(sqlite3.connect(path, isolation_level=None))


class TestSqliteStore(StoreSuite):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[Store]:
        store = await SqliteStore.open(tmp_path / "node.db")
        yield store
        await store.close()

    async def reopen(self, store: Store) -> Store:
        assert isinstance(store, SqliteStore)
        await store.close()
        return await SqliteStore.open(store.path)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = await SqliteStore.open(tmp_path / "node.db")
    yield store
    await store.close()


# -- file and connections ---------------------------------------------------------


async def test_file_is_created_where_asked_and_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "credfed.sqlite3"
    path.parent.mkdir()
    store = await SqliteStore.open(path)
    try:
        assert store.path == path
        assert path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert sorted(p.name for p in path.parent.iterdir())[0] == "credfed.sqlite3"
    finally:
        await store.close()


async def test_missing_directory_is_a_storage_error(
    tmp_path: Path, no_leaked_threads: None
) -> None:
    with pytest.raises(StorageError, match="cannot create database"):
        await SqliteStore.open(tmp_path / "absent" / "node.db")


async def test_a_file_that_is_not_a_database_is_a_storage_error(
    tmp_path: Path, no_leaked_threads: None
) -> None:
    path = tmp_path / "node.db"
    path.write_bytes(b"this is not a database, just some text" * 100)
    with pytest.raises(StorageError):
        await SqliteStore.open(path)


async def test_pragmas_are_set_on_both_connections(sqlite_store: SqliteStore) -> None:
    for conn in (sqlite_store._writer, sqlite_store._reader):
        assert list(await conn.execute_fetchall("PRAGMA journal_mode")) == [("wal",)]
        assert list(await conn.execute_fetchall("PRAGMA synchronous")) == [(2,)]  # FULL
        assert list(await conn.execute_fetchall("PRAGMA foreign_keys")) == [(1,)]
        assert list(await conn.execute_fetchall("PRAGMA busy_timeout")) == [(10000,)]
    assert list(await sqlite_store._reader.execute_fetchall("PRAGMA query_only")) == [(1,)]


async def test_close_is_idempotent_and_leaves_no_threads(tmp_path: Path) -> None:
    before = _worker_threads()
    store = await SqliteStore.open(tmp_path / "node.db")
    assert len(_worker_threads() - before) == 2  # the writer and the reader
    await store.close()
    await store.close()
    assert _worker_threads() - before == set()
    with pytest.raises(StorageError, match="closed"):
        await store.log_size()
    with pytest.raises(StorageError, match="closed"):
        async with store.write():
            pass


# -- migrations ----------------------------------------------------------------------


def test_migrations_are_numbered_from_one() -> None:
    migrations = load_migrations()
    assert [m.number for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].name == "0001_initial.sql"
    for migration in migrations:
        assert migration.name.startswith(f"{migration.number:04d}_")
        assert migration.statements
        # Transactions belong to the loader.
        assert not any(s.upper().startswith(("BEGIN", "COMMIT")) for s in migration.statements)


async def test_reopen_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    newest = load_migrations()[-1].number
    store = await SqliteStore.open(path)
    await store.add_issuer(make_issuer())
    await store.close()
    with _raw(path) as raw:
        schema = raw.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        assert raw.execute("PRAGMA user_version").fetchone() == (newest,)
    store = await SqliteStore.open(path)
    try:
        assert await store.list_issuers() == [make_issuer()]
    finally:
        await store.close()
    with _raw(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (newest,)
        again = raw.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        assert again == schema


async def test_an_empty_existing_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with _raw(path) as raw:
        raw.execute("CREATE TABLE operator_notes (note TEXT)")
    store = await SqliteStore.open(path)
    try:
        assert await store.log_size() == 0
    finally:
        await store.close()
    with _raw(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (load_migrations()[-1].number,)


_REPLICA_TABLES = (
    "replica_leaves",
    "replica_nodes",
    "replica_status",
    "replica_checkpoints",
    "fork_evidence",
)


async def test_a_schema_1_database_gains_the_replica_tables(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    first = load_migrations()[0]
    assert first.number == 1
    with _raw(path) as raw:
        raw.execute("BEGIN")
        for statement in first.statements:
            raw.execute(statement)
        raw.execute("PRAGMA user_version = 1")
        raw.execute("INSERT INTO log_leaves (idx, leaf) VALUES (0, x'0102')")
        raw.execute("COMMIT")
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables.isdisjoint(_REPLICA_TABLES)
    store = await SqliteStore.open(path)
    try:
        assert await store.get_log_entries(0, 5) == [b"\x01\x02"]
        await store.append_replica(
            ReplicaAppend(
                "DE",
                0,
                [b"a", b"b"],
                completed_nodes(0, 2),
                [("DE-1", 1)],
                make_signed_checkpoint("DE", 2),
            )
        )
        assert await store.replica_size("DE") == 2
        assert await store.add_fork_evidence("FR", b"proof") is True
    finally:
        await store.close()
    with _raw(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (load_migrations()[-1].number,)
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables.issuperset(_REPLICA_TABLES)


async def test_a_newer_schema_is_refused(tmp_path: Path, no_leaked_threads: None) -> None:
    path = tmp_path / "node.db"
    store = await SqliteStore.open(path)
    await store.close()
    future = load_migrations()[-1].number + 1
    with _raw(path) as raw:
        raw.execute(f"PRAGMA user_version = {future}")
    with pytest.raises(StorageError, match=f"database schema {future} is newer than this credfed"):
        await SqliteStore.open(path)


# -- append-only log tables ------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE log_leaves SET leaf = x'00' WHERE idx = 0",
        "DELETE FROM log_leaves WHERE idx = 1",
        "DELETE FROM log_leaves",
        "UPDATE log_nodes SET hash = x'00'",
        "DELETE FROM log_nodes",
        "UPDATE checkpoints SET root_hash = x'00'",
        "DELETE FROM checkpoints",
    ],
)
async def test_log_tables_reject_rewrites(tmp_path: Path, statement: str) -> None:
    path = tmp_path / "node.db"
    store = await SqliteStore.open(path)
    try:
        async with store.write() as tx:
            await tx.append_log(0, [leaf(0), leaf(1)], completed_nodes(0, 2))
            await tx.add_checkpoint(make_checkpoint(2))
        with _raw(path) as raw, pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute(statement)
        assert await store.get_log_entries(0, 2) == [leaf(0), leaf(1)]
        assert len(await store.get_log_nodes([(0, 0), (0, 1), (1, 0)])) == 3
        assert await store.latest_checkpoint() == make_checkpoint(2)
    finally:
        await store.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE replica_leaves SET leaf = x'00' WHERE origin = 'DE' AND idx = 0",
        "DELETE FROM replica_leaves WHERE origin = 'DE' AND idx = 1",
        "DELETE FROM replica_leaves",
        "UPDATE replica_nodes SET hash = x'00'",
        "DELETE FROM replica_nodes WHERE origin = 'DE'",
        "UPDATE fork_evidence SET evidence = x'00'",
        "DELETE FROM fork_evidence",
    ],
)
async def test_replica_tables_reject_rewrites(tmp_path: Path, statement: str) -> None:
    path = tmp_path / "node.db"
    store = await SqliteStore.open(path)
    try:
        await store.append_replica(
            ReplicaAppend("DE", 0, [leaf(0), leaf(1)], completed_nodes(0, 2), [], None)
        )
        await store.add_fork_evidence("DE", b"evidence")
        with _raw(path) as raw, pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute(statement)
        assert await store.get_replica_entries("DE", 0, 2) == [leaf(0), leaf(1)]
        assert len(await store.get_replica_nodes("DE", [(0, 0), (0, 1), (1, 0)])) == 3
        assert await store.list_fork_evidence() == [("DE", b"evidence")]
    finally:
        await store.close()


# -- replicas ----------------------------------------------------------------------------


async def test_replica_size_is_a_primary_key_lookup(sqlite_store: SqliteStore) -> None:
    rows = await sqlite_store._reader.execute_fetchall(
        "EXPLAIN QUERY PLAN SELECT max(idx) FROM replica_leaves WHERE origin = ?", ("DE",)
    )
    plan = " ".join(str(r[-1]) for r in rows)
    assert "USING PRIMARY KEY (origin=?)" in plan
    assert "SCAN" not in plan


async def test_a_failed_replica_append_leaves_no_rows(sqlite_store: SqliteStore) -> None:
    def batch(nodes: list[tuple[int, int, bytes]]) -> ReplicaAppend:
        return ReplicaAppend(
            "DE", 0, [leaf(0), leaf(1)], nodes, [("DE-1", 1)], make_signed_checkpoint("DE", 2)
        )

    with pytest.raises(StorageError, match="out of range"):
        await sqlite_store.append_replica(batch([(0, 0, b"x"), (64, 0, b"y")]))
    # A node twice: the leaves, statuses and checkpoint before it roll back.
    with pytest.raises(StorageError):
        await sqlite_store.append_replica(batch([(0, 0, b"x"), (0, 0, b"y")]))
    assert await sqlite_store.replica_size("DE") == 0
    assert await sqlite_store.get_replica_nodes("DE", [(0, 0)]) == {}
    assert await sqlite_store.replica_checkpoint("DE") is None
    with _raw(sqlite_store.path) as raw:
        assert raw.execute("SELECT count(*) FROM replica_status").fetchone() == (0,)
    await sqlite_store.append_replica(batch(completed_nodes(0, 2)))
    assert await sqlite_store.replica_size("DE") == 2


async def test_replica_catch_up_of_many_entries(sqlite_store: SqliteStore) -> None:
    count = 20_000
    leaves = [leaf(i) for i in range(count)]
    await sqlite_store.append_replica(
        ReplicaAppend(
            "DE",
            0,
            leaves,
            completed_nodes(0, count),
            [(f"DE-{i}", i) for i in range(count)],
            make_signed_checkpoint("DE", count),
        )
    )
    assert await sqlite_store.replica_size("DE") == count
    assert await sqlite_store.get_replica_entries("DE", count - 2, count + 5) == leaves[-2:]
    read = await sqlite_store.get_replica_proof("DE", "DE-12345", lambda i, n: [(0, i)])
    assert read is not None
    assert (read.index, read.leaf) == (12345, leaf(12345))
    assert read.nodes == {(0, 12345): completed_nodes(12345, 12346)[0][2]}


# -- transactions ---------------------------------------------------------------------


async def test_another_process_writer_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = await SqliteStore.open(path)
    try:
        with _raw(path) as other:
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO log_leaves (idx, leaf) VALUES (0, x'01')")

            async def write() -> int:
                async with store.write() as tx:
                    size = await tx.log_size()
                    await tx.append_log(size, [leaf(size)], [])
                    return size

            task = asyncio.create_task(write())
            await asyncio.sleep(0.2)
            assert not task.done()  # BEGIN IMMEDIATE waits on the busy timeout
            other.execute("COMMIT")
            async with asyncio.timeout(5):
                assert await task == 1  # and then sees the other writer's leaf
        assert await store.get_log_entries(0, 2) == [b"\x01", leaf(1)]
    finally:
        await store.close()


async def test_cancel_while_waiting_for_another_process(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = await SqliteStore.open(path)
    try:
        with _raw(path) as other:
            other.execute("BEGIN IMMEDIATE")

            async def write() -> None:
                async with store.write() as tx:
                    await tx.append_log(0, [leaf(0)], [])

            task = asyncio.create_task(write())
            await asyncio.sleep(0.1)
            task.cancel()
            await asyncio.sleep(0.1)
            # The BEGIN still sits in SQLite's busy wait; the cancelled
            # block must not return (and free the writer) before undoing
            # it, even when cancelled again.
            assert not task.done()
            task.cancel()
            await asyncio.sleep(0.1)
            assert not task.done()
            other.execute("COMMIT")
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await store.log_size() == 0
        async with asyncio.timeout(5), store.write() as tx:
            await tx.append_log(0, [leaf(0)], [])
        assert await store.log_size() == 1
    finally:
        await store.close()


async def test_nested_write_in_one_task_is_refused(sqlite_store: SqliteStore) -> None:
    async with sqlite_store.write() as tx:
        with pytest.raises(StorageError, match="already open"):
            async with sqlite_store.write():
                pass
        with pytest.raises(StorageError, match="already open"):
            await sqlite_store.add_issuer(make_issuer())
        await tx.append_log(0, [leaf(0)], [])
    assert await sqlite_store.log_size() == 1


async def test_transaction_is_unusable_after_its_block(sqlite_store: SqliteStore) -> None:
    async with sqlite_store.write() as tx:
        pass
    with pytest.raises(StorageError, match="over"):
        await tx.append_log(0, [leaf(0)], [])
    assert await sqlite_store.log_size() == 0


async def test_a_failed_call_leaves_no_partial_rows(sqlite_store: SqliteStore) -> None:
    await sqlite_store.add_issuer(make_issuer())
    async with sqlite_store.write() as tx:
        batch = [make_credential("XX-A"), make_credential("XX-B"), make_credential("XX-A")]
        with pytest.raises(AlreadyExistsError, match="XX-A"):
            await tx.insert_credentials(batch)
        assert await tx.get_credential("XX-A") is None
        assert await tx.get_credential("XX-B") is None
        await tx.insert_credentials([make_credential("XX-C")])

        await tx.append_log(0, [leaf(0)], completed_nodes(0, 1))
        with pytest.raises(AlreadyExistsError):
            # (0, 0) is stored already: the new leaf must not stay behind.
            await tx.append_log(1, [leaf(1)], [(0, 0, b"x"), (0, 1, b"y")])
        assert await tx.log_size() == 1
        assert await tx.get_log_nodes([(0, 1)]) == {}
    assert await sqlite_store.get_credential("XX-C") == make_credential("XX-C")
    assert await sqlite_store.get_credential("XX-A") is None
    assert await sqlite_store.log_size() == 1


async def test_credential_of_unknown_issuer_is_not_found(sqlite_store: SqliteStore) -> None:
    with pytest.raises(NotFoundError, match="ISS-GHOST"):
        async with sqlite_store.write() as tx:
            await tx.insert_credentials([make_credential(issuer_id="ISS-GHOST")])


async def test_naive_datetimes_are_refused(sqlite_store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        await sqlite_store.add_client(make_client(created_at=datetime(2025, 1, 1)))
    assert await sqlite_store.list_clients() == []


async def test_out_of_range_node_ids_are_refused_or_absent(sqlite_store: SqliteStore) -> None:
    with pytest.raises(StorageError, match="out of range"):
        async with sqlite_store.write() as tx:
            await tx.append_log(0, [], [(64, 0, b"x")])
    assert await sqlite_store.get_log_nodes([(64, 0), (-1, 0), (0, 1 << 56)]) == {}


# -- the hot path -----------------------------------------------------------------------


async def test_get_log_nodes_is_one_query(sqlite_store: SqliteStore) -> None:
    async with sqlite_store.write() as tx:
        await tx.append_log(0, [leaf(i) for i in range(200)], completed_nodes(0, 200))
    wanted = [(level, index) for level, index, _ in completed_nodes(0, 200)][:60]
    statements: list[str] = []
    await sqlite_store._reader.set_trace_callback(statements.append)
    try:
        got = await sqlite_store.get_log_nodes(wanted)
    finally:
        await sqlite_store._reader.set_trace_callback(None)  # type: ignore[arg-type]
    assert len(got) == 60
    assert len(statements) == 1
    assert statements[0].startswith("SELECT")


async def test_commit_is_visible_to_a_fresh_connection(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = await SqliteStore.open(path)
    try:
        async with store.write() as tx:
            await tx.append_log(0, [leaf(0)], [])
        with _raw(path) as other:
            assert other.execute("SELECT leaf FROM log_leaves").fetchall() == [(leaf(0),)]
    finally:
        await store.close()


async def test_a_schema_6_database_gains_the_peer_partner_column(tmp_path: Path) -> None:
    """Clients created before schema 7 keep working, with no partner recorded
    (a peer one is refused on the federation port until recreated)."""
    path = tmp_path / "node.db"
    with _raw(path) as raw:
        raw.execute("BEGIN")
        for migration in load_migrations()[:6]:
            for statement in migration.statements:
                raw.execute(statement)
        raw.execute("PRAGMA user_version = 6")
        raw.execute(
            "INSERT INTO clients (client_id, name, role, token_hash, created_at)"
            " VALUES ('c-old', 'FR node', 'peer', x'0102', 0)"
        )
        raw.execute("COMMIT")
        columns = {r[1] for r in raw.execute("PRAGMA table_info(clients)")}
        assert "partner" not in columns
    store = await SqliteStore.open(path)
    try:
        old = await store.get_client_by_token_hash(b"\x01\x02")
        assert old is not None
        assert (old.name, str(old.role), old.partner) == ("FR node", "peer", None)
        new = replace(make_client("c-new", role=Role(RoleKind.PEER)), partner="PL")
        await store.add_client(new)
        assert await store.get_client_by_token_hash(new.token_hash) == new
    finally:
        await store.close()
    with _raw(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone() == (7,)
        assert raw.execute("SELECT client_id, partner FROM clients ORDER BY 1").fetchall() == [
            ("c-new", "PL"),
            ("c-old", None),
        ]
