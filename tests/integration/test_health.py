"""Health per service, with reasons, on real ``credfed serve`` processes:
a write lock held on the node's SQLite file by another process, a partner
that stops (its replica goes stale) and an origin proven forked. Statuses
are read with the real grpc.health.v1 stub, reasons from the node's log."""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from pathlib import Path

import pytest
from fednet import (
    FedNode,
    build,
    eventually,
    health,
    log_checkpoint,
    log_events,
    log_offset,
    peer_token,
    register_issuer,
    start_all,
    stop_all,
)
from grpc_health.v1 import health_pb2

from credfed import config as cfg
from credfed.federation.peers import PeerDirectory
from credfed.rpc.healthmon import FEDERATION, NODE, REGISTRY, SERVICES, VERIFICATION

pytestmark = pytest.mark.slow

SERVING: int = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: int = health_pb2.HealthCheckResponse.NOT_SERVING


async def statuses(node: FedNode) -> dict[str, int]:
    return {name: await health(node, name) for name in SERVICES}


def changes(node: FedNode, offset: int, service: str) -> list[tuple[bool, str]]:
    """The node's ``health.changed`` lines for ``service`` from ``offset`` on."""
    return [
        (e["serving"], e["reason"])
        for e in log_events(node, "health.changed", offset)
        if e["service"] == service
    ]


async def test_a_write_lock_held_elsewhere_stops_the_registry_not_verification(
    tmp_path: Path,
) -> None:
    (de,) = (await build(tmp_path, ["DE"], [])).values()
    try:
        await start_all(de)
        await register_issuer(de)
        cid = await de.issue()
        assert await statuses(de) == dict.fromkeys(SERVICES, SERVING)

        offset = log_offset(de)
        lock = sqlite3.connect(de.data_dir / cfg.DB_FILE, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")  # held: no one else can write

            async def registry_down() -> bool:
                return await health(de, REGISTRY) == NOT_SERVING

            # Probes every 0.5 s (checkpoint_interval 1 s), each waiting 1 s.
            await eventually(registry_down, timeout=10)
            assert await statuses(de) == {
                NODE: NOT_SERVING,
                REGISTRY: NOT_SERVING,
                VERIFICATION: SERVING,
                FEDERATION: SERVING,
            }
            # Reads are not blocked by the held write lock (WAL): verifiers go on.
            assert (await de.verify(cid)).credential_id == cid
            reason = "store not writable: database is locked"
            assert changes(de, offset, NODE) == [(False, reason)]
            assert changes(de, offset, REGISTRY) == [(False, reason)]
            assert changes(de, offset, VERIFICATION) == []
        finally:
            lock.execute("ROLLBACK")
            lock.close()

        async def all_serving() -> bool:
            return await statuses(de) == dict.fromkeys(SERVICES, SERVING)

        await eventually(all_serving, timeout=10)
        assert changes(de, offset, REGISTRY)[-1] == (True, "")
        await de.issue(given_names="Petra")  # and registrars can write again
    finally:
        await stop_all(de)


def set_staleness(node: FedNode, **by_origin: float) -> None:
    """Give a node (not yet started) per-origin staleness limits."""
    config = cfg.load(node.data_dir)
    fed = dataclasses.replace(config.federation, max_staleness_by_origin=by_origin)
    config = dataclasses.replace(config, federation=fed)
    (node.data_dir / cfg.CONFIG_FILE).write_text(config.to_toml())
    assert cfg.load(node.data_dir).federation.max_staleness_by_origin == by_origin


async def test_a_stopped_partner_degrades_the_federation_only_and_recovers(
    tmp_path: Path,
) -> None:
    nodes = await build(tmp_path, ["DE", "FR"], [("DE", "FR"), ("FR", "DE")])
    de, fr = nodes["DE"], nodes["FR"]
    set_staleness(de, FR=3.0)
    try:
        await start_all(de, fr)
        probe = await peer_token(de)

        async def all_serving() -> bool:
            return await statuses(de) == dict.fromkeys(SERVICES, SERVING)

        await eventually(lambda: log_checkpoint(de, "FR", probe), timeout=10)  # DE holds FR's
        await eventually(all_serving, timeout=10)
        offset = log_offset(de)
        await stop_all(fr)

        async def federation_down() -> bool:
            return await health(de, FEDERATION) == NOT_SERVING

        await eventually(federation_down, timeout=20)
        # A partner's outage is no reason to restart this node.
        assert await statuses(de) == {
            NODE: SERVING,
            REGISTRY: SERVING,
            VERIFICATION: SERVING,
            FEDERATION: NOT_SERVING,
        }
        ((serving, reason),) = changes(de, offset, FEDERATION)
        assert not serving
        assert re.fullmatch(
            r"replica of FR stale: newest checkpoint \d+ s old \(max 3 s\)", reason
        ), reason
        assert changes(de, offset, NODE) == []

        await start_all(fr)
        await eventually(all_serving, timeout=30)
        assert changes(de, offset, FEDERATION)[-1] == (True, "")
    finally:
        await stop_all(*nodes.values())


async def test_a_forked_origin_stops_the_federation_service_for_good(tmp_path: Path) -> None:
    """PL replicates DE; then its link is pointed at DE2, DE's twin (same key
    and descriptor) whose log of the same size has another root: a fork,
    proven by PL itself. It outlives a restart (the evidence is stored)."""
    nodes = await build(
        tmp_path, ["DE", "DE2", "PL"], [("PL", "DE")], pins=[("PL", "DE")], twins={"DE2": "DE"}
    )
    de, de2, pl = nodes["DE"], nodes["DE2"], nodes["PL"]
    try:
        await start_all(de, de2, pl)
        await register_issuer(de)
        await register_issuer(de2)
        await de.issue()
        await de2.issue(given_names="Petra")  # the same size, another root
        size, probe = await de.log_size(), await peer_token(pl)

        async def replicated() -> bool:
            return (await log_checkpoint(pl, "DE", probe)).tree_size == size

        await eventually(replicated, timeout=10)
        assert await health(pl, FEDERATION) == SERVING
        await stop_all(pl)
        PeerDirectory(pl.data_dir, "PL").set_link(
            "DE", await peer_token(de2, "node PL"), de2.federation_target
        )
        offset = log_offset(pl)
        await start_all(pl)

        async def federation_down() -> bool:
            return await health(pl, FEDERATION) == NOT_SERVING

        await eventually(federation_down, timeout=20)
        assert await health(pl, NODE) == SERVING
        assert changes(pl, offset, FEDERATION) == [(False, "origin DE forked (evidence in store)")]

        await stop_all(pl, de, de2)
        offset = log_offset(pl)
        await start_all(pl)  # nobody to reach: only the stored evidence speaks
        assert await health(pl, FEDERATION) == NOT_SERVING
        assert changes(pl, offset, FEDERATION) == [(False, "origin DE forked (evidence in store)")]
    finally:
        await stop_all(*nodes.values())
