"""API token lifetimes on a real server: expiry and revocation.

A refused token is UNAUTHENTICATED with a reason ("token expired", "token
revoked", "unknown API token") and never echoed. Revocation is written to the
database from outside the server (as ``credfed token revoke`` does) and takes
effect within the authenticator's cache lifetime; the tests shorten that
lifetime so they stay fast.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from conftest import RunningNode
from structlog.testing import capture_logs

from credfed.bootstrap import create_client, revoke_client
from credfed.errors import UnauthenticatedError
from credfed.models import Client, Role, RoleKind
from credfed.rpc import auth
from credfed.rpc.auth import Authenticator
from credfed.rpc_tokens import hash_token, new_token
from credfed.storage.sqlite import SqliteStore, load_migrations
from credfed.v1 import verification_pb2 as v

UNAUTH = grpc.StatusCode.UNAUTHENTICATED
CACHE = 0.3  # seconds: the authenticator's cache lifetime in these tests
DEFAULT_CACHE_SECONDS = auth.CACHE_SECONDS  # read before any test patches it


@pytest.fixture(autouse=True)
def short_auth_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Autouse, so it is in place before ``running`` builds the server."""
    monkeypatch.setattr(auth, "CACHE_SECONDS", CACHE)


def _md(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def _call(rn: RunningNode, token: str) -> tuple[grpc.StatusCode, str]:
    """GetCheckpoint (a verifier's method) with ``token``: code and details."""
    try:
        await rn.verification.GetCheckpoint(
            v.GetCheckpointRequest(), metadata=_md(token), timeout=10
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def _add(rn: RunningNode, client_id: str, expires_at: datetime | None) -> str:
    """A verifier token inserted straight into the node's store."""
    token = new_token()
    await rn.node.store.add_client(
        Client(
            client_id=client_id,
            name=f"test {client_id}",
            role=Role(RoleKind.VERIFIER),
            token_hash=hash_token(token),
            created_at=datetime.now(UTC) - timedelta(days=30),
            expires_at=expires_at,
        )
    )
    return token


def test_a_revocation_takes_effect_within_five_seconds_by_default() -> None:
    # The documented bound (the fixture above shortens it for these tests).
    assert DEFAULT_CACHE_SECONDS == 5.0
    assert Authenticator(SqliteStore.__new__(SqliteStore))._ttl == CACHE


async def test_a_token_works_until_revoked(running: RunningNode) -> None:
    rn = running
    client, token = await create_client(rn.init.config, "verifier", "test soon revoked")
    assert await _call(rn, token) == (grpc.StatusCode.OK, "")  # now cached
    # Revoked from outside the server, as `credfed token revoke` does.
    await revoke_client(rn.init.config, client.client_id)
    start = time.monotonic()
    while (outcome := await _call(rn, token))[0] == grpc.StatusCode.OK:
        assert time.monotonic() - start < CACHE + 2.0, "revocation not seen in the cache window"
        await asyncio.sleep(0.05)
    assert outcome == (UNAUTH, "token revoked")
    assert time.monotonic() - start < CACHE + 2.0
    # It stays refused; other tokens are unaffected.
    assert await _call(rn, token) == (UNAUTH, "token revoked")
    assert (await _call(rn, rn.tokens["verifier"]))[0] == grpc.StatusCode.OK


async def test_an_expired_token_is_refused(running: RunningNode) -> None:
    rn = running
    token = await _add(rn, "expired-verifier", datetime.now(UTC) - timedelta(seconds=1))
    code, details = await _call(rn, token)
    assert code == UNAUTH
    assert "expired" in details
    assert token not in details


async def test_a_token_expires_while_cached(running: RunningNode) -> None:
    rn = running
    token = await _add(rn, "expiring-verifier", datetime.now(UTC) + timedelta(seconds=0.5))
    assert await _call(rn, token) == (grpc.StatusCode.OK, "")
    await asyncio.sleep(0.6)
    assert await _call(rn, token) == (UNAUTH, "token expired")


async def test_a_token_with_a_future_expiry_works(running: RunningNode) -> None:
    rn = running
    client, token = await create_client(
        rn.init.config, "verifier", "test 90 days", expires_in=timedelta(days=90)
    )
    assert client.expires_at is not None
    assert client.expires_at - client.created_at == timedelta(days=90)
    assert await _call(rn, token) == (grpc.StatusCode.OK, "")


async def test_an_unknown_token_is_refused(running: RunningNode) -> None:
    token = new_token()
    code, details = await _call(running, token)
    assert (code, details) == (UNAUTH, "unknown API token")
    assert token not in details


async def test_refusals_never_log_the_token(running: RunningNode) -> None:
    rn = running
    expired = await _add(rn, "expired-verifier", datetime.now(UTC) - timedelta(days=1))
    client, revoked = await create_client(rn.init.config, "verifier", "test revoked")
    await revoke_client(rn.init.config, client.client_id)
    with capture_logs() as logs:
        assert (await _call(rn, expired))[0] == UNAUTH
        assert (await _call(rn, revoked))[0] == UNAUTH
    refused = [e for e in logs if e["event"] == "auth.refused"]
    assert [(e["client_id"], e["reason"]) for e in refused] == [
        ("expired-verifier", "token expired"),
        (client.client_id, "token revoked"),
    ]
    text = repr(logs)
    for token in (expired, revoked):
        assert token not in text
        assert hash_token(token).hex() not in text


# -- the authenticator alone (its cache, with a clock of our own) --------------------


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "node.db")
    try:
        yield s
    finally:
        await s.close()


async def test_expiry_is_checked_on_cached_clients(store: SqliteStore) -> None:
    clock = _Clock()
    token = new_token()
    await store.add_client(
        Client(
            "c-1",
            "test",
            Role(RoleKind.VERIFIER),
            hash_token(token),
            clock.now,
            expires_at=clock.now + timedelta(hours=1),
        )
    )
    authn = Authenticator(store, cache_seconds=3600, now=clock)
    assert (await authn.authenticate(_md(token))).client_id == "c-1"
    clock.now += timedelta(minutes=59, seconds=59)
    assert (await authn.authenticate(_md(token))).client_id == "c-1"
    clock.now += timedelta(seconds=1)  # expires_at itself: no longer valid
    with pytest.raises(UnauthenticatedError, match=r"^token expired$"):
        await authn.authenticate(_md(token))


async def test_revocation_is_seen_when_the_cache_entry_lapses(store: SqliteStore) -> None:
    token = new_token()
    await store.add_client(
        Client("c-1", "test", Role(RoleKind.VERIFIER), hash_token(token), datetime.now(UTC))
    )
    authn = Authenticator(store, cache_seconds=0.2)
    await authn.authenticate(_md(token))
    await store.revoke_client("c-1", datetime.now(UTC))
    # Within the cache lifetime the cached client still answers (documented) ...
    assert (await authn.authenticate(_md(token))).client_id == "c-1"
    await asyncio.sleep(0.25)
    # ... and after it the revocation is seen.
    with pytest.raises(UnauthenticatedError, match=r"^token revoked$"):
        await authn.authenticate(_md(token))


async def test_the_cache_never_outlives_the_expiry(store: SqliteStore) -> None:
    # Wall-clock expiry reached while the (monotonic) cache entry would still
    # be valid: the entry was capped at the expiry, so the client is re-read.
    token = new_token()
    now = datetime.now(UTC)
    await store.add_client(
        Client(
            "c-1",
            "test",
            Role(RoleKind.VERIFIER),
            hash_token(token),
            now,
            expires_at=now + timedelta(seconds=0.2),
        )
    )
    authn = Authenticator(store, cache_seconds=3600)
    await authn.authenticate(_md(token))
    deadline = authn._cache[hash_token(token)][0]
    assert deadline - time.monotonic() < 0.3
    await asyncio.sleep(0.25)
    with pytest.raises(UnauthenticatedError, match=r"^token expired$"):
        await authn.authenticate(_md(token))
    assert hash_token(token) not in authn._cache


# -- upgrade of an existing node ------------------------------------------------------


async def test_clients_of_a_schema_3_database_keep_working(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    with sqlite3.connect(path, isolation_level=None) as raw:
        raw.execute("BEGIN")
        for migration in load_migrations()[:3]:
            for statement in migration.statements:
                raw.execute(statement)
        raw.execute("PRAGMA user_version = 3")
        raw.execute(
            "INSERT INTO clients (client_id, name, role, token_hash, created_at) "
            "VALUES ('c-old', 'old', 'verifier', ?, 0)",
            (hash_token("cf_old"),),
        )
        raw.execute("COMMIT")
    raw.close()
    store = await SqliteStore.open(path)
    try:
        [client] = await store.list_clients()
        assert (client.client_id, client.expires_at, client.revoked_at) == ("c-old", None, None)
        revoked = await store.revoke_client("c-old", datetime(2025, 1, 1, tzinfo=UTC))
        assert revoked.revoked_at == datetime(2025, 1, 1, tzinfo=UTC)
    finally:
        await store.close()
