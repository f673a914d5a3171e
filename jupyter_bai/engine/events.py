"""Event stream: every state change is appended to the store, then fanned out.

Subscribers that reconnect with ``since=<seq>`` replay what they missed from
SQLite, so the sidebar never shows a stale status after a network blip.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator

from .store import Store

KEEP_EVENTS = 10_000


class EventBus:
    def __init__(self, store: Store):
        self._store = store
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._published = 0

    def publish(self, kind: str, name: str, **data: Any) -> dict[str, Any]:
        at = time.time()
        payload = {"kind": kind, "name": name, **data}
        cur = self._store.execute(
            "INSERT INTO events(at, kind, name, data) VALUES (?, ?, ?, ?)",
            (at, kind, name, json.dumps(payload, default=str)),
        )
        event = {"seq": cur.lastrowid, "at": at, **payload}
        self._published += 1
        if self._published % 1000 == 0:
            self._store.execute(
                "DELETE FROM events WHERE seq < (SELECT MAX(seq) FROM events) - ?", (KEEP_EVENTS,)
            )
        for queue in list(self._subscribers):
            queue.put_nowait(event)
        return event

    def history(self, since: int) -> list[dict[str, Any]]:
        rows = self._store.query(
            "SELECT seq, at, data FROM events WHERE seq > ? ORDER BY seq", (since,)
        )
        return [{"seq": r["seq"], "at": r["at"], **json.loads(r["data"])} for r in rows]

    def last_seq(self) -> int:
        row = self._store.one("SELECT MAX(seq) AS s FROM events")
        return int(row["s"] or 0) if row else 0

    async def subscribe(self, since: int | None = None) -> AsyncIterator[dict[str, Any]]:
        """Replay events after ``since`` (if given), then yield live ones."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            last = 0
            if since is not None:
                for event in self.history(since):
                    last = event["seq"]
                    yield event
            while True:
                event = await queue.get()
                if event["seq"] > last:
                    yield event
        finally:
            self._subscribers.discard(queue)
