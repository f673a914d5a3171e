"""``/events``: the engine's event stream as server-sent events."""
from __future__ import annotations

import asyncio
import json

from tornado.iostream import StreamClosedError

from ..spec.models import Event, EventsQuery
from .base import SSE_HEARTBEAT, BaiHandler, api_method


class EventsHandler(BaiHandler):
    """Server-sent events; ``since`` replays what a reconnecting client missed.

    A replay with a gap, or a client that falls ``BaiApp.event_buffer`` events behind (each
    write waits for the socket), gets ``event: resync`` instead: reload the state, go on.
    """

    @api_method("read", operation_id="streamEvents", tag="events", query=EventsQuery,
                content="text/event-stream", stream=Event,
                headers=(("Last-Event-ID", "The last `seq` seen; same as `since`."),),
                summary="Server-sent events for session and vfolder changes.",
                returns="An endless SSE stream of Event objects.", errors=(400,))
    async def get(self) -> None:
        """`text/event-stream`: each event is `id: <seq>`, `event: <kind>`, and
        `data: <Event JSON>`; a `: ping` comment is sent every 15 s. Reconnect with
        `since=<last seq>` (or the `Last-Event-ID` header) to replay what was missed.
        An event of kind `resync` (`{"kind": "resync", "seq": N}`) says events were skipped
        (the subscriber was too slow, or `since` is older than the kept history): reload the
        sessions, folders and resources you show, then carry on from `seq`.
        Example: `for e in Client().events(): print(e)`.
        """
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
