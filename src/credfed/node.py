"""A node's domain objects, assembled from its configuration (no grpc)."""

from __future__ import annotations

from dataclasses import dataclass, field

from credfed import clock
from credfed.audit import AuditTrail
from credfed.config import Config
from credfed.crypto.keys import SigningKey, VerifyingKey
from credfed.errors import NotFoundError, UnavailableError
from credfed.federation.crossborder import CrossBorder, LookupAnswer
from credfed.federation.descriptor import all_keys
from credfed.federation.local import own_descriptor
from credfed.federation.peers import PeerDirectory
from credfed.federation.replica import Replicas
from credfed.federation.serving import LogServer
from credfed.federation.sync import Replicator
from credfed.models import Checkpoint, Envelope, SignedCheckpoint
from credfed.recognition.service import Recognition
from credfed.registry import Registry
from credfed.statuslog import merkle
from credfed.statuslog.checkpoint import sign_checkpoint
from credfed.statuslog.log import StatusLog
from credfed.statuslog.watch import LogWatch
from credfed.storage.base import Store
from credfed.storage.sqlite import SqliteStore
from credfed.verification import HolderAttribute, Verifier


@dataclass(slots=True)
class Node:
    config: Config
    store: Store
    key: SigningKey
    registry: Registry
    verifier: Verifier
    descriptor: Envelope
    log_server: LogServer
    peers: PeerDirectory
    replicas: Replicas
    crossborder: CrossBorder
    recognition: Recognition
    now: clock.Clock
    #: The audit trail the RPC layer records calls on (see credfed.audit).
    audit: AuditTrail
    #: Set by the server once it has opened links to partners.
    replicator: Replicator | None = field(default=None)

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
        peers = PeerDirectory(config.data_dir, config.country)
        replicas = await Replicas.load(store, [p.descriptor for p in peers.list()], now)
        fed = config.federation

        def keys_of(country: str) -> dict[str, VerifyingKey] | None:
            descriptor = replicas.trust.descriptor(country)
            return None if descriptor is None else all_keys(descriptor)

        recognition = Recognition(store, key, config.country, now, keys_of)
        await recognition.load()
        return cls(
            config=config,
            store=store,
            key=key,
            registry=Registry(store, log, key, config.country, now, watch=watch),
            verifier=verifier,
            descriptor=own_descriptor(config, key, now()),
            log_server=LogServer(
                config.country,
                store,
                verifier,
                watch,
                replicas=replicas,
                keepalive=min(15.0, fed.checkpoint_interval),
            ),
            peers=peers,
            replicas=replicas,
            crossborder=CrossBorder(
                replicas,
                store,
                _unconnected,
                now,
                record_ttl=fed.record_cache_ttl,
                max_records=fed.record_cache_max,
                max_staleness=fed.staleness_for,
            ),
            recognition=recognition,
            now=now,
            audit=AuditTrail(store),
        )

    def attach(self, replicator: Replicator) -> None:
        """Connect the node to its partners (done by the server)."""
        self.replicator = replicator
        self.crossborder.lookup = replicator.lookup

    async def heartbeat(self) -> SignedCheckpoint | None:
        """Re-sign the unchanged log if its newest checkpoint is older than
        ``federation.checkpoint_interval`` (rule: partners judge staleness by
        the origin's signed time, so a quiet log must keep signing)."""
        now = self.now()
        try:
            current: SignedCheckpoint | None = await self.verifier.checkpoint()
        except NotFoundError:
            current = None  # an empty log never signed yet
        if current is not None and (
            (now - current.checkpoint.timestamp).total_seconds()
            < self.config.federation.checkpoint_interval
        ):
            return None
        size = current.checkpoint.tree_size if current else 0
        root = current.checkpoint.root_hash if current else merkle.EMPTY_ROOT
        signed = sign_checkpoint(
            self.key,
            Checkpoint(origin=self.config.country, tree_size=size, root_hash=root, timestamp=now),
        )
        self.verifier.heartbeat(signed)
        await self.log_server.refreshed()
        return signed

    async def close(self) -> None:
        await self.store.close()


async def _unconnected(
    country: str, credential_id: str, attribute: HolderAttribute
) -> LookupAnswer:
    raise UnavailableError("this node is not connected to any partner")
