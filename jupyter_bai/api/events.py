"""``/events``: the engine's event stream as server-sent events."""
from __future__ import annotations

import asyncio
import json

from tornado.iostream import StreamClosedError

from .base import SSE_HEARTBEAT, BaiHandler, api_method

class EventsHandler(BaiHandler):
    """Server-sent events; ``since`` replays what a reconnecting client missed."""

    @api_method
    async def get(self) -> None:
        since = self.int_arg("since")
        if since is None:
            since = self.last_event_id()
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        stream = self.engine.events.subscribe(since)
        try:
            self.write(": connected\n\n")
            await self.flush()
            while True:
                try:
                    event = await asyncio.wait_for(stream.__anext__(), timeout=SSE_HEARTBEAT)
                except asyncio.TimeoutError:
                    self.write(": ping\n\n")
                else:
                    data = json.dumps(event, default=str)
                    self.write(f"id: {event['seq']}\nevent: {event['kind']}\ndata: {data}\n\n")
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            await stream.aclose()
