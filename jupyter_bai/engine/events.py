"""Event stream: an outbox in the store, fanned out to bounded subscribers.

An event row is written in the same transaction as the change it reports
(``publish`` joins the open ``store.tx()``), and reaches subscribers only after
that transaction commits, so nobody ever sees an event for a change that was
rolled back. Sequence numbers (``seq``) only grow. A subscriber that falls more
than its buffer behind, or asks to replay from before the kept history, gets one
``{"kind": "resync", "seq": N}`` and then live events after ``N``: it must reload
its state (a snapshot as of ``N`` or later) instead of trusting a stream with gaps.
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from typing import Any, AsyncIterator

from .store import Store

KEEP_EVENTS = 10_000
TRIM_EVERY = 1_000
DEFAULT_BUFFER = 1_000


def resync(seq: int) -> dict[str, Any]:
    return {"kind": "resync", "seq": seq}


class Subscription:
    """One subscriber's bounded buffer; overflowing it turns into a single resync."""

    def __init__(self, maxsize: int):
        self.maxsize = max(1, maxsize)
        self.floor = 0  # events at or below this seq were already delivered (replay)
        self.resyncs = 0
        self._items: deque[dict[str, Any]] = deque()
        self._ready = asyncio.Event()

    def offer(self, event: dict[str, Any]) -> None:
        if event["seq"] <= self.floor:
            return
        if len(self._items) >= self.maxsize:
            self._items.clear()
            self._items.append(resync(event["seq"]))
            self.resyncs += 1
        else:
            self._items.append(event)
        self._ready.set()

    async def get(self) -> dict[str, Any]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


class EventBus:
    def __init__(self, store: Store, buffer: int = DEFAULT_BUFFER, keep: int = KEEP_EVENTS):
        self._store = store
        self.buffer = buffer
        self.keep = keep
        self._subscribers: set[Subscription] = set()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._loop_thread = threading.get_ident() if self._loop else None

    def publish(self, kind: str, name: str, **data: Any) -> dict[str, Any]:
        """Record an event with the open transaction (or its own) and fan it out on commit."""
        at = time.time()
        payload = {"kind": kind, "name": name, **data}
        with self._store.tx() as conn:
            cur = conn.execute(
                "INSERT INTO events(at, kind, name, data) VALUES (?, ?, ?, ?)",
                (at, kind, name, json.dumps(payload, default=str)),
            )
            seq = int(cur.lastrowid or 0)
            if seq % TRIM_EVERY == 0:
                conn.execute("DELETE FROM events WHERE seq <= ?", (seq - self.keep,))
            event = json.loads(json.dumps({"seq": seq, "at": at, **payload}, default=str))
            self._store.after_commit(lambda: self._fan_out(event))
        return event

    def _fan_out(self, event: dict[str, Any]) -> None:
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._deliver, event)
        else:
            self._deliver(event)

    def _deliver(self, event: dict[str, Any]) -> None:
        for sub in list(self._subscribers):
            sub.offer(event)

    def history(self, since: int) -> list[dict[str, Any]]:
        rows = self._store.query(
            "SELECT seq, at, data FROM events WHERE seq > ? ORDER BY seq", (since,)
        )
        return [{"seq": r["seq"], "at": r["at"], **json.loads(r["data"])} for r in rows]

    def last_seq(self) -> int:
        """The newest committed seq (kept even when every row was trimmed)."""
        row = self._store.one("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        return int(row["seq"]) if row else 0

    def oldest_seq(self) -> int:
        """The oldest seq still kept; ``last_seq() + 1`` when none is."""
        row = self._store.one("SELECT MIN(seq) AS s FROM events")
        return int(row["s"]) if row and row["s"] is not None else self.last_seq() + 1

    def can_replay(self, since: int) -> bool:
        """True when every event after ``since`` is still kept (and ``since`` is ours)."""
        with self._store.consistent():
            return self.oldest_seq() - 1 <= since <= self.last_seq()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def subscribe(
        self, since: int | None = None, buffer: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Replay events after ``since`` (if given), then yield live ones.

        Yields ``resync`` instead of a replay that would have a gap, and whenever
        this subscriber's buffer (``buffer`` events) overflows.
        """
        sub = Subscription(self.buffer if buffer is None else buffer)
        self._subscribers.add(sub)  # before the replay: nothing committed in between is lost
        try:
            if since is not None:
                with self._store.consistent():
                    ok = self.can_replay(since)
                    last = self.last_seq()
                    replay = self.history(since) if ok else []
                if not ok:
                    sub.floor = last
                    yield resync(last)
                for event in replay:
                    sub.floor = event["seq"]
                    yield event
            while True:
                event = await sub.get()
                if event["kind"] == "resync":
                    sub.floor = event["seq"]
                    yield event
                elif event["seq"] > sub.floor:
                    sub.floor = event["seq"]
                    yield event
        finally:
            self._subscribers.discard(sub)
