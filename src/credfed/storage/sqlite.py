"""The SQLite backend: the embedded default store.

Connections sharing one WAL database file:

* the *writer* runs every write transaction (``BEGIN IMMEDIATE``, so other
  processes on the same file are serialised too) under one asyncio lock;
* the *reader* serves every :class:`Store` read. In WAL mode it sees only
  committed data and is never blocked by an open write transaction, however
  long a bulk import keeps it open;
* a third, plain sqlite3 connection serves the verify hot paths
  (:meth:`SqliteStore.get_credential_proof` and
  :meth:`SqliteStore.get_replica_proof`) on the event loop itself; see
  :class:`_SnapshotReader` for why.

``synchronous=FULL`` makes every acknowledged commit durable across a power
loss. The schema is created by the numbered scripts in ``migrations/``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from itertools import repeat
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite

from credfed import audit
from credfed.errors import AlreadyExistsError, NotFoundError, StorageError
from credfed.models import (
    Checkpoint,
    Client,
    Envelope,
    Issuer,
    IssuerStatus,
    SignedCheckpoint,
    Status,
    StatusState,
    StoredCredential,
    parse_role,
)
from credfed.storage.base import (
    CredentialProofRead,
    NodeId,
    RecoveredEntries,
    ReplicaAppend,
    ReplicaProofRead,
    StoredRule,
    WriteTx,
)

__all__ = ["Migration", "SqliteStore", "load_migrations"]

Row = tuple[Any, ...]
_T = TypeVar("_T")

# RETURNING needs 3.35.
_MIN_SQLITE: Final = (3, 35, 0)

# One statement per (level, index) lookup would cost a round trip each; a
# packed integer key turns a batch into one IN list on the rowid.
_LEVEL_SHIFT: Final = 56
_MAX_LEVEL: Final = 63
_INDEX_MASK: Final = (1 << _LEVEL_SHIFT) - 1

# Stays far below SQLITE_MAX_VARIABLE_NUMBER (32766 since 3.32).
_MAX_PARAMS: Final = 500
# IN lists are padded to a multiple of this so few distinct statements
# compete for the statement cache.
_IN_BUCKET: Final = 16

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICROSECOND: Final = timedelta(microseconds=1)

_PRAGMAS: Final = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 10000",
)

_CREDENTIAL_COLUMNS: Final = (
    "credential_id, issuer_id, family_key, birth_date, valid_until, supersedes, "
    "record_payload, record_payload_type, record_key_id, record_signature, "
    "status, reason, effective_at, suspended_until, appeal_case_ref, superseded_by, "
    "last_entry_index"
)
_CHECKPOINT_COLUMNS: Final = (
    "tree_size, origin, root_hash, timestamp, payload, payload_type, key_id, signature"
)
_CLIENT_COLUMNS: Final = (
    "client_id, name, role, token_hash, created_at, expires_at, revoked_at, partner"
)
_ISSUER_COLUMNS: Final = "issuer_id, name, sectors, status"

# Statements built once from the fixed column lists above (never from input,
# hence the S608 waivers).
_GET_CREDENTIAL: Final = f"SELECT {_CREDENTIAL_COLUMNS} FROM credentials WHERE credential_id = ?"  # noqa: S608
_INSERT_CREDENTIAL: Final = (
    f"INSERT INTO credentials ({_CREDENTIAL_COLUMNS}) "  # noqa: S608
    f"VALUES ({','.join('?' * (_CREDENTIAL_COLUMNS.count(',') + 1))})"
)
_SET_STATE: Final = (
    "UPDATE credentials SET status = ?, reason = ?, effective_at = ?, suspended_until = ?, "
    "appeal_case_ref = ?, superseded_by = ?, last_entry_index = ? WHERE credential_id = ?"
)
_UPDATE_STATE: Final = f"{_SET_STATE} RETURNING credential_id"
_GET_ISSUER: Final = f"SELECT {_ISSUER_COLUMNS} FROM issuers WHERE issuer_id = ?"  # noqa: S608
_LIST_ISSUERS: Final = f"SELECT {_ISSUER_COLUMNS} FROM issuers ORDER BY issuer_id"  # noqa: S608
_INSERT_ISSUER: Final = f"INSERT INTO issuers ({_ISSUER_COLUMNS}) VALUES (?, ?, ?, ?)"  # noqa: S608
_SET_ISSUER_STATUS: Final = (
    f"UPDATE issuers SET status = ? WHERE issuer_id = ? RETURNING {_ISSUER_COLUMNS}"  # noqa: S608
)
_GET_CLIENT_BY_TOKEN: Final = f"SELECT {_CLIENT_COLUMNS} FROM clients WHERE token_hash = ?"  # noqa: S608
_LIST_CLIENTS: Final = f"SELECT {_CLIENT_COLUMNS} FROM clients ORDER BY client_id"  # noqa: S608
_INSERT_CLIENT: Final = f"INSERT INTO clients ({_CLIENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
# Revoking twice keeps the first time.
_REVOKE_CLIENT: Final = (
    "UPDATE clients SET revoked_at = coalesce(revoked_at, ?) "  # noqa: S608
    f"WHERE client_id = ? RETURNING {_CLIENT_COLUMNS}"
)
_INSERT_CHECKPOINT: Final = (
    f"INSERT INTO checkpoints ({_CHECKPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
)
_LATEST_CHECKPOINT: Final = (
    f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY tree_size DESC LIMIT 1"  # noqa: S608
)
_GET_CHECKPOINT: Final = f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints WHERE tree_size = ?"  # noqa: S608

# Replicas of other origins' logs (same column order, so _checkpoint reads
# their rows too).
_REPLICA_SIZE: Final = "SELECT max(idx) FROM replica_leaves WHERE origin = ?"
_INSERT_REPLICA_LEAF: Final = (
    "INSERT INTO replica_leaves (origin, idx, leaf, hash) VALUES (?, ?, ?, ?)"
)
_INSERT_REPLICA_NODE: Final = "INSERT INTO replica_nodes (origin, node_key, hash) VALUES (?, ?, ?)"
_UPSERT_REPLICA_STATUS: Final = (
    "INSERT INTO replica_status (origin, credential_id, idx) VALUES (?, ?, ?) "
    "ON CONFLICT (origin, credential_id) DO UPDATE SET idx = excluded.idx "
    "WHERE excluded.idx > replica_status.idx"
)
_UPSERT_REPLICA_CHECKPOINT: Final = (
    f"INSERT INTO replica_checkpoints ({_CHECKPOINT_COLUMNS}) "  # noqa: S608
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
    "tree_size = excluded.tree_size, root_hash = excluded.root_hash, "
    "timestamp = excluded.timestamp, payload = excluded.payload, "
    "payload_type = excluded.payload_type, key_id = excluded.key_id, "
    "signature = excluded.signature"
)
_GET_REPLICA_CHECKPOINT: Final = (
    f"SELECT {_CHECKPOINT_COLUMNS} FROM replica_checkpoints WHERE origin = ?"  # noqa: S608
)
_LIST_REPLICA_CHECKPOINTS: Final = (
    f"SELECT {_CHECKPOINT_COLUMNS} FROM replica_checkpoints ORDER BY origin"  # noqa: S608
)
_INSERT_RULE: Final = (
    "INSERT OR IGNORE INTO recognition_rules "
    "(country, rule_id, version, payload, payload_type, key_id, signature) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)
# The newest version of each rule: max(version) per rule id, on the primary key.
_CURRENT_RULES: Final = (
    "SELECT r.country, r.rule_id, r.version, r.payload, r.payload_type, r.key_id, r.signature "
    "FROM recognition_rules AS r JOIN ("
    "  SELECT rule_id, max(version) AS version FROM recognition_rules"
    "  WHERE country = ?1 GROUP BY rule_id"
    ") AS newest ON r.rule_id = newest.rule_id AND r.version = newest.version "
    "WHERE r.country = ?1 ORDER BY r.rule_id"
)
_GET_REPLICA_STATUS: Final = "SELECT idx FROM replica_status WHERE origin = ? AND credential_id = ?"
_GET_REPLICA_LEAF: Final = "SELECT leaf FROM replica_leaves WHERE origin = ? AND idx = ?"
_INSERT_FORK_EVIDENCE: Final = (
    "INSERT INTO fork_evidence (origin, evidence, recorded_at) VALUES (?, ?, ?) "
    "ON CONFLICT (origin) DO NOTHING RETURNING origin"
)
_AUDIT_COLUMNS: Final = (
    "seq, at, client_id, client_name, role, country, action, subject, count, outcome, "
    "prev_hash, hash"
)
_AUDIT_HEAD: Final = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_INSERT_AUDIT: Final = (
    f"INSERT INTO audit_log ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
)
_INSERT_AUDIT_SUBJECT: Final = "INSERT INTO audit_subjects (subject, seq) VALUES (?, ?)"
_AUDIT_PAGE: Final = f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?"  # noqa: S608
_AUDIT_ABOUT: Final = (
    f"SELECT {_AUDIT_COLUMNS} FROM audit_log WHERE seq IN ("  # noqa: S608
    "  SELECT seq FROM audit_subjects WHERE subject = ?"
    ") ORDER BY seq"
)
# The subject index must be exactly the records' subjects, both ways.
_AUDIT_INDEX_EXTRA: Final = (
    "SELECT s.seq, s.subject FROM audit_subjects AS s WHERE NOT EXISTS ("
    "  SELECT 1 FROM audit_log AS a, json_each(a.subject) AS j"
    "  WHERE a.seq = s.seq AND j.value = s.subject"
    ") ORDER BY s.seq LIMIT 1"
)
_AUDIT_INDEX_MISSING: Final = (
    "SELECT a.seq, j.value FROM audit_log AS a, json_each(a.subject) AS j WHERE NOT EXISTS ("
    "  SELECT 1 FROM audit_subjects AS s WHERE s.subject = j.value AND s.seq = a.seq"
    ") ORDER BY a.seq LIMIT 1"
)

_MIGRATION_NAME: Final = re.compile(r"^(\d{4})_\w+\.sql$")

_PROBE_WRITE: Final = (
    "INSERT INTO health_probe (id, probed_at) VALUES (1, ?) "
    "ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at"
)
_PROBE_READ: Final = "SELECT max(idx) FROM log_leaves"


# -- conversions --------------------------------------------------------------


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch; refuses naive datetimes (ambiguous)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} (the store needs tz-aware UTC)")
    return (moment - _EPOCH) // _ONE_MICROSECOND


def _from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _day(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _node_key(level: int, index: int) -> int | None:
    if 0 <= level <= _MAX_LEVEL and 0 <= index <= _INDEX_MASK:
        return (level << _LEVEL_SHIFT) | index
    return None


def _node_id(key: int) -> NodeId:
    return key >> _LEVEL_SHIFT, key & _INDEX_MASK


def _credential_params(c: StoredCredential) -> Row:
    s = c.state
    return (
        c.credential_id,
        c.issuer_id,
        c.family_key,
        c.birth_date.isoformat(),
        _iso(c.valid_until),
        c.supersedes,
        bytes(c.record.payload),
        c.record.payload_type,
        c.record.key_id,
        bytes(c.record.signature),
        s.status.value,
        s.reason,
        _micros(s.effective_at),
        _iso(s.suspended_until),
        s.appeal_case_ref,
        s.superseded_by,
        c.last_entry_index,
    )


def _credential(row: Row) -> StoredCredential:
    return StoredCredential(
        credential_id=row[0],
        issuer_id=row[1],
        family_key=row[2],
        birth_date=date.fromisoformat(row[3]),
        valid_until=_day(row[4]),
        supersedes=row[5],
        record=Envelope(payload=row[6], payload_type=row[7], key_id=row[8], signature=row[9]),
        state=StatusState(
            status=Status(row[10]),
            reason=row[11],
            effective_at=_from_micros(row[12]),
            suspended_until=_day(row[13]),
            appeal_case_ref=row[14],
            superseded_by=row[15],
        ),
        last_entry_index=row[16],
    )


def _state_params(credential_id: str, state: StatusState, last_entry_index: int) -> Row:
    return (
        state.status.value,
        state.reason,
        _micros(state.effective_at),
        _iso(state.suspended_until),
        state.appeal_case_ref,
        state.superseded_by,
        last_entry_index,
        credential_id,
    )


def _issuer(row: Row) -> Issuer:
    return Issuer(
        issuer_id=row[0],
        name=row[1],
        sectors=tuple(json.loads(row[2])),
        status=IssuerStatus(row[3]),
    )


def _client(row: Row) -> Client:
    return Client(
        client_id=row[0],
        name=row[1],
        role=parse_role(row[2]),
        token_hash=row[3],
        created_at=_from_micros(row[4]),
        expires_at=None if row[5] is None else _from_micros(row[5]),
        revoked_at=None if row[6] is None else _from_micros(row[6]),
        partner=row[7],
    )


def _checkpoint(row: Row) -> SignedCheckpoint:
    return SignedCheckpoint(
        checkpoint=Checkpoint(
            origin=row[1], tree_size=row[0], root_hash=row[2], timestamp=_from_micros(row[3])
        ),
        envelope=Envelope(payload=row[4], payload_type=row[5], key_id=row[6], signature=row[7]),
    )


def _checkpoint_params(checkpoint: SignedCheckpoint) -> Row:
    """Parameters in _CHECKPOINT_COLUMNS order."""
    cp, env = checkpoint.checkpoint, checkpoint.envelope
    return (
        cp.tree_size,
        cp.origin,
        bytes(cp.root_hash),
        _micros(cp.timestamp),
        bytes(env.payload),
        env.payload_type,
        env.key_id,
        bytes(env.signature),
    )


def _node_keys(ids: Iterable[NodeId]) -> list[int]:
    """The sorted distinct keys of ``ids``; out-of-range ids cannot be stored
    and are left out."""
    return sorted({k for level, index in ids if (k := _node_key(level, index)) is not None})


def _chunks(items: Sequence[_T], size: int) -> Iterable[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


# -- connection helpers -------------------------------------------------------


async def _fetch(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    """Run one statement in one round trip. IntegrityError passes through for
    the caller to name the duplicate; every other sqlite error is a StorageError."""
    try:
        rows = await conn.execute_fetchall(sql, params)
    except sqlite3.IntegrityError:
        raise
    except sqlite3.Error as e:
        raise StorageError(f"sqlite: {e}") from e
    return [tuple(r) for r in rows]


async def _many(conn: aiosqlite.Connection, sql: str, rows: Sequence[Row]) -> None:
    try:
        await conn.executemany(sql, rows)
    except sqlite3.IntegrityError:
        raise
    except sqlite3.Error as e:
        raise StorageError(f"sqlite: {e}") from e


async def _to_completion(step: Awaitable[None]) -> None:
    """Await ``step`` even if this task is cancelled meanwhile, then re-raise
    the cancellation: the write lock must stay held until the COMMIT or
    ROLLBACK has really run, so the next writer never meets a half-ended
    transaction (whatever order aiosqlite happens to run queued calls in)."""

    async def run() -> None:
        await step

    task = asyncio.ensure_future(run())
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # consumed, so asyncio does not log it as unretrieved
        raise asyncio.CancelledError
    task.result()


async def _end_transaction(step: Awaitable[None], what: str) -> None:
    try:
        await _to_completion(step)
    except sqlite3.Error as e:
        raise StorageError(f"{what} failed: {e}") from e


async def _connect(path: Path, *, read_only: bool) -> aiosqlite.Connection:
    try:
        # isolation_level=None: the store issues BEGIN/COMMIT itself.
        conn = await aiosqlite.connect(path, isolation_level=None, cached_statements=256)
    except sqlite3.Error as e:
        raise StorageError(f"cannot open database {path}: {e}") from e
    try:
        for pragma in _PRAGMAS:
            rows = await _fetch(conn, pragma)
            if pragma.startswith("PRAGMA journal_mode") and rows[0][0].lower() != "wal":
                raise StorageError(f"database {path}: cannot switch to WAL journal mode")
        if read_only:
            # Defence in depth: the reader must never write.
            await _fetch(conn, "PRAGMA query_only = ON")
    except BaseException:
        await _close(conn)
        raise
    return conn


async def _close(conn: aiosqlite.Connection) -> None:
    # aiosqlite resolves close() from its worker thread just before that
    # thread exits; wait for the exit so no thread outlives the store.
    # (_thread is private: if a release renames it, we only skip the wait.)
    thread = getattr(conn, "_thread", None)
    await conn.close()
    if isinstance(thread, threading.Thread):
        for _ in range(1000):
            if not thread.is_alive():
                break
            await asyncio.sleep(0.001)


def _probe_write(path: Path, busy_timeout: float, at: int) -> None:
    """One tiny write transaction on a connection of its own, in a worker
    thread: the writer's lock and 10 s busy timeout stay out of it. mode=rw:
    a deleted database file is an error, not a new empty one."""
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None, timeout=busy_timeout
    )
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(_PROBE_WRITE, (at,))
        conn.execute("COMMIT")
    finally:
        conn.close()  # rolls back whatever did not commit


def _create_private(path: Path) -> None:
    """Create the database file owner-only (it holds personal data); SQLite
    gives its -wal and -shm files the same mode."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    except OSError as e:
        raise StorageError(f"cannot create database {path}: {e.strerror}") from e
    os.close(fd)


# -- migrations ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    statements: tuple[str, ...]


def _split_statements(name: str, script: str) -> tuple[str, ...]:
    """Split a script at the semicolons SQLite itself deems statement ends
    (so trigger bodies, strings and comments stay whole). executescript()
    cannot be used: it commits any open transaction first."""
    statements: list[str] = []
    start = 0
    for pos, char in enumerate(script):
        if char == ";" and sqlite3.complete_statement(script[start : pos + 1]):
            statements.append(script[start : pos + 1].strip())
            start = pos + 1
    rest = "\n".join(
        line for line in script[start:].splitlines() if not line.strip().startswith("--")
    )
    if rest.strip():
        raise StorageError(f"migration {name}: text after the last complete statement")
    return tuple(statements)


def load_migrations() -> list[Migration]:
    """The packaged migrations in order; numbers must run 1, 2, 3 ..."""
    folder = resources.files("credfed.storage").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            continue
        found.append(
            Migration(
                int(match.group(1)),
                entry.name,
                _split_statements(entry.name, entry.read_text(encoding="utf-8")),
            )
        )
    found.sort(key=lambda m: m.number)
    for expected, migration in enumerate(found, start=1):
        if migration.number != expected:
            raise StorageError(f"migrations are not numbered 1..n: {migration.name}")
    return found


async def _user_version(conn: aiosqlite.Connection) -> int:
    rows = await _fetch(conn, "PRAGMA user_version")
    return int(rows[0][0])


async def _migrate(conn: aiosqlite.Connection, migrations: Sequence[Migration]) -> None:
    newest = migrations[-1].number if migrations else 0
    current = await _user_version(conn)
    if current > newest:
        raise StorageError(
            f"database schema {current} is newer than this credfed (it knows up to {newest})"
        )
    for migration in migrations:
        if migration.number <= current:
            continue
        try:
            await _fetch(conn, "BEGIN IMMEDIATE")
            # Another process may have applied it while we waited for the lock.
            if await _user_version(conn) < migration.number:
                for statement in migration.statements:
                    await _fetch(conn, statement)
                await _fetch(conn, f"PRAGMA user_version = {migration.number}")
            await _end_transaction(conn.commit(), "commit")
        except BaseException as e:
            await _end_transaction(conn.rollback(), "rollback")
            if isinstance(e, sqlite3.Error):
                raise StorageError(f"migration {migration.name} failed: {e}") from e
            raise


# -- shared reads ---------------------------------------------------------------
# Used by the store (on the reader) and by a transaction (on the writer).


async def _log_size(conn: aiosqlite.Connection) -> int:
    rows = await _fetch(conn, "SELECT max(idx) FROM log_leaves")
    top = rows[0][0]
    return 0 if top is None else int(top) + 1


async def _replica_size(conn: aiosqlite.Connection, origin: str) -> int:
    rows = await _fetch(conn, _REPLICA_SIZE, (origin,))
    top = rows[0][0]
    return 0 if top is None else int(top) + 1


async def _get_log_nodes(conn: aiosqlite.Connection, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
    keys = _node_keys(ids)
    found: dict[NodeId, bytes] = {}
    for chunk in _chunks(keys, _MAX_PARAMS):
        padded = list(chunk) + [chunk[0]] * (-len(chunk) % _IN_BUCKET)
        sql = (
            f"SELECT node_key, hash FROM log_nodes WHERE node_key IN ({_placeholders(len(padded))})"  # noqa: S608 (placeholders only)
        )
        for key, digest in await _fetch(conn, sql, padded):
            found[_node_id(key)] = digest
    return found


def _replica_nodes_sql(count: int) -> str:
    return (
        "SELECT node_key, hash FROM replica_nodes "  # noqa: S608 (placeholders only)
        f"WHERE origin = ? AND node_key IN ({_placeholders(count)})"
    )


def _replica_leaf_hashes_sql(count: int) -> str:
    return (
        "SELECT idx, hash FROM replica_leaves "  # noqa: S608 (placeholders only)
        f"WHERE origin = ? AND idx IN ({_placeholders(count)})"
    )


def _split_levels(ids: Sequence[NodeId]) -> tuple[list[int], list[int]]:
    """Leaf indexes (level 0, kept in replica_leaves) and packed keys of the
    other nodes (replica_nodes)."""
    leaves = [index for level, index in ids if level == 0]
    return leaves, _node_keys(node for node in ids if node[0] != 0)


async def _get_replica_nodes(
    conn: aiosqlite.Connection, origin: str, ids: Sequence[NodeId]
) -> dict[NodeId, bytes]:
    leaves, keys = _split_levels(ids)
    found: dict[NodeId, bytes] = {}
    for chunk in _chunks(keys, _MAX_PARAMS):
        padded = list(chunk) + [chunk[0]] * (-len(chunk) % _IN_BUCKET)
        for key, digest in await _fetch(conn, _replica_nodes_sql(len(padded)), [origin, *padded]):
            found[_node_id(key)] = digest
    for chunk in _chunks(leaves, _MAX_PARAMS):
        padded = list(chunk) + [chunk[0]] * (-len(chunk) % _IN_BUCKET)
        sql = _replica_leaf_hashes_sql(len(padded))
        for index, digest in await _fetch(conn, sql, [origin, *padded]):
            found[(0, index)] = digest
    return found


async def _get_credential(
    conn: aiosqlite.Connection, credential_id: str
) -> StoredCredential | None:
    rows = await _fetch(conn, _GET_CREDENTIAL, (credential_id,))
    return _credential(rows[0]) if rows else None


async def _get_issuer(conn: aiosqlite.Connection, issuer_id: str) -> Issuer | None:
    rows = await _fetch(conn, _GET_ISSUER, (issuer_id,))
    return _issuer(rows[0]) if rows else None


_SNAPSHOT_MMAP_BYTES: Final = 4 * 1024**3  # address space only; the OS pages it in


class _SnapshotReader:
    """A plain sqlite3 connection for the verify hot path: a few point reads
    (one row, one leaf, ~20 Merkle nodes) in one read transaction, i.e. one
    consistent snapshot, run on the event loop thread itself.

    Why not a thread: these reads come from the page cache in tens of
    microseconds, while a hop to a worker thread and back costs about 0.3 ms
    of the loop's time under GIL contention (measured: Verify went from
    1,286 to 2,247 calls/s, docs/performance.md). The price: a read that
    misses the page cache blocks the loop for the disk's latency, so a node
    should have RAM for its database (1.1 GB per million credentials).
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA query_only = ON")
            # WAL readers wait only in rare recovery cases: never stall the loop long.
            self._conn.execute("PRAGMA busy_timeout = 100")
            # Read pages through a memory map instead of a pread() each: the
            # deeper B-trees of a large registry otherwise show in the p99.
            self._conn.execute(f"PRAGMA mmap_size = {_SNAPSHOT_MMAP_BYTES}")
        try:
            self._conn.execute("BEGIN")
            try:
                return fn(self._conn)
            finally:
                self._conn.execute("COMMIT")
        except sqlite3.Error as e:
            raise StorageError(f"sqlite: {e}") from e

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _read_credential_proof(
    conn: sqlite3.Connection, credential_id: str, node_ids: Callable[[int], Sequence[NodeId]]
) -> CredentialProofRead | None:
    row = conn.execute(_GET_CREDENTIAL, (credential_id,)).fetchone()
    if row is None:
        return None
    credential = _credential(tuple(row))
    index = credential.last_entry_index
    leaf = conn.execute("SELECT leaf FROM log_leaves WHERE idx = ?", (index,)).fetchone()
    if leaf is None:
        raise StorageError(f"log entry {index} of {credential_id} is missing")
    keys = _node_keys(node_ids(index))
    nodes: dict[NodeId, bytes] = {}
    for chunk in _chunks(keys, _MAX_PARAMS):
        sql = (
            f"SELECT node_key, hash FROM log_nodes WHERE node_key IN ({_placeholders(len(chunk))})"  # noqa: S608 (placeholders only)
        )
        for key, digest in conn.execute(sql, chunk):
            nodes[_node_id(key)] = digest
    return CredentialProofRead(credential, leaf[0], nodes)


def _read_replica_proof(
    conn: sqlite3.Connection,
    origin: str,
    credential_id: str,
    node_ids: Callable[[int, int], Sequence[NodeId]],
) -> ReplicaProofRead | None:
    row = conn.execute(_GET_REPLICA_CHECKPOINT, (origin,)).fetchone()
    if row is None:
        return None
    checkpoint = _checkpoint(tuple(row))
    size = checkpoint.checkpoint.tree_size
    status = conn.execute(_GET_REPLICA_STATUS, (origin, credential_id)).fetchone()
    # An entry beyond the checkpoint (appended without one) is not provable
    # yet, and the older entries it replaced are not indexed.
    if status is None or status[0] >= size:
        return None
    index = int(status[0])
    leaf = conn.execute(_GET_REPLICA_LEAF, (origin, index)).fetchone()
    if leaf is None:
        raise StorageError(f"replica entry {index} of {origin} ({credential_id}) is missing")
    leaf_indexes, keys = _split_levels(node_ids(index, size))
    nodes: dict[NodeId, bytes] = {}
    for chunk in _chunks(keys, _MAX_PARAMS):
        for key, digest in conn.execute(_replica_nodes_sql(len(chunk)), [origin, *chunk]):
            nodes[_node_id(key)] = digest
    for chunk in _chunks(leaf_indexes, _MAX_PARAMS):
        sql = _replica_leaf_hashes_sql(len(chunk))
        for leaf_index, digest in conn.execute(sql, [origin, *chunk]):
            nodes[(0, leaf_index)] = digest
    return ReplicaProofRead(checkpoint, index, leaf[0], nodes)


# -- the write transaction --------------------------------------------------------


class _SqliteTx:
    """A :class:`WriteTx` on the writer connection, valid only inside its
    ``async with store.write()`` block."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn_or_none: aiosqlite.Connection | None = conn
        # The newest checkpoint this transaction added, published on commit.
        self.added_checkpoint: SignedCheckpoint | None = None
        # One operation at a time, so the savepoints of two tasks sharing
        # this transaction cannot interleave.
        self._op_lock = asyncio.Lock()

    def _finish(self) -> None:
        self._conn_or_none = None

    @property
    def _conn(self) -> aiosqlite.Connection:
        # The writer runs in autocommit mode between transactions: a stray
        # call after the block would commit on its own, outside the lock.
        if self._conn_or_none is None:
            raise StorageError("the write transaction is over")
        return self._conn_or_none

    # -- reads ------------------------------------------------------------------

    async def log_size(self) -> int:
        return await _log_size(self._conn)

    async def get_log_nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        return await _get_log_nodes(self._conn, ids)

    async def get_credential(self, credential_id: str) -> StoredCredential | None:
        return await _get_credential(self._conn, credential_id)

    async def get_issuer(self, issuer_id: str) -> Issuer | None:
        return await _get_issuer(self._conn, issuer_id)

    # -- writes -----------------------------------------------------------------

    @asynccontextmanager
    async def _atomic(self, steps: int) -> AsyncIterator[aiosqlite.Connection]:
        """Make one multi-statement operation all-or-nothing, so a caller
        that catches its error can go on with the transaction. A single
        statement is atomic by itself and skips the savepoint round trips."""
        async with self._op_lock:
            conn = self._conn
            if steps <= 1:
                yield conn
                return
            await _fetch(conn, "SAVEPOINT credfed_op")
            try:
                yield conn
            except BaseException:
                await _fetch(conn, "ROLLBACK TO credfed_op")
                await _fetch(conn, "RELEASE credfed_op")
                raise
            await _fetch(conn, "RELEASE credfed_op")

    async def insert_credentials(self, credentials: Sequence[StoredCredential]) -> None:
        if not credentials:
            return
        rows = [_credential_params(c) for c in credentials]
        try:
            async with self._atomic(steps=len(rows)) as conn:
                await _many(conn, _INSERT_CREDENTIAL, rows)
        except sqlite3.IntegrityError as e:
            raise await self._explain_insert_failure(credentials, e) from e

    async def _explain_insert_failure(
        self, credentials: Sequence[StoredCredential], error: sqlite3.IntegrityError
    ) -> Exception:
        conn = self._conn
        message = str(error)
        if "UNIQUE" in message:
            counts = Counter(c.credential_id for c in credentials)
            twice = [cid for cid, n in counts.items() if n > 1]
            if twice:
                return AlreadyExistsError(f"credential {twice[0]} appears twice in the batch")
            for chunk in _chunks(list(counts), _MAX_PARAMS):
                rows = await _fetch(
                    conn,
                    "SELECT credential_id FROM credentials "  # noqa: S608 (placeholders only)
                    f"WHERE credential_id IN ({_placeholders(len(chunk))})",
                    chunk,
                )
                if rows:
                    return AlreadyExistsError(f"credential {rows[0][0]} already exists")
            return AlreadyExistsError("credential already exists")
        if "FOREIGN KEY" in message:
            issuer_ids = sorted({c.issuer_id for c in credentials})
            for issuer_id in issuer_ids:
                if await _get_issuer(conn, issuer_id) is None:
                    return NotFoundError(f"issuer {issuer_id} not found")
        return StorageError(f"cannot insert credentials: {message}")

    async def update_credential_state(
        self, credential_id: str, state: StatusState, last_entry_index: int
    ) -> None:
        async with self._op_lock:
            rows = await _fetch(
                self._conn, _UPDATE_STATE, _state_params(credential_id, state, last_entry_index)
            )
        if not rows:
            raise NotFoundError(f"credential {credential_id} not found")

    async def append_log(
        self,
        start_index: int,
        leaves: Sequence[bytes],
        nodes: Sequence[tuple[int, int, bytes]],
    ) -> None:
        node_rows: list[Row] = []
        for level, index, digest in nodes:
            key = _node_key(level, index)
            if key is None:
                raise StorageError(f"Merkle node ({level}, {index}) is out of range")
            node_rows.append((key, bytes(digest)))
        leaf_rows = [(start_index + i, bytes(leaf)) for i, leaf in enumerate(leaves)]
        steps = (1 if leaf_rows else 0) + (1 if node_rows else 0)
        try:
            async with self._atomic(steps) as conn:
                size = await _log_size(conn)
                if start_index != size:
                    raise StorageError(
                        f"log append at index {start_index} but the log has {size} leaves"
                    )
                if leaf_rows:
                    await _many(conn, "INSERT INTO log_leaves (idx, leaf) VALUES (?, ?)", leaf_rows)
                if node_rows:
                    await _many(
                        conn, "INSERT INTO log_nodes (node_key, hash) VALUES (?, ?)", node_rows
                    )
        except sqlite3.IntegrityError as e:
            if "log_nodes" in str(e):
                raise AlreadyExistsError(
                    f"Merkle node already stored (one of {len(node_rows)} appended)"
                ) from e
            raise StorageError(f"cannot append to the log: {e}") from e

    async def add_checkpoint(self, checkpoint: SignedCheckpoint) -> None:
        cp = checkpoint.checkpoint
        try:
            async with self._op_lock:
                await _fetch(self._conn, _INSERT_CHECKPOINT, _checkpoint_params(checkpoint))
        except sqlite3.IntegrityError as e:
            raise AlreadyExistsError(
                f"checkpoint for tree size {cp.tree_size} already exists"
            ) from e
        if (
            self.added_checkpoint is None
            or cp.tree_size > self.added_checkpoint.checkpoint.tree_size
        ):
            self.added_checkpoint = checkpoint


# -- the store ------------------------------------------------------------------


def _check_replica_checkpoint(origin: str, checkpoint: SignedCheckpoint, held: int) -> None:
    """A replica's checkpoint is its origin's and covers only leaves it holds
    (so every entry it vouches for can be proved)."""
    cp = checkpoint.checkpoint
    if cp.origin != origin:
        raise StorageError(f"a checkpoint of {cp.origin} cannot be the replica's of {origin}")
    if cp.tree_size > held:
        raise StorageError(
            f"replica of {origin}: checkpoint of size {cp.tree_size} but it holds {held} leaves"
        )


class SqliteStore:
    """A :class:`credfed.storage.base.Store` in one SQLite file.

    Open with :meth:`open`; always :meth:`close` (it is idempotent).
    """

    def __init__(
        self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection
    ) -> None:
        self._path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()
        self._write_owner: asyncio.Task[Any] | None = None
        self._closed = False
        # The latest checkpoint, kept after each commit that adds one: verify
        # reads it on every call. Valid because one process writes a SQLite
        # node's log (several processes need the PostgreSQL backend).
        self._latest: SignedCheckpoint | None = None
        self._snapshots = _SnapshotReader(path)
        # Write transactions of this store begun so far, and whether one is
        # open: a write probe kept out by them has seen the store take writes.
        self._writes_begun = 0
        self._writing = False

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` and bring its
        schema up to date. Raises StorageError if it cannot, or if the
        schema is newer than this credfed."""
        path = Path(path)
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StorageError(
                f"SQLite {sqlite3.sqlite_version} is too old (credfed needs 3.35 or newer)"
            )
        migrations = load_migrations()
        _create_private(path)
        writer = await _connect(path, read_only=False)
        try:
            await _migrate(writer, migrations)
            reader = await _connect(path, read_only=True)
        except BaseException:
            await _close(writer)
            raise
        return cls(path, writer, reader)

    @property
    def path(self) -> Path:
        return self._path

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Let a running write transaction finish first.
        async with self._write_lock:
            await self._snapshots.close()
            await _close(self._reader)
            await _close(self._writer)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the store is closed")

    # -- transactions -------------------------------------------------------------

    def write(self) -> AbstractAsyncContextManager[WriteTx]:
        """Open a serialised write transaction; see the module docstring.

        Not re-entrant: opening a second one in the task that holds one
        raises StorageError instead of deadlocking."""
        return self._transaction()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[_SqliteTx]:
        self._check_open()
        task = asyncio.current_task()
        if task is not None and task is self._write_owner:
            raise StorageError("a write transaction is already open in this task")
        async with self._write_lock:
            self._check_open()
            self._write_owner = task
            tx = _SqliteTx(self._writer)
            try:
                # Inside the try: a cancel while BEGIN waits for another
                # process leaves it queued, and the ROLLBACK queued after it
                # undoes it.
                await _fetch(self._writer, "BEGIN IMMEDIATE")
                self._writes_begun += 1
                self._writing = True
                yield tx
                tx._finish()
                await _end_transaction(self._writer.commit(), "commit")
                self._publish(tx.added_checkpoint)
            except BaseException:
                tx._finish()
                # A no-op if BEGIN failed or COMMIT went through.
                await _end_transaction(self._writer.rollback(), "rollback")
                raise
            finally:
                self._write_owner = None
                self._writing = False

    def _publish(self, added: SignedCheckpoint | None) -> None:
        # Only ever forward: the latest is the one of the largest tree.
        if added is None or self._latest is None:
            return  # unknown yet: the next read loads it from the database
        if added.checkpoint.tree_size > self._latest.checkpoint.tree_size:
            self._latest = added

    # -- health probes (credfed.rpc.healthmon) ------------------------------------------

    async def probe_write(self, busy_timeout: float) -> None:
        """See :meth:`credfed.storage.base.Store.probe_write`. The error is
        SQLite's own words ("database is locked", "database or disk is
        full", "attempt to write a readonly database")."""
        self._check_open()
        begun = self._writes_begun
        try:
            await asyncio.to_thread(
                _probe_write, self._path, busy_timeout, _micros(datetime.now(UTC))
            )
        except sqlite3.Error as e:
            busy = getattr(e, "sqlite_errorname", "").startswith("SQLITE_BUSY")
            if busy and (self._writing or self._writes_begun != begun):
                return  # kept out by our own writer (a long bulk import): writes go in
            raise StorageError(str(e)) from e

    async def probe_read(self) -> None:
        self._check_open()
        await self._snapshots.run(lambda conn: conn.execute(_PROBE_READ).fetchone())

    # -- reads (committed data only) -------------------------------------------------

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._check_open()
        return await _fetch(self._reader, sql, params)

    async def log_size(self) -> int:
        self._check_open()
        return await _log_size(self._reader)

    async def get_log_nodes(self, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        self._check_open()
        return await _get_log_nodes(self._reader, ids)

    async def get_credential(self, credential_id: str) -> StoredCredential | None:
        self._check_open()
        return await _get_credential(self._reader, credential_id)

    async def get_issuer(self, issuer_id: str) -> Issuer | None:
        self._check_open()
        return await _get_issuer(self._reader, issuer_id)

    async def get_log_entries(self, start: int, end: int) -> list[bytes]:
        start = max(start, 0)
        if end <= start:
            self._check_open()
            return []
        rows = await self._read(
            "SELECT leaf FROM log_leaves WHERE idx >= ? AND idx < ? ORDER BY idx", (start, end)
        )
        return [r[0] for r in rows]

    async def latest_checkpoint(self) -> SignedCheckpoint | None:
        if self._latest is not None:
            self._check_open()
            return self._latest
        rows = await self._read(_LATEST_CHECKPOINT)
        if rows:
            self._latest = _checkpoint(rows[0])
        return self._latest

    async def get_credential_proof(
        self, credential_id: str, node_ids: Callable[[int], Sequence[NodeId]]
    ) -> CredentialProofRead | None:
        self._check_open()
        return await self._snapshots.run(
            lambda conn: _read_credential_proof(conn, credential_id, node_ids)
        )

    async def get_checkpoint(self, tree_size: int) -> SignedCheckpoint | None:
        rows = await self._read(_GET_CHECKPOINT, (tree_size,))
        return _checkpoint(rows[0]) if rows else None

    async def append_recovered(self, batch: RecoveredEntries) -> list[str]:
        """The log written by append_log and add_checkpoint, as the normal
        path does; the states as update_credential_state sets them, in bulk
        (a recovery may change thousands)."""
        end = batch.start + len(batch.leaves)
        if batch.checkpoint.checkpoint.tree_size != end:
            raise StorageError(
                f"recovered entries end at {end}, their checkpoint is of size "
                f"{batch.checkpoint.checkpoint.tree_size}"
            )
        for credential_id, _, index in batch.states:
            if not batch.start <= index < end:
                raise StorageError(
                    f"credential {credential_id}: entry {index} is not among the recovered"
                    f" entries [{batch.start}, {end})"
                )
        ids = [credential_id for credential_id, _, _ in batch.states]
        held: set[str] = set()
        async with self._transaction() as tx:
            await tx.append_log(batch.start, batch.leaves, batch.nodes)
            for chunk in _chunks(ids, _MAX_PARAMS):
                rows = await _fetch(
                    self._writer,
                    "SELECT credential_id FROM credentials "  # noqa: S608 (placeholders only)
                    f"WHERE credential_id IN ({_placeholders(len(chunk))})",
                    chunk,
                )
                held.update(row[0] for row in rows)
            updates = [_state_params(*s) for s in batch.states if s[0] in held]
            if updates:
                await _many(self._writer, _SET_STATE, updates)
            await tx.add_checkpoint(batch.checkpoint)
        return [credential_id for credential_id in ids if credential_id not in held]

    async def get_client_by_token_hash(self, token_hash: bytes) -> Client | None:
        rows = await self._read(_GET_CLIENT_BY_TOKEN, (bytes(token_hash),))
        return _client(rows[0]) if rows else None

    async def list_clients(self) -> list[Client]:
        rows = await self._read(_LIST_CLIENTS)
        return [_client(r) for r in rows]

    async def list_issuers(self) -> list[Issuer]:
        rows = await self._read(_LIST_ISSUERS)
        return [_issuer(r) for r in rows]

    # -- replicas of other origins' logs ------------------------------------------------

    async def replica_size(self, origin: str) -> int:
        self._check_open()
        return await _replica_size(self._reader, origin)

    async def replica_checkpoint(self, origin: str) -> SignedCheckpoint | None:
        rows = await self._read(_GET_REPLICA_CHECKPOINT, (origin,))
        return _checkpoint(rows[0]) if rows else None

    async def replica_checkpoints(self) -> list[SignedCheckpoint]:
        rows = await self._read(_LIST_REPLICA_CHECKPOINTS)
        return [_checkpoint(r) for r in rows]

    async def get_replica_nodes(self, origin: str, ids: Sequence[NodeId]) -> dict[NodeId, bytes]:
        self._check_open()
        return await _get_replica_nodes(self._reader, origin, ids)

    async def get_replica_entries(self, origin: str, start: int, end: int) -> list[bytes]:
        start = max(start, 0)
        if end <= start:
            self._check_open()
            return []
        rows = await self._read(
            "SELECT leaf FROM replica_leaves WHERE origin = ? AND idx >= ? AND idx < ? "
            "ORDER BY idx",
            (origin, start, end),
        )
        return [r[0] for r in rows]

    async def get_replica_proof(
        self,
        origin: str,
        credential_id: str,
        node_ids: Callable[[int, int], Sequence[NodeId]],
    ) -> ReplicaProofRead | None:
        self._check_open()
        return await self._snapshots.run(
            lambda conn: _read_replica_proof(conn, origin, credential_id, node_ids)
        )

    async def list_fork_evidence(self) -> list[tuple[str, bytes]]:
        rows = await self._read("SELECT origin, evidence FROM fork_evidence ORDER BY origin")
        return [(r[0], r[1]) for r in rows]

    async def append_replica(self, batch: ReplicaAppend) -> None:
        """One write transaction. Catch-up appends many thousand entries per
        batch: rows are plain tuples handed to executemany, checked in bulk."""
        origin, start = batch.origin, batch.start
        end = start + len(batch.leaves)
        if batch.checkpoint is not None:
            _check_replica_checkpoint(origin, batch.checkpoint, end)
        # Level-0 nodes go into their leaf's row, the others into replica_nodes.
        leaf_hashes = [digest for level, _, digest in batch.nodes if level == 0]
        node_rows = [
            (origin, (level << _LEVEL_SHIFT) | index, digest)
            for level, index, digest in batch.nodes
            if 0 < level <= _MAX_LEVEL and 0 <= index <= _INDEX_MASK
        ]
        if len(node_rows) + len(leaf_hashes) != len(batch.nodes):
            raise StorageError(f"replica of {origin}: a Merkle node id is out of range")
        if len(leaf_hashes) != len(batch.leaves) or any(
            index != start + n
            for n, index in enumerate(index for level, index, _ in batch.nodes if level == 0)
        ):
            raise StorageError(f"replica of {origin}: one leaf hash per leaf is needed, in order")
        leaf_rows = list(
            zip(repeat(origin), range(start, end), batch.leaves, leaf_hashes, strict=False)
        )
        status_rows = [(origin, cid, idx) for cid, idx in batch.statuses]
        try:
            async with self._transaction():
                size = await _replica_size(self._writer, origin)
                if start != size:
                    raise StorageError(
                        f"replica of {origin}: append at index {start} but it has {size} leaves"
                    )
                if leaf_rows:
                    await _many(self._writer, _INSERT_REPLICA_LEAF, leaf_rows)
                if node_rows:
                    await _many(self._writer, _INSERT_REPLICA_NODE, node_rows)
                if status_rows:
                    await _many(self._writer, _UPSERT_REPLICA_STATUS, status_rows)
                if batch.checkpoint is not None:
                    await _fetch(
                        self._writer,
                        _UPSERT_REPLICA_CHECKPOINT,
                        _checkpoint_params(batch.checkpoint),
                    )
        except sqlite3.IntegrityError as e:
            raise StorageError(f"cannot append to the replica of {origin}: {e}") from e

    async def set_replica_checkpoint(self, checkpoint: SignedCheckpoint) -> None:
        origin = checkpoint.checkpoint.origin
        params = _checkpoint_params(checkpoint)
        async with self._transaction():
            size = await _replica_size(self._writer, origin)
            _check_replica_checkpoint(origin, checkpoint, size)
            await _fetch(self._writer, _UPSERT_REPLICA_CHECKPOINT, params)

    async def add_recognition_rules(self, rules: Sequence[StoredRule]) -> int:
        rows = [
            (
                r.country,
                r.rule_id,
                r.version,
                bytes(r.envelope.payload),
                r.envelope.payload_type,
                r.envelope.key_id,
                bytes(r.envelope.signature),
            )
            for r in rules
        ]
        async with self._transaction():
            before = await _fetch(self._writer, "SELECT total_changes()", ())
            await _many(self._writer, _INSERT_RULE, rows)
            after = await _fetch(self._writer, "SELECT total_changes()", ())
        return int(after[0][0]) - int(before[0][0])

    async def current_recognition_rules(self, country: str) -> list[StoredRule]:
        rows = await self._read(_CURRENT_RULES, (country,))
        return [
            StoredRule(
                country=r[0],
                rule_id=r[1],
                version=int(r[2]),
                envelope=Envelope(payload=r[3], payload_type=r[4], key_id=r[5], signature=r[6]),
            )
            for r in rows
        ]

    async def recognition_countries(self) -> list[str]:
        rows = await self._read("SELECT DISTINCT country FROM recognition_rules ORDER BY country")
        return [str(r[0]) for r in rows]

    async def add_fork_evidence(self, origin: str, evidence: bytes) -> bool:
        params = (origin, bytes(evidence), _micros(datetime.now(UTC)))
        async with self._transaction():
            rows = await _fetch(self._writer, _INSERT_FORK_EVIDENCE, params)
        return bool(rows)

    # -- small admin writes (each its own transaction) ------------------------------

    async def add_client(self, client: Client) -> None:
        params = (
            client.client_id,
            client.name,
            str(client.role),
            bytes(client.token_hash),
            _micros(client.created_at),
            None if client.expires_at is None else _micros(client.expires_at),
            None if client.revoked_at is None else _micros(client.revoked_at),
            client.partner,
        )
        try:
            async with self._transaction():
                await _fetch(self._writer, _INSERT_CLIENT, params)
        except sqlite3.IntegrityError as e:
            if "token_hash" in str(e):
                raise AlreadyExistsError(
                    f"client {client.client_id}: another client has the same token"
                ) from e
            raise AlreadyExistsError(f"client {client.client_id} already exists") from e

    async def revoke_client(self, client_id: str, at: datetime) -> Client:
        async with self._transaction():
            rows = await _fetch(self._writer, _REVOKE_CLIENT, (_micros(at), client_id))
        if not rows:
            raise NotFoundError(f"client {client_id} not found")
        return _client(rows[0])

    async def add_issuer(self, issuer: Issuer) -> None:
        params = (
            issuer.issuer_id,
            issuer.name,
            json.dumps(list(issuer.sectors)),
            issuer.status.value,
        )
        try:
            async with self._transaction():
                await _fetch(self._writer, _INSERT_ISSUER, params)
        except sqlite3.IntegrityError as e:
            raise AlreadyExistsError(f"issuer {issuer.issuer_id} already exists") from e

    async def set_issuer_status(self, issuer_id: str, status: IssuerStatus) -> Issuer:
        async with self._transaction():
            rows = await _fetch(
                self._writer,
                _SET_ISSUER_STATUS,
                (status.value, issuer_id),
            )
        if not rows:
            raise NotFoundError(f"issuer {issuer_id} not found")
        return _issuer(rows[0])

    # -- the audit trail ---------------------------------------------------------------

    async def append_audit(self, entries: Sequence[audit.AuditEntry]) -> list[audit.AuditRecord]:
        """One write transaction (BEGIN IMMEDIATE, so other processes on the
        file queue behind it): the newest record is read inside it, so the
        chain stays linear whoever else appends."""
        if not entries:
            self._check_open()
            return []
        try:
            async with self._transaction():
                rows = await _fetch(self._writer, _AUDIT_HEAD)
                after = (int(rows[0][0]), bytes(rows[0][1])) if rows else (0, audit.GENESIS)
                records = audit.chain(entries, after)
                await _many(self._writer, _INSERT_AUDIT, [_audit_params(r) for r in records])
                index = [(s, r.seq) for r in records for s in dict.fromkeys(r.subject)]
                if index:
                    await _many(self._writer, _INSERT_AUDIT_SUBJECT, index)
        except sqlite3.IntegrityError as e:
            raise StorageError(f"cannot append to the audit trail: {e}") from e
        return records

    async def audit_records(self, after_seq: int = 0, limit: int = 1000) -> list[audit.AuditRecord]:
        rows = await self._read(_AUDIT_PAGE, (after_seq, limit))
        return [_audit_record(r) for r in rows]

    async def audit_records_about(self, subject: str) -> list[audit.AuditRecord]:
        rows = await self._read(_AUDIT_ABOUT, (subject,))
        return [_audit_record(r) for r in rows]

    async def audit_index_problem(self) -> str | None:
        extra = await self._read(_AUDIT_INDEX_EXTRA)
        if extra:
            seq, subject = extra[0]
            return f"the subject index lists {subject!r} for record {seq}, which does not name it"
        missing = await self._read(_AUDIT_INDEX_MISSING)
        if missing:
            return f"the subject index lacks {missing[0][1]!r} of record {missing[0][0]}"
        return None


def _audit_params(record: audit.AuditRecord) -> Row:
    return (
        record.seq,
        audit.to_micros(record.at),
        record.client_id,
        record.client_name,
        record.role,
        record.country,
        record.action,
        json.dumps(list(record.subject), ensure_ascii=False, separators=(",", ":")),
        record.count,
        record.outcome,
        bytes(record.prev_hash),
        bytes(record.hash),
    )


def _audit_record(row: Row) -> audit.AuditRecord:
    """A stored record; StorageError naming its seq if a column is unreadable
    (only a rewrite of the file behind the store's back can do that)."""
    try:
        subject = json.loads(row[7])
        if not isinstance(subject, list) or not all(isinstance(s, str) for s in subject):
            raise TypeError("subject is not a JSON list of ids")
        return audit.AuditRecord(
            seq=int(row[0]),
            at=audit.from_micros(int(row[1])),
            client_id=str(row[2]),
            client_name=str(row[3]),
            role=str(row[4]),
            country=None if row[5] is None else str(row[5]),
            action=str(row[6]),
            subject=tuple(subject),
            count=int(row[8]),
            outcome=str(row[9]),
            prev_hash=bytes(row[10]),
            hash=bytes(row[11]),
        )
    except (ValueError, TypeError, OverflowError) as e:
        raise StorageError(f"audit record {row[0]} is unreadable: {e}") from e
