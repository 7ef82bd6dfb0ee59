"""The audit trail as pure functions (chain, verification, subjects), its
group commit against a fake sink, and the SQLite table's own guards."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from credfed import audit
from credfed.audit import (
    GENESIS,
    MALFORMED,
    AuditEntry,
    AuditRecord,
    AuditTrail,
    chain,
    record_from_json,
    record_hash,
    record_to_json,
    verify_chain,
)
from credfed.errors import StorageError
from credfed.storage.sqlite import SqliteStore

T0 = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
CID = "DE-7K3F-Q9XM-2PLA-M"


def entry(n: int = 0, **overrides: Any) -> AuditEntry:
    values: dict[str, Any] = {
        "at": T0 + timedelta(milliseconds=n),
        "client_id": f"c{n}",
        "client_name": f"Elektro Bauer {n} GmbH",
        "role": "verifier",
        "country": "DE",
        "action": "Verify",
        "subject": (CID,),
        "outcome": "OK",
        "count": 1,
    }
    values.update(overrides)
    return AuditEntry(**values)


def trail(n: int = 5) -> list[AuditRecord]:
    return chain([entry(i) for i in range(n)])


# -- the record format and the chain ---------------------------------------------------


def test_hash_is_sha256_of_prev_hash_and_canonical_json() -> None:
    first = chain([entry(0)])[0]
    body = (
        '{"action":"Verify","at":"2025-06-01T12:00:00.123456Z","client_id":"c0",'
        '"client_name":"Elektro Bauer 0 GmbH","count":1,"country":"DE","outcome":"OK",'
        '"role":"verifier","seq":1,"subject":["DE-7K3F-Q9XM-2PLA-M"]}'
    )
    assert first.seq == 1
    assert first.prev_hash == GENESIS == bytes(32)
    assert first.hash == hashlib.sha256(GENESIS + body.encode()).digest()


def test_chain_links_every_record_to_the_one_before() -> None:
    records = trail(4)
    assert [r.seq for r in records] == [1, 2, 3, 4]
    for before, after in itertools.pairwise(records):
        assert after.prev_hash == before.hash
    assert verify_chain(records) is None
    # Continuing after a stored head gives the same chain as one pass.
    assert chain([entry(i) for i in range(2, 4)], (2, records[1].hash)) == records[2:]


def test_time_is_hashed_in_utc_whatever_the_offset() -> None:
    local = T0.astimezone(datetime.now().astimezone().tzinfo)
    assert chain([entry(0, at=local)])[0].hash == chain([entry(0)])[0].hash
    with pytest.raises(ValueError, match="naive"):
        chain([entry(0, at=T0.replace(tzinfo=None))])


def test_empty_trail_verifies() -> None:
    assert verify_chain([]) is None


# -- tampering -------------------------------------------------------------------------


def _tampered(record: AuditRecord, name: str) -> AuditRecord:
    value = getattr(record, name)
    if isinstance(value, bytes):
        new: Any = bytes([value[0] ^ 1]) + value[1:]
    elif isinstance(value, datetime):
        new = value + timedelta(microseconds=1)
    elif isinstance(value, int):
        new = value + 1
    elif isinstance(value, tuple):
        new = (*value, "DE-2222-2222-222M-F")
    elif value is None:
        new = "FR"
    else:
        new = value + "x"
    return replace(record, **{name: new})


FIELDS = [f.name for f in fields(AuditRecord)]


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("position", [0, 2, 4])
def test_tampering_with_any_field_names_that_record(name: str, position: int) -> None:
    records = trail(5)
    records[position] = _tampered(records[position], name)
    broken = verify_chain(records)
    assert broken is not None
    assert broken.seq == records[position].seq  # the tampered seq, for a changed seq
    assert str(broken).startswith(f"record {broken.seq}: ")


def test_tampering_with_country_none_is_seen() -> None:
    records = chain([entry(0, country=None), entry(1)])
    records[0] = replace(records[0], country="DE")
    broken = verify_chain(records)
    assert broken is not None
    assert broken.seq == 1
    assert "do not match its hash" in broken.problem


@pytest.mark.parametrize("position", [0, 1, 3])
def test_a_changed_and_rehashed_record_breaks_the_next_link(position: int) -> None:
    records = trail(5)
    changed = replace(records[position], client_name="someone else")
    records[position] = replace(changed, hash=record_hash(changed.prev_hash, changed.seq, changed))
    broken = verify_chain(records)
    assert broken is not None
    assert broken.seq == position + 2
    assert f"does not match the hash of record {position + 1}" in broken.problem


@pytest.mark.parametrize("position", [0, 1, 3])
def test_deleting_a_record_names_the_one_found_in_its_place(position: int) -> None:
    records = trail(5)
    del records[position]
    broken = verify_chain(records)
    assert broken is not None
    assert broken.seq == position + 2
    assert f"record {position + 1} is missing" in broken.problem


def test_deleting_the_last_records_changes_only_the_head() -> None:
    # The chain alone cannot see a cut-off end: the head hash can.
    records = trail(5)
    checker, cut = audit.ChainChecker(), audit.ChainChecker()
    for record in records:
        checker.check(record)
    for record in records[:3]:
        cut.check(record)
    assert cut.broken is None
    assert (cut.count, checker.count) == (3, 5)
    assert cut.head != checker.head == records[-1].hash


def test_reordering_records_is_seen() -> None:
    records = trail(5)
    records[1], records[2] = records[2], records[1]
    broken = verify_chain(records)
    assert broken is not None
    assert broken.seq == 3
    # In the table seq is the key: a reorder swaps the other fields instead.
    records = trail(5)
    swapped = [
        records[0],
        replace(records[2], seq=2),
        replace(records[1], seq=3),
        *records[3:],
    ]
    broken = verify_chain(swapped)
    assert broken is not None
    assert broken.seq == 2
    assert "prev_hash does not match the hash of record 1" in broken.problem


def test_a_second_chain_from_genesis_is_refused() -> None:
    records = trail(2) + chain([entry(9)])
    broken = verify_chain(records)
    assert broken is not None
    assert broken.seq == 1
    assert "out of order or duplicated" in broken.problem


# -- property: random trails verify, any one-byte change is caught ----------------------

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=20)
_entries = st.builds(
    AuditEntry,
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    client_id=_text,
    client_name=_text,
    role=st.sampled_from(["admin", "verifier", "peer", "issuer:de-hwk", "operator"]),
    country=st.none() | st.sampled_from(["DE", "FR", "PL"]),
    action=st.sampled_from(["Verify", "LookupCredential", "IssueCredential", "peer add"]),
    subject=st.lists(_text, max_size=4).map(tuple),
    outcome=st.sampled_from(["OK", "NOT_FOUND", "PERMISSION_DENIED"]),
    count=st.integers(min_value=0, max_value=100_000),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_entries, min_size=1, max_size=8), st.data())
def test_random_trails_verify_and_any_single_byte_change_is_detected(
    entries: list[AuditEntry], data: st.DataObject
) -> None:
    records = chain(entries)
    assert verify_chain(records) is None
    # Export form round-trips.
    lines = [json.dumps(record_to_json(r), ensure_ascii=False).encode() for r in records]
    assert [record_from_json(json.loads(line)) for line in lines] == records
    # Change one byte of one record as stored (its export line).
    n = data.draw(st.integers(0, len(records) - 1), label="record")
    line = bytearray(lines[n])
    pos = data.draw(st.integers(0, len(line) - 1), label="byte")
    line[pos] ^= data.draw(st.integers(1, 255), label="xor")
    try:
        changed = record_from_json(json.loads(bytes(line).decode()))
    except (ValueError, KeyError, TypeError, OverflowError):
        return  # no longer a record at all: unreadable is detected
    assume(changed != records[n])  # e.g. \\u00e9 -> \\u00E9 is the same text
    tampered = [*records[:n], changed, *records[n + 1 :]]
    broken = verify_chain(tampered)
    assert broken is not None
    assert broken.seq in (records[n].seq, changed.seq)


# -- subjects: ids only ---------------------------------------------------------------------


def test_subjects_keep_ids_and_drop_anything_else() -> None:
    assert audit.credential_subject(" de-7k3f-q9xm-2pla-m ") == CID
    assert audit.credential_subject("DE7K3FQ9XM2PLAM") == CID
    for typed in ("Jana Novák", "1994-03-17", "", "DE-7K3F-Q9XM-2PLA-N"):
        assert audit.credential_subject(typed) == MALFORMED
    assert audit.rule_subject("de-electricians") == "de-electricians"
    assert audit.rule_subject("Jana Novák") == MALFORMED
    assert audit.issuer_subject("de-hwk-muenchen") == "de-hwk-muenchen"
    assert audit.issuer_subject("x") == MALFORMED
    assert audit.country_subject(" fr ") == "FR"
    assert audit.country_subject("France") == MALFORMED
    assert audit.key_subject("ed25519:abcd") == "ed25519:abcd"
    assert audit.key_subject("a b") == MALFORMED


@pytest.mark.parametrize(
    ("name", "country"),
    [
        ("FR node", "FR"),
        ("node fr", "FR"),
        ("Partner PL (relay)", "PL"),
        ("FR and PL nodes", None),  # ambiguous
        ("IT node", None),  # not a pinned partner
        ("the French node", None),
    ],
)
def test_peer_country_comes_from_a_pinned_partner_named_in_the_client_name(
    name: str, country: str | None
) -> None:
    assert audit.peer_country(name, ["FR", "PL"]) == country


def test_local_entry_names_the_operating_system_user() -> None:
    e = audit.local_entry("peer add", ["FR"], "OK", "DE", now=T0)
    assert (e.client_id, e.role, e.country, e.action, e.subject) == (
        "local",
        "operator",
        "DE",
        "peer add",
        ("FR",),
    )
    assert e.client_name


# -- group commit ---------------------------------------------------------------------------


class FakeSink:
    def __init__(self) -> None:
        self.batches: list[list[AuditEntry]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.failures = 0

    async def append_audit(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        await self.gate.wait()
        if self.failures:
            self.failures -= 1
            raise StorageError("database is locked")
        self.batches.append(list(entries))
        return []

    @property
    def written(self) -> list[AuditEntry]:
        return [e for batch in self.batches for e in batch]


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_records_are_written_together_after_the_interval() -> None:
    sink = FakeSink()
    t = AuditTrail(sink, interval=0.05)
    for n in range(10):
        await t.record(entry(n))
    assert sink.batches == []  # queued, not written yet
    await _until(lambda: len(sink.written) == 10)
    assert len(sink.batches) == 1  # one transaction for the ten
    assert sink.written == [entry(n) for n in range(10)]
    await t.stop()


async def test_a_full_batch_is_written_without_waiting() -> None:
    sink = FakeSink()
    t = AuditTrail(sink, interval=60.0, max_batch=4, max_queue=8)
    for n in range(4):
        await t.record(entry(n))
    await _until(lambda: len(sink.written) == 4, timeout=2.0)
    await t.stop()


async def test_a_full_queue_makes_callers_wait_and_drops_nothing() -> None:
    sink = FakeSink()
    sink.gate.clear()  # the database is stuck
    t = AuditTrail(sink, interval=0.01, max_batch=2, max_queue=4)
    for n in range(6):  # 2 taken by the stuck write, 4 queued
        await t.record(entry(n))
    await asyncio.sleep(0.05)
    blocked = asyncio.ensure_future(t.record(entry(6)))
    await asyncio.sleep(0.05)
    assert not blocked.done()  # back-pressure
    sink.gate.set()
    await blocked
    await t.flush()
    assert sink.written == [entry(n) for n in range(7)]
    await t.stop()


async def test_a_failed_write_is_retried_with_the_same_records() -> None:
    sink = FakeSink()
    sink.failures = 2
    t = AuditTrail(sink, interval=0.01, retry_delay=0.01)
    await t.record(entry(0))
    await t.record(entry(1))
    await _until(lambda: len(sink.written) == 2)
    assert sink.written == [entry(0), entry(1)]
    await t.stop()


async def test_stop_writes_what_is_queued_and_is_idempotent() -> None:
    sink = FakeSink()
    t = AuditTrail(sink, interval=60.0)
    for n in range(3):
        await t.record(entry(n))
    await t.stop()
    assert sink.written == [entry(n) for n in range(3)]
    await t.stop()
    assert t.written == 3


async def test_stop_gives_up_on_a_dead_database_instead_of_hanging() -> None:
    sink = FakeSink()
    sink.failures = 1_000
    t = AuditTrail(sink, interval=60.0, retry_delay=0.001)
    await t.record(entry(0))
    await asyncio.wait_for(t.stop(), timeout=5)
    assert sink.written == []


# -- the SQLite table -------------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = await SqliteStore.open(tmp_path / "node.db")
    yield s
    await s.close()


async def test_the_table_refuses_rewrites_and_a_forked_chain(store: SqliteStore) -> None:
    stored = await store.append_audit([entry(0), entry(1)])
    with closing(sqlite3.connect(store.path, isolation_level=None)) as raw:
        for statement in (
            "UPDATE audit_log SET client_name = 'x' WHERE seq = 1",
            "DELETE FROM audit_log WHERE seq = 2",
            "UPDATE audit_subjects SET seq = 2",
            "DELETE FROM audit_subjects",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                raw.execute(statement)
        # A record that does not follow the newest one, or links elsewhere.
        forked = chain([entry(5)])[0]
        row = (
            3, 0, "c", "n", "verifier", None, "Verify", "[]", 1, "OK", forked.prev_hash, b"h"
        )  # fmt: skip
        with pytest.raises(sqlite3.IntegrityError, match="must follow the newest"):
            raw.execute("INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row)
        good_prev = (*row[:10], stored[1].hash, b"h")
        with pytest.raises(sqlite3.IntegrityError, match="must follow the newest"):
            raw.execute(
                "INSERT INTO audit_log VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", (4, *good_prev[1:])
            )
    assert await store.audit_records() == stored


async def test_no_holder_field_reaches_the_table(store: SqliteStore) -> None:
    # Subjects are ids: what the RPC layer passes is already sanitised.
    await store.append_audit([entry(0, subject=(audit.credential_subject("Jana Novák"),))])
    with closing(sqlite3.connect(store.path)) as raw:
        dump = "\n".join(raw.iterdump())
    assert "Jana" not in dump
    assert MALFORMED in dump
