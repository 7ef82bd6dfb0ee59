"""What this node serves to partner nodes about status logs (no grpc): its
own log, and the replicas it holds of other origins' logs (relay).

Partners replicate a log by checkpoint, entries in bounded batches and
consistency proofs, or by subscribing. A relayed log is served only up to
the replica's checkpoint, which the replica always covers, and not at all
once its origin is proven forked: the evidence is handed on instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from credfed.errors import ForkedOriginError, NotFoundError, ValidationError
from credfed.federation.replica import Replicas
from credfed.models import SignedCheckpoint
from credfed.statuslog.watch import LogWatch
from credfed.storage.base import Store
from credfed.verification import Verifier

#: Entries per answer (GetLogEntries) and per message (SubscribeLog).
MAX_ENTRIES = 1000
#: A subscription sends the latest checkpoint at least this often (keepalive).
KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class LogUpdate:
    checkpoint: SignedCheckpoint
    start: int
    leaves: list[bytes]


class LogServer:
    def __init__(
        self,
        origin: str,
        store: Store,
        verifier: Verifier,
        watch: LogWatch,
        *,
        replicas: Replicas | None = None,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._origin = origin
        self._store = store
        self._verifier = verifier
        self._watch = watch
        self._replicas = replicas
        self._keepalive = keepalive
        #: SubscribeLog streams being served now (metrics).
        self.subscribers = 0

    def _is_own(self, origin: str) -> bool:
        if origin == self._origin:
            return True
        if self._replicas is None or self._replicas.trust.descriptor(origin) is None:
            raise NotFoundError(f"this node serves no status log of origin {origin[:8]!r}")
        if self._replicas.trust.is_forked(origin):
            raise ForkedOriginError(f"origin {origin} is proven forked; its log is not relayed")
        return False

    async def checkpoint(self, origin: str) -> SignedCheckpoint:
        if self._is_own(origin):
            return await self._verifier.checkpoint()
        assert self._replicas is not None  # _is_own checked
        checkpoint = await self._replicas.checkpoint(origin)
        if checkpoint is None:
            raise NotFoundError(f"this node holds no checkpoint of {origin} yet")
        return checkpoint

    async def entries(self, origin: str, start: int, end: int) -> list[bytes]:
        size = (await self.checkpoint(origin)).checkpoint.tree_size
        if not 0 <= start < end:
            raise ValidationError("end", "must be greater than start")
        if end - start > MAX_ENTRIES:
            raise ValidationError("end", f"at most {MAX_ENTRIES} entries per request")
        if end > size:
            raise ValidationError("end", f"is beyond the log size {size}")
        return await self._leaves(origin, start, end)

    async def _leaves(self, origin: str, start: int, end: int) -> list[bytes]:
        if origin == self._origin:
            return await self._store.get_log_entries(start, end)
        return await self._store.get_replica_entries(origin, start, end)

    async def consistency(self, origin: str, old_size: int, new_size: int) -> list[bytes]:
        if self._is_own(origin):
            proof, _ = await self._verifier.consistency(old_size, new_size)
            return proof
        assert self._replicas is not None
        latest = (await self.checkpoint(origin)).checkpoint.tree_size
        size = new_size or latest
        if not 0 < old_size <= min(size, latest):
            raise ValidationError("old_size", f"must be between 1 and {min(size, latest)}")
        if size > latest:
            raise ValidationError("new_size", f"is beyond the log size {latest}")
        return await self._replicas.consistency(origin, old_size, size)

    async def refreshed(self) -> None:
        """This node re-signed its unchanged log: push it to subscribers."""
        await self._watch.refreshed()

    async def close(self) -> None:
        """End every subscription promptly (the server is stopping)."""
        await self._watch.close()
        if self._replicas is not None:
            await self._replicas.close_watches()

    def _watch_for(self, origin: str) -> LogWatch:
        if origin == self._origin or self._replicas is None:
            return self._watch
        return self._replicas.watch(origin)

    async def subscribe(self, origin: str, from_index: int) -> AsyncIterator[LogUpdate]:
        """Entries from ``from_index`` on, in batches, each with the signed
        checkpoint that covers it; then new ones as they are committed, and
        the latest checkpoint at least every ``keepalive`` seconds (so that
        heartbeat checkpoints reach subscribers)."""
        self.subscribers += 1
        try:
            async for update in self._subscribe(origin, from_index):
                yield update
        finally:  # also when the stream is cancelled (the client went away)
            self.subscribers -= 1

    async def _subscribe(self, origin: str, from_index: int) -> AsyncIterator[LogUpdate]:
        sent = from_index
        watch = self._watch_for(origin)
        while not watch.closed:
            checkpoint = await self.checkpoint(origin)
            size = checkpoint.checkpoint.tree_size
            if sent > size:
                if origin == self._origin:
                    raise ValidationError("from_index", f"is beyond the log size {size}")
                # A subscriber ahead of this relay's replica waits for it.
                await watch.wait_beyond(size, self._keepalive)
                continue
            if sent == size:
                yield LogUpdate(checkpoint, sent, [])  # keepalive: the latest checkpoint
            while sent < size:
                end = min(size, sent + MAX_ENTRIES)
                leaves = await self._leaves(origin, sent, end)
                yield LogUpdate(checkpoint, sent, leaves)
                sent = end
            await watch.wait_beyond(size, self._keepalive)
