"""One costly step per event-loop iteration, so a burst cannot hold the loop.

Twenty ``session create`` requests that arrive together are twenty ready callbacks of about a
millisecond each, and asyncio runs every ready callback of an iteration before it looks at its
timers again: every other request, stream and timer waited for all of them. Steps that take a
turn run one per iteration instead, in arrival order (``asyncio.Lock`` is FIFO), and the rest
of the server is served between them. The same total work, never in one long stretch.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class Turns:
    """Take a turn around a synchronous step (no ``await`` inside, and never nested)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        await self._lock.acquire()
        try:
            yield
        finally:
            # Released on the next iteration: a step that finds the lock free in this one
            # would otherwise run straight after, and the burst would be one stretch again.
            asyncio.get_running_loop().call_soon(self._lock.release)
