"""`credfed status`: what an operator needs at a glance, read from the data
directory (the store is safe to read while the node serves). No personal
data: origins, sizes, ages and alarms only."""

from __future__ import annotations

from typing import Any

from credfed.clock import utc_now
from credfed.config import Config
from credfed.federation.evidence import decode_evidence
from credfed.federation.peers import PeerDirectory
from credfed.storage.sqlite import SqliteStore
from credfed.verification import age_seconds


async def node_status(config: Config) -> dict[str, Any]:
    now = utc_now()
    directory = PeerDirectory(config.data_dir, config.country)
    peers = directory.list()
    links = {link.country: link.endpoint for link in directory.links()}
    store = await SqliteStore.open(config.db_path)
    try:
        own = await store.latest_checkpoint()
        replicas = {cp.checkpoint.origin: cp for cp in await store.replica_checkpoints()}
        forks = {origin: decode_evidence(data) for origin, data in await store.list_fork_evidence()}
        origins = []
        for peer in peers:
            origin = peer.descriptor.country
            cp = replicas.get(origin)
            age = age_seconds(cp, now) if cp else None
            origins.append(
                {
                    "origin": origin,
                    "link": links.get(origin),
                    "replica_size": await store.replica_size(origin),
                    "checkpoint_size": cp.checkpoint.tree_size if cp else None,
                    "checkpoint_age_seconds": age,
                    "stale": age is None or age > config.federation.staleness_for(origin),
                    "forked": origin in forks,
                }
            )
    finally:
        await store.close()
    alarms = [
        f"FORK: {origin} signed two inconsistent checkpoints; its data is refused"
        " (evidence kept in the store)"
        for origin in sorted(forks)
    ]
    return {
        "country": config.country,
        "node_id": config.node_id,
        "log_size": own.checkpoint.tree_size if own else 0,
        "checkpoint_age_seconds": age_seconds(own, now) if own else None,
        "origins": origins,
        "alarms": alarms,
    }
