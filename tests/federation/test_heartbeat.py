"""Checkpoint heartbeats: an unchanged log is re-signed once per
checkpoint_interval (empty or not), with the same size and root and a newer
time, and the verifier serves the fresher checkpoint."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import ISSUER, draft

from credfed.bootstrap import init_node
from credfed.config import FederationSettings
from credfed.models import Issuer, IssuerStatus, Role, RoleKind
from credfed.node import Node
from credfed.rpc import convert
from credfed.statuslog import merkle


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.mark.parametrize("issued", [0, 2])
async def test_one_heartbeat_per_interval(tmp_path: Path, issued: int) -> None:
    init = await init_node(tmp_path / "de", "DE", "127.0.0.1:0")
    config = dataclasses.replace(
        init.config, federation=FederationSettings(checkpoint_interval=10.0)
    )
    clock = Clock()
    node = await Node.open(config, clock)
    try:
        await node.store.add_issuer(Issuer(ISSUER, "HWK", ("energy",), IssuerStatus.ACTIVE))
        for _ in range(issued):
            await node.registry.issue(Role(RoleKind.ADMIN), convert.draft(draft(), "d"))
        if issued:
            # The checkpoint of the last change is fresh: no heartbeat yet.
            assert await node.heartbeat() is None
            clock.now += timedelta(seconds=10)
        first = await node.heartbeat()
        assert first is not None
        assert first.checkpoint.tree_size == issued
        if issued == 0:
            assert first.checkpoint.root_hash == merkle.EMPTY_ROOT
        # Within the interval nothing new is signed, however often it is asked.
        for seconds in (1, 5, 9.9):
            clock.now = first.checkpoint.timestamp + timedelta(seconds=seconds)
            assert await node.heartbeat() is None
        clock.now = first.checkpoint.timestamp + timedelta(seconds=10)
        second = await node.heartbeat()
        assert second is not None
        assert second.checkpoint.tree_size == issued
        assert second.checkpoint.root_hash == first.checkpoint.root_hash
        assert second.checkpoint.timestamp > first.checkpoint.timestamp
        assert await node.verifier.checkpoint() == second
    finally:
        await node.close()
