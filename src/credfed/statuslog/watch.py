"""Wake log subscribers when the log grows.

The registry reports each committed size; each subscriber waits for a size
beyond what it has sent. A subscriber that reads slowly only delays itself:
nothing is queued on its behalf and the writer never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib


class LogWatch:
    def __init__(self) -> None:
        self._size = 0
        self._refreshes = 0
        self._closed = False
        self._changed = asyncio.Condition()

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Release every waiter now (the server is stopping)."""
        async with self._changed:
            self._closed = True
            self._changed.notify_all()

    async def published(self, size: int) -> None:
        async with self._changed:
            if size > self._size:
                self._size = size
                self._changed.notify_all()

    async def refreshed(self) -> None:
        """A fresher checkpoint of the same size (a heartbeat): wake waiters
        so that it reaches subscribers now, not at the next keepalive."""
        async with self._changed:
            self._refreshes += 1
            self._changed.notify_all()

    async def wait_beyond(self, size: int, within: float) -> int:
        """Return the committed size once it exceeds ``size`` or the latest
        checkpoint was refreshed, or after ``within`` seconds whatever it is
        (a keepalive for the stream)."""
        async with self._changed:
            seen = self._refreshes
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(
                        lambda: self._size > size or self._refreshes != seen or self._closed
                    ),
                    within,
                )
            return self._size
