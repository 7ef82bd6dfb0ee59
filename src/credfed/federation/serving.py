"""What this node serves to partner nodes about its own log (no grpc).

Partners replicate the log by checkpoint, entries in bounded batches and
consistency proofs, or by subscribing. Only this node's own origin is served
for now; relaying replicated logs of other origins comes with replication.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from credfed.errors import NotFoundError, ValidationError
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
    def __init__(self, origin: str, store: Store, verifier: Verifier, watch: LogWatch) -> None:
        self._origin = origin
        self._store = store
        self._verifier = verifier
        self._watch = watch

    def _check_origin(self, origin: str) -> None:
        if origin != self._origin:
            raise NotFoundError(f"this node serves no status log of origin {origin!r}")

    async def checkpoint(self, origin: str) -> SignedCheckpoint:
        self._check_origin(origin)
        return await self._verifier.checkpoint()

    async def entries(self, origin: str, start: int, end: int) -> list[bytes]:
        self._check_origin(origin)
        size = (await self._verifier.checkpoint()).checkpoint.tree_size
        if not 0 <= start < end:
            raise ValidationError("end", "must be greater than start")
        if end - start > MAX_ENTRIES:
            raise ValidationError("end", f"at most {MAX_ENTRIES} entries per request")
        if end > size:
            raise ValidationError("end", f"is beyond the log size {size}")
        return await self._store.get_log_entries(start, end)

    async def consistency(self, origin: str, old_size: int, new_size: int) -> list[bytes]:
        self._check_origin(origin)
        proof, _ = await self._verifier.consistency(old_size, new_size)
        return proof

    async def subscribe(self, origin: str, from_index: int) -> AsyncIterator[LogUpdate]:
        """Entries from ``from_index`` on, in batches, each with the signed
        checkpoint that covers it; then new ones as they are committed."""
        self._check_origin(origin)
        sent = from_index
        while True:
            checkpoint = await self._verifier.checkpoint()
            size = checkpoint.checkpoint.tree_size
            if sent > size:
                raise ValidationError("from_index", f"is beyond the log size {size}")
            if sent == size:
                yield LogUpdate(checkpoint, sent, [])  # keepalive: the latest checkpoint
            while sent < size:
                end = min(size, sent + MAX_ENTRIES)
                leaves = await self._store.get_log_entries(sent, end)
                yield LogUpdate(checkpoint, sent, leaves)
                sent = end
            await self._watch.wait_beyond(size, KEEPALIVE_SECONDS)
