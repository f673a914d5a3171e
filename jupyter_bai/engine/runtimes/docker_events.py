"""How the Docker runtime learns that containers ended: one thread, one event stream.

Blocking in ``container.wait()`` takes a thread (and a connection) per container; instead
one thread reads the daemon's ``die``/``destroy`` events for this engine's containers and
resolves the asyncio futures of the sessions waiting on them.
"""
from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from ...spec.errors import RuntimeUnavailable

if TYPE_CHECKING:
    from .docker import DockerRuntime

LABEL = "ai.backend.bai."


class ExitWatcher:
    """One thread for all containers: reads the daemon's ``die`` events of this engine's
    containers and resolves the futures of the sessions waiting on them.

    After each (re)subscription it asks once for the containers that are not running,
    so an exit between two streams is never missed; when the daemon is gone, every
    waiter gets the reason (its session becomes ERROR, as before).
    """

    def __init__(self, runtime: "DockerRuntime"):
        self.runtime = runtime
        self.waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]]] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.stream: Any = None
        self.closed = False

    def watch(self, cid: str, loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any]) -> None:
        with self.lock:
            self.waiters.setdefault(cid, []).append((loop, fut))
            if self.thread is None and not self.closed:
                self.thread = threading.Thread(target=self._run, name="bai-docker-events",
                                               daemon=True)
                self.thread.start()

    def forget(self, cid: str, fut: asyncio.Future[Any]) -> None:
        with self.lock:
            rest = [w for w in self.waiters.get(cid, []) if w[1] is not fut]
            if rest:
                self.waiters[cid] = rest
            else:
                self.waiters.pop(cid, None)

    def resolve(self, cid: str, err: BaseException | None) -> None:
        with self.lock:
            waiting = list(self.waiters.get(cid, []))
        for loop, fut in waiting:
            def settle(fut: asyncio.Future[Any] = fut) -> None:
                if not fut.done():
                    fut.set_result(err)
            try:
                loop.call_soon_threadsafe(settle)
            except RuntimeError:
                pass  # that loop is closed; the next engine adopts the session

    def _resolve_all(self, err: BaseException) -> None:
        with self.lock:
            cids = list(self.waiters)
        for cid in cids:
            self.resolve(cid, err)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            stream = self.stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001
                pass

    def _settle_missed(self, client: Any) -> None:
        mine = {"label": f"{LABEL}engine={self.runtime.engine_id}"}
        running = {c.id for c in client.containers.list(filters=mine, sparse=True)}
        with self.lock:
            cids = list(self.waiters)
        for cid in cids:
            if cid not in running:
                self.resolve(cid, None)

    def _run(self) -> None:
        since: int | None = None
        while True:
            with self.lock:
                if not self.waiters or self.closed:
                    self.thread = None
                    return
            try:
                client = self.runtime._connect()
            except RuntimeUnavailable as exc:
                self._resolve_all(exc)
                time.sleep(0.2)  # waiters go away (ERROR) or a new one finds the daemon back
                continue
            stream = None
            try:
                stream = client.events(decode=True, since=since, filters={
                    "type": "container", "event": ["die", "destroy"],
                    "label": f"{LABEL}engine={self.runtime.engine_id}"})
                with self.lock:
                    self.stream = stream
                self._settle_missed(client)
                for event in stream:
                    since = int(event.get("time") or 0) or since
                    cid = event.get("id") or (event.get("Actor") or {}).get("ID")
                    if cid:
                        self.resolve(cid, None)
                    with self.lock:
                        if not self.waiters or self.closed:
                            break
            except Exception:  # noqa: BLE001 - a read timeout or a broken stream: resubscribe
                with self.runtime._lock:
                    self.runtime._suspect = True  # the next _connect pings
            finally:
                with self.lock:
                    self.stream = None
                if stream is not None:
                    try:
                        stream.close()
                    except Exception:  # noqa: BLE001
                        pass
