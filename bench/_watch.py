"""Shared by the benchmarks: when did each session reach each status?

Follows the engine's event stream through ``Client.events()`` (the same SSE parser the front
ends use) and stamps every first (session, status) with ``time.perf_counter()``.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from jupyter_bai.client import BaiError, Client

FINAL = ("TERMINATED", "ERROR", "CANCELLED")


class StatusWatcher:
    def __init__(self, url: str, token: str):
        self.seen: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        self.cond = threading.Condition()
        self._client = Client(url, token)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        try:
            # since=0 replays anything that happened before the stream was open.
            for event in self._client.events(since=0):
                if event.get("id") and event.get("status"):
                    with self.cond:
                        self.seen.setdefault((event["id"], event["status"]),
                                             (time.perf_counter(), event))
                        self.cond.notify_all()
        except BaiError:
            pass  # the engine stopped at the end of the run

    def wait(self, sid: str, statuses: tuple[str, ...] = FINAL,
             timeout: float = 60) -> tuple[float, dict[str, Any]]:
        """When ``sid`` first reached one of ``statuses`` (or ended), and that event."""
        def found() -> tuple[float, dict[str, Any]] | None:
            for status in (*statuses, *FINAL):
                if (sid, status) in self.seen:
                    return self.seen[(sid, status)]
            return None

        with self.cond:
            if not self.cond.wait_for(lambda: found() is not None, timeout):
                raise TimeoutError(f"session {sid} did not reach {statuses} in {timeout}s")
            return found()  # type: ignore[return-value]
