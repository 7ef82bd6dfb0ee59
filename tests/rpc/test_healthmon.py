"""The health monitor: the decision table (a pure function), the store's
write and read probes on a real SQLite file, and the monitor setting a real
grpc health servicer's statuses and logging each change."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from grpc_health.v1 import health, health_pb2
from structlog.testing import capture_logs

from credfed.config import FederationSettings
from credfed.crypto.keys import SigningKey
from credfed.errors import StorageError
from credfed.federation.descriptor import Descriptor, KeyEntry
from credfed.federation.evidence import ForkEvidence
from credfed.federation.trust import TrustState
from credfed.models import Checkpoint, SignedCheckpoint
from credfed.rpc.healthmon import (
    FEDERATION,
    NODE,
    REGISTRY,
    SERVICES,
    VERIFICATION,
    HealthMonitor,
    Observation,
    decide,
    interval_for,
)
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import sign_checkpoint
from credfed.storage.sqlite import SqliteStore

OK = (True, "")
ALL_OK = {name: OK for name in SERVICES}
FR_FRESH = {"ages": {"FR": 10.0}, "max_ages": {"FR": 900.0}}


def _not(reason: str) -> tuple[bool, str]:
    return (False, reason)


# -- the decision table ---------------------------------------------------------------

CASES: list[tuple[str, dict[str, Any], dict[str, tuple[bool, str]]]] = [
    ("all well", {}, ALL_OK),
    ("a fresh partner", FR_FRESH, ALL_OK),
    (
        "store locked: registry and the node, not verification or federation",
        {"write_error": "database is locked", **FR_FRESH},
        {
            **ALL_OK,
            NODE: _not("store not writable: database is locked"),
            REGISTRY: _not("store not writable: database is locked"),
        },
    ),
    (
        "store unreadable: everything",
        {"read_error": "disk I/O error"},
        {name: _not("store not readable: disk I/O error") for name in SERVICES},
    ),
    (
        "unreadable and unwritable: both reasons, read first",
        {"read_error": "disk I/O error", "write_error": "database is locked"},
        {
            NODE: _not(
                "store not readable: disk I/O error; store not writable: database is locked"
            ),
            REGISTRY: _not(
                "store not readable: disk I/O error; store not writable: database is locked"
            ),
            VERIFICATION: _not("store not readable: disk I/O error"),
            FEDERATION: _not("store not readable: disk I/O error"),
        },
    ),
    (
        "a stale partner: the federation only, never the node",
        {"ages": {"FR": 1234.4}, "max_ages": {"FR": 900.0}},
        {
            **ALL_OK,
            FEDERATION: _not("replica of FR stale: newest checkpoint 1234 s old (max 900 s)"),
        },
    ),
    (
        "exactly at the limit is not stale (as crossborder.py and status.py judge)",
        {"ages": {"FR": 900.0}, "max_ages": {"FR": 900.0}},
        ALL_OK,
    ),
    (
        "each origin by its own limit",
        {"ages": {"FR": 5.0, "PL": 5.0}, "max_ages": {"FR": 3.0, "PL": 900.0}},
        {**ALL_OK, FEDERATION: _not("replica of FR stale: newest checkpoint 5 s old (max 3 s)")},
    ),
    (
        "never heard of, within the start-up grace: not yet stale",
        {"ages": {"FR": None}, "max_ages": {"FR": 900.0}, "in_grace": True},
        ALL_OK,
    ),
    (
        "never heard of, after the grace: stale",
        {"ages": {"FR": None}, "max_ages": {"FR": 900.0}},
        {**ALL_OK, FEDERATION: _not("replica of FR stale: no checkpoint received yet")},
    ),
    (
        "the grace is for the never-seen only: an old checkpoint is stale at once",
        {"ages": {"FR": 1000.0}, "max_ages": {"FR": 900.0}, "in_grace": True},
        {
            **ALL_OK,
            FEDERATION: _not("replica of FR stale: newest checkpoint 1000 s old (max 900 s)"),
        },
    ),
    (
        "a forked origin: named once (not also as stale)",
        {"ages": {"FR": 5000.0}, "max_ages": {"FR": 900.0}, "forked": frozenset({"FR"})},
        {**ALL_OK, FEDERATION: _not("origin FR forked (evidence in store)")},
    ),
    (
        "several federation reasons, stale ones first, by country",
        {
            "ages": {"PL": 950.0, "AT": None, "FR": 1.0},
            "max_ages": {"PL": 900.0, "AT": 900.0, "FR": 900.0},
            "forked": frozenset({"FR"}),
        },
        {
            **ALL_OK,
            FEDERATION: _not(
                "replica of AT stale: no checkpoint received yet; "
                "replica of PL stale: newest checkpoint 950 s old (max 900 s); "
                "origin FR forked (evidence in store)"
            ),
        },
    ),
]


@pytest.mark.parametrize(("seen", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(seen: dict[str, Any], expected: dict[str, tuple[bool, str]]) -> None:
    assert decide(Observation(**seen)) == expected


@pytest.mark.parametrize(
    ("checkpoint_interval", "expected"), [(60.0, 5.0), (4.0, 2.0), (1.0, 0.5), (0.05, 0.1)]
)
def test_interval_follows_the_checkpoint_interval(
    checkpoint_interval: float, expected: float
) -> None:
    assert interval_for(FederationSettings(checkpoint_interval=checkpoint_interval)) == expected


# -- the store's probes (real SQLite file) ----------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "node.db")
    try:
        yield s
    finally:
        await s.close()


@contextmanager
def write_lock(path: Path) -> Iterator[None]:
    """Another process's view: a connection holding the write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_write_probe_writes_its_row(store: SqliteStore) -> None:
    await store.probe_write(1.0)
    await store.probe_write(1.0)
    with sqlite3.connect(store.path) as raw:
        assert raw.execute("SELECT id FROM health_probe").fetchall() == [(1,)]
    await store.probe_read()


async def test_write_probe_fails_on_a_lock_held_elsewhere_within_its_timeout(
    store: SqliteStore,
) -> None:
    with write_lock(store.path):
        start = time.monotonic()
        with pytest.raises(StorageError, match=r"^database is locked$"):
            await store.probe_write(0.3)
        assert 0.25 <= time.monotonic() - start < 2.0
        await store.probe_read()  # WAL: reads go on under a held write lock
    await store.probe_write(0.3)


async def test_write_probe_counts_our_own_transaction_as_writable(store: SqliteStore) -> None:
    """A long write transaction of the node itself (a bulk import) holds the
    lock: the database takes writes, the probe must not fail on it."""
    async with store.write():
        start = time.monotonic()
        await store.probe_write(0.2)  # kept out by ours, and no error
        assert time.monotonic() - start >= 0.15  # it did meet the lock
    # Ours began while the probe waited for another process's lock.
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    probe = asyncio.ensure_future(store.probe_write(0.3))
    await asyncio.sleep(0.1)
    other.execute("ROLLBACK")
    other.close()
    async with store.write():
        await asyncio.wait({probe}, timeout=1.0)
    await probe


async def test_write_probe_fails_on_a_deleted_database(store: SqliteStore, tmp_path: Path) -> None:
    store.path.rename(tmp_path / "moved.db")
    with pytest.raises(StorageError, match="unable to open database file"):
        await store.probe_write(0.2)
    assert not store.path.exists()  # mode=rw: never a new empty database


async def test_probes_of_a_closed_store_fail(tmp_path: Path) -> None:
    s = await SqliteStore.open(tmp_path / "node.db")
    await s.close()
    for probe in (s.probe_write(0.2), s.probe_read()):
        with pytest.raises(StorageError, match="closed"):
            await probe


# -- the monitor -----------------------------------------------------------------------


async def statuses(servicer: health.aio.HealthServicer) -> dict[str, int]:
    got = {}
    for name in SERVICES:
        response = await servicer.Check(health_pb2.HealthCheckRequest(service=name), None)
        got[name] = response.status
    return got


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
T0 = datetime(2025, 1, 1, tzinfo=UTC)
FR_KEY = SigningKey.from_seed(b"\x44" * 32)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def fr_pinned(*latest: SignedCheckpoint) -> TrustState:
    fr = Descriptor(
        country="FR",
        node_id="fr-1",
        endpoints=("fr.example.org:7443",),
        keys=(KeyEntry(FR_KEY.key_id, FR_KEY.verifying_key(), T0, None),),
        tls_ca_cert="",
        version=1,
        issued_at=T0,
    )
    return TrustState([fr], latest)


def fr_checkpoint(leaf: bytes, at: datetime = T0) -> SignedCheckpoint:
    """FR's signed checkpoint of a one-entry log."""
    return sign_checkpoint(FR_KEY, Checkpoint("FR", 1, merkle.leaf_hash(leaf), at))


def monitor_for(
    store: SqliteStore, trust: TrustState, clock: FakeClock, **fed: Any
) -> tuple[HealthMonitor, health.aio.HealthServicer]:
    servicer = health.aio.HealthServicer()
    monitor = HealthMonitor(
        servicer,
        store,
        trust,
        own_country="DE",
        federation=FederationSettings(**fed),
        clock=clock,
        interval=0.05,
    )
    return monitor, servicer


async def test_monitor_sets_statuses_logs_changes_and_recovers(store: SqliteStore) -> None:
    trust = fr_pinned(fr_checkpoint(b"a"))
    clock = FakeClock(T0)
    monitor, servicer = monitor_for(
        store, trust, clock, max_staleness_by_origin={"FR": 3.0}, sync_interval=0.1
    )
    with capture_logs() as logs:
        await monitor.start()
        try:
            assert await statuses(servicer) == dict.fromkeys(SERVICES, SERVING)
            assert monitor.report() == ALL_OK
            assert logs == []  # starting healthy is no change

            with write_lock(store.path):
                report = await monitor.check()
            assert (
                report[REGISTRY] == report[NODE] == _not("store not writable: database is locked")
            )
            assert report[VERIFICATION] == report[FEDERATION] == OK
            got = await statuses(servicer)
            assert got == {NODE: NOT_SERVING, REGISTRY: NOT_SERVING, VERIFICATION: SERVING,
                           FEDERATION: SERVING}  # fmt: skip

            clock.advance(4)  # FR's checkpoint is now 4 s old, its limit 3 s
            # The loop (every 0.05 s) sees both: the lock released, FR stale.
            await _until(lambda: monitor.report()[FEDERATION][0] is False)
            await _until(lambda: monitor.report()[NODE] == OK)
            assert monitor.report()[FEDERATION] == _not(
                "replica of FR stale: newest checkpoint 4 s old (max 3 s)"
            )
            assert (await statuses(servicer))[FEDERATION] == NOT_SERVING
        finally:
            await monitor.stop()
    changes = [
        (e["service"], e["serving"], e["reason"]) for e in logs if e["event"] == "health.changed"
    ]
    assert changes[:2] == [
        (NODE, False, "store not writable: database is locked"),
        (REGISTRY, False, "store not writable: database is locked"),
    ]
    assert set(changes[2:]) == {
        (NODE, True, ""),
        (REGISTRY, True, ""),
        (FEDERATION, False, "replica of FR stale: newest checkpoint 4 s old (max 3 s)"),
    }
    assert {e["log_level"] for e in logs if not e["serving"]} == {"warning"}


async def test_a_fork_alarm_is_acted_on_before_the_next_tick(store: SqliteStore) -> None:
    trust = fr_pinned()
    servicer = health.aio.HealthServicer()
    monitor = HealthMonitor(
        servicer,
        store,
        trust,
        own_country="DE",
        federation=FederationSettings(),
        clock=FakeClock(T0),
        interval=3600.0,
    )
    await monitor.start()
    try:
        assert monitor.report()[FEDERATION] == OK  # FR: never seen, in its grace
        one, other = fr_checkpoint(b"x"), fr_checkpoint(b"y")  # same size, two roots
        assert trust.record_fork(
            ForkEvidence("FR", one.envelope, other.envelope, (), merkle.leaf_hash(b"y"))
        )
        await monitor.alarm()
        await _until(lambda: monitor.report()[FEDERATION][0] is False, timeout=2)
        assert monitor.report()[FEDERATION] == _not("origin FR forked (evidence in store)")
        assert monitor.report()[NODE] == OK
    finally:
        await monitor.stop()


async def test_a_graceful_shutdown_wins_over_the_monitor(store: SqliteStore) -> None:
    monitor, servicer = monitor_for(store, TrustState(), FakeClock(T0))
    await monitor.start()
    await servicer.enter_graceful_shutdown()
    await monitor.stop()
    await asyncio.sleep(0.1)
    assert await statuses(servicer) == dict.fromkeys(SERVICES, NOT_SERVING)


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
