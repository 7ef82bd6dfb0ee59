"""A node's domain objects, assembled from its configuration (no grpc)."""

from __future__ import annotations

from dataclasses import dataclass

from credfed import clock
from credfed.config import Config
from credfed.crypto.keys import SigningKey
from credfed.federation.local import own_descriptor
from credfed.federation.serving import LogServer
from credfed.models import Envelope
from credfed.registry import Registry
from credfed.statuslog.log import StatusLog
from credfed.statuslog.watch import LogWatch
from credfed.storage.base import Store
from credfed.storage.sqlite import SqliteStore
from credfed.verification import Verifier


@dataclass(slots=True)
class Node:
    config: Config
    store: Store
    key: SigningKey
    registry: Registry
    verifier: Verifier
    descriptor: Envelope
    log_server: LogServer

    @classmethod
    async def open(cls, config: Config, now: clock.Clock = clock.utc_now) -> Node:
        key = SigningKey.load(config.key_path)
        store = await SqliteStore.open(config.db_path)
        log = StatusLog(config.country, key, now)
        watch = LogWatch()
        latest = await store.latest_checkpoint()
        if latest is not None:
            await watch.published(latest.checkpoint.tree_size)
        verifier = Verifier(store, now)
        return cls(
            config=config,
            store=store,
            key=key,
            registry=Registry(store, log, key, config.country, now, watch=watch),
            verifier=verifier,
            descriptor=own_descriptor(config, key, now()),
            log_server=LogServer(config.country, store, verifier, watch),
        )

    async def close(self) -> None:
        await self.store.close()
